// The communicator conformance suite (tests/conformance/comm_conformance.hpp) on the backends this
// process can run by itself: local threads, and cuda-local where a GPU is present.
#include "conformance/comm_conformance.hpp"

#include <string>

#include "usp/comm.hpp"

#if defined(USP_HAVE_CUDA)
#include "conformance/device_comm_buffer.hpp"
#include "usp/cuda.hpp"
#endif

namespace usp::test {
namespace {

std::exception_ptr run_local_world(int ranks, std::chrono::milliseconds timeout,
                                   const std::function<void(Communicator&)>& fn) {
  try {
    usp::run_local(ranks, fn, timeout);
  } catch (...) {
    return std::current_exception();
  }
  return nullptr;
}

CommWorld local_world() {
  CommWorld w;
  w.name = "local";
  w.run = run_local_world;
  w.max_ranks = [] { return 8; };
  w.in_process = true;
  w.eager_sends = true;
  w.mismatch_says = [](std::size_t sent) { return "has " + std::to_string(sent); };
  return w;
}

INSTANTIATE_TEST_SUITE_P(Local, CommConformance, ::testing::Values(local_world()),
                         [](const auto& info) { return info.param.name; });

#if defined(USP_HAVE_CUDA)
CommWorld cuda_local_world() {
  CommWorld w;
  w.name = "cuda_local";
  w.run = [](int ranks, std::chrono::milliseconds timeout,
             const std::function<void(Communicator&)>& fn) -> std::exception_ptr {
    try {
      usp::cuda::run_local(ranks, fn, timeout);
    } catch (...) {
      return std::current_exception();
    }
    return nullptr;
  };
  w.max_ranks = [] { return 4; };
  w.buffer = [](std::size_t bytes) -> std::unique_ptr<CommBuffer> {
    return std::make_unique<DeviceCommBuffer>(bytes, 0);
  };
  w.in_process = true;
  w.mismatch_says = [](std::size_t sent) { return "has " + std::to_string(sent); };
  w.unavailable = [] {
    return usp::cuda::device_count() > 0 ? std::string() : usp::cuda::unavailable_reason();
  };
  return w;
}

INSTANTIATE_TEST_SUITE_P(CudaLocal, CommConformance, ::testing::Values(cuda_local_world()),
                         [](const auto& info) { return info.param.name; });
#endif

}  // namespace
}  // namespace usp::test
