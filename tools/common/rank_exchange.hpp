// Small exchanges the tools make between their ranks besides the attention itself: a few host
// values all-gathered, result shards gathered on rank 0. Communicators of GPU backends move
// device memory only, so host values are staged through the rank's device when needed.
// Header-only: shared by usp-bench and usp-attn (tools/<name>/ folders build one tool each).
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "usp/backend.hpp"
#include "usp/comm.hpp"
#include "usp/error.hpp"
#include "usp/memory.hpp"
#include "usp/tensor.hpp"

namespace usp::tools {

// True for the backends that run one process per rank under mpirun.
inline bool process_per_rank(std::string_view backend) {
  return backend == "mpi" || backend == "nccl";
}

// The backend that runs the same kernel and memory as `backend` with ranks as threads of this
// process ("mpi" → "local", "nccl" → "cuda-local").
inline std::string thread_backend(std::string_view backend) {
  if (backend == "mpi") return "local";
  if (backend == "nccl") return "cuda-local";
  return std::string(backend);
}

// recv (comm.size() blocks of `bytes`) = every rank's `send`, all in host memory, staged through
// a fresh allocator of the backend's device when the communicator is on one.
inline void allgather_host(Communicator& comm, std::string_view backend, const void* send,
                           void* recv, std::size_t bytes) {
  if (comm.device() == Device::host) {
    comm.allgather(send, recv, bytes);
    return;
  }
  auto dev = make_allocator(backend);
  usp::allgather_host(comm, *dev, send, recv, bytes);
}

// Every rank's value of a trivially copyable T, indexed by rank.
template <class T>
std::vector<T> allgather_value(Communicator& comm, std::string_view backend, const T& mine) {
  std::vector<T> all(static_cast<std::size_t>(comm.size()));
  allgather_host(comm, backend, &mine, all.data(), sizeof(T));
  return all;
}

// Every rank's string, indexed by rank.
inline std::vector<std::string> allgather_strings(Communicator& comm, std::string_view backend,
                                                  const std::string& mine) {
  if (comm.device() == Device::host)
    return usp::allgather_strings(comm, default_host_allocator(), mine);
  auto dev = make_allocator(backend);
  return usp::allgather_strings(comm, *dev, mine);
}

// Gathers every rank's `mine` (same shape and dtype on every rank, on the communicator's device)
// on rank 0: there the result holds one contiguous host tensor per rank, elsewhere it is empty.
// `alloc` is the rank's allocator on the communicator's device (receive buffers on rank 0).
inline std::vector<Tensor> gather_to_root(Communicator& comm, const Tensor& mine, Allocator& alloc,
                                          int tag) {
  USP_CHECK_ARG(mine.is_contiguous(), "gather_to_root: the shard must be contiguous");
  std::vector<Tensor> out;
  if (comm.rank() != 0) {
    Request r = comm.isend(mine.data(), mine.nbytes(), 0, tag);
    r.wait();
    return out;
  }
  out.resize(static_cast<std::size_t>(comm.size()));
  out[0] = copy_to(mine, default_host_allocator());
  for (int j = 1; j < comm.size(); ++j) {
    Tensor buf = Tensor::empty(mine.shape(), mine.dtype(), alloc);
    Request r = comm.irecv(buf.data(), buf.nbytes(), j, tag);
    r.wait();
    out[static_cast<std::size_t>(j)] = copy_to(buf, default_host_allocator());
  }
  return out;
}

}  // namespace usp::tools
