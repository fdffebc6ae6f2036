// An owned CUDA event without timing (the cheap kind), for ordering work between streams.
#pragma once

#include <cuda_runtime.h>

#include "kernel/cuda/check.hpp"

namespace usp::cuda::detail {

struct Event {
  cudaEvent_t e = nullptr;
  Event() { USP_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming)); }
  ~Event() { (void)cudaEventDestroy(e); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;
};

}  // namespace usp::cuda::detail
