// Backend selection: one name picks the kernel, the allocator and the way ranks are launched.
//
//   "local" (alias "cpu"): CPU kernel, host memory, ranks as threads (run_local).
//   "mpi":                 CPU kernel, host memory, one process per rank (needs a build with MPI).
//   "cuda-local":          CUDA kernel, device memory, ranks as threads sharing ONE GPU, each rank
//                          with its own stream (needs a build with CUDA and a visible GPU).
//   "nccl":                CUDA kernel, device memory, one process per GPU under mpirun (needs a
//                          build with CUDA, NCCL >= 2.14 and MPI). NCCL refuses two ranks on one
//                          GPU: a machine with one GPU runs world size 1 only on this backend.
//
// Asking for a backend that this build or machine cannot provide throws Error(unsupported) whose
// message says what is missing; an unknown name throws Error(invalid_argument) listing the names.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "usp/agree.hpp"  // allgather_host
#include "usp/comm.hpp"
#include "usp/kernel.hpp"
#include "usp/memory.hpp"
#include "usp/tensor.hpp"

namespace usp {

// Every name make_kernel accepts, aliases included, in a stable order.
std::vector<std::string> backend_names();

// The canonical name ("cpu" → "local"); throws Error(invalid_argument) for an unknown name.
std::string canonical_backend(std::string_view backend);

// True when this build and machine can run the backend (for "cuda-local"/"nccl": built with CUDA
// and at least one GPU visible). Never throws for a known name; unknown names throw.
bool backend_available(std::string_view backend);

// Empty when available, else one line saying what is missing (e.g. "backend 'cuda-local' needs a
// build with CUDA (nvcc found: no); reconfigure with -DUSP_WITH_CUDA=ON").
std::string backend_unavailable_reason(std::string_view backend);

// Where the backend's tensors live.
Device backend_device(std::string_view backend);

// Ranks of this job on this host: world_size for the thread backends ("local", "cuda-local");
// for a process-per-rank backend the launcher's count (Open MPI, MPICH, MVAPICH environment),
// world_size when it does not say.
int host_ranks(std::string_view backend, int world_size);

// The threads-per-rank policy of the CPU kernel: max(1, cores / ranks_on_host), so that the ranks
// of one host do not oversubscribe its cores (cores 0: the hardware threads of this machine).
int default_threads(int ranks_on_host, int cores = 0);

// The block-attention kernel of the backend. `threads` is used by the CPU kernel (0 = all cores);
// GPU kernels ignore it. `scratch` is the allocator the kernel takes its per-call temporaries from
// (pass the rank's allocator so its peak counts them; nullptr: the CPU kernel uses
// default_host_allocator(), the CUDA kernel stream-ordered cudaMallocAsync). It must be on the
// backend's device (backend_device) and outlive the kernel. Throws Error(unsupported) when
// !backend_available(backend), Error(invalid_argument) for a scratch allocator on another device.
std::unique_ptr<AttentionKernel> make_kernel(std::string_view backend, int threads = 0,
                                             Allocator* scratch = nullptr);

// A fresh per-rank allocator on the backend's device (for "cuda-local" every rank gets its own
// allocator on the same GPU, so each reports its own current/peak bytes; for "nccl" the GPU that
// make_world chose for this process, so call make_world first). make_kernel picks its GPU alike.
std::unique_ptr<Allocator> make_allocator(std::string_view backend);

// Runs world_size ranks as threads of this process with the backend's communicator ("local":
// usp::run_local; "cuda-local": usp::cuda::run_local). Process-per-rank backends ("mpi", "nccl")
// throw Error(invalid_argument) here: create their world communicator in main instead.
void run_ranks(std::string_view backend, int world_size,
               const std::function<void(Communicator&)>& fn,
               std::chrono::milliseconds timeout = std::chrono::seconds(300));

// The world communicator of a process-per-rank backend, in a program started by mpirun with MPI
// initialised (usp::MpiSession): "mpi" → usp::make_mpi_communicator(), "nccl" →
// usp::cuda::nccl_world() (rank r on GPU r % GPUs; see cuda.hpp). Throws Error(unsupported) saying
// what is missing when the build or machine lacks the backend, and Error(invalid_argument) for
// the thread backends ("local", "cuda-local": use run_ranks).
std::unique_ptr<Communicator> make_world(std::string_view backend);

// A contiguous copy of `src` (host or device) in memory from `alloc` (host or device), same dtype.
// Host→host copies need no GPU; anything touching a device needs a build with CUDA.
Tensor copy_to(const Tensor& src, Allocator& alloc);

}  // namespace usp
