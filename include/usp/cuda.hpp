// The CUDA backend: device allocator, block-attention kernel and GPU communicators.
//
// Every function here exists in every build. Without CUDA (or without a GPU) those that need one
// throw Error(unsupported) saying so; the queries (compiled(), device_count()) never throw.
//
// Streams: each host thread has its own compute stream on which the CUDA kernel runs; kernel
// calls return when their work is complete (so host timings are exact and buffers may be handed
// to a communicator right away). Communicators copy on their own streams, ordered after the
// posting rank's compute stream by events, so transfers overlap the block in flight.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "usp/comm.hpp"
#include "usp/kernel.hpp"
#include "usp/memory.hpp"
#include "usp/tensor.hpp"

namespace usp::cuda {

// True when the library was built with CUDA.
bool compiled();
// Visible GPUs; 0 when none, when the driver is missing or when built without CUDA.
int device_count();
// Why no GPU can be used ("" when device_count() > 0), e.g. "cudaGetDeviceCount: no CUDA-capable
// device is detected" or "built without CUDA (nvcc found: no)".
std::string unavailable_reason();
// The calling thread's current CUDA device (the GPU that usp::cuda::nccl_world() chose for this
// process's rank, once it has run); 0 when built without CUDA or without a GPU.
int current_device();
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)".
std::string device_description(int device = 0);

// cudaMalloc/cudaFree on `device`, with the base class's current/peak accounting.
std::unique_ptr<Allocator> make_allocator(int device = 0);

// Tensor-core kernel: fp16 and bf16 q/k/v (fp32 is not supported and throws), head sizes 16, 32,
// 64, 128, any sequence lengths, GQA, the three mask modes; strided views along dims 0..2.
// The backward's temporary (fp32 rowsum(dout∘out), 4·b·h·sq bytes) comes from `scratch` when
// given (a device allocator that outlives the kernel; the rank's, so its peak counts it) and is
// freed before the call returns; without one it is stream-ordered cudaMallocAsync memory.
std::unique_ptr<AttentionKernel> make_kernel(int device = 0, Allocator* scratch = nullptr);
// The kernel's forward and backward each come in two implementations: "wmma" (WMMA fragments,
// scores through shared memory) and "mma" (mma.sync with scores in registers, sm_80+; on an
// older GPU it runs "wmma"). make_kernel above and the "cuda-*" backends use default_forward()
// and default_backward(): the environment variables USP_CUDA_FWD and USP_CUDA_BWD, each read once
// per process ("mma" when unset or empty; another value throws Error(invalid_argument)). name()
// of the kernel is "cuda-mma" or "cuda-wmma" (both the same) or e.g. "cuda-mma-bwd-wmma".
std::string default_forward();
std::string default_backward();
// As make_kernel with an explicit choice for each: "wmma", "mma" or "" (the default above).
std::unique_ptr<AttentionKernel> make_kernel(int device, Allocator* scratch,
                                             std::string_view forward,
                                             std::string_view backward = "");

// Host ↔ device copies (contiguous result; src may be a strided view).
Tensor to_device(const Tensor& host, Allocator& device_alloc);
Tensor to_host(const Tensor& device, Allocator& host_alloc = default_host_allocator());

// Waits for all work of the calling thread's compute stream.
void synchronize();

// "cuda-local": world_size ranks as threads sharing one GPU; each rank has its own compute
// stream, isend/irecv become device-to-device copies on a communication stream. Buffers are
// device pointers. Failure semantics and timeout as usp::run_local.
void run_local(int world_size, const std::function<void(Communicator&)>& fn,
               std::chrono::milliseconds timeout = std::chrono::seconds(300), int device = 0);

// True when built with NCCL (and MPI).
bool nccl_compiled();
// "nccl": the world communicator of this process, one process per GPU under mpirun (MPI must be
// initialised; rank r uses GPU r % device_count()). MPI broadcasts the NCCL unique id.
// NCCL refuses two ranks on one GPU, so with one GPU only world size 1 runs; when ranks would
// share a GPU this throws Error(invalid_argument) naming them. Point-to-point follows NCCL's
// matching: a rank posts its transfers to a peer in the order the peer posts the matching ones
// (tags are checked but not matched), sizes agree, and transfers start when posted as a ring hop
// (a receive from rank − k and a send to rank + k back to back, as the ring driver posts them) or
// else at the first wait()/test() or collective, all pending ones together.
std::unique_ptr<Communicator> nccl_world();

}  // namespace usp::cuda
