// Turns CUDA runtime failures into usp::Error values naming the call and the CUDA message.
#pragma once

#include <cuda_runtime.h>

#include "usp/error.hpp"

#define USP_CUDA_CHECK(call)                                                         \
  do {                                                                               \
    cudaError_t usp_cuda_err_ = (call);                                              \
    if (usp_cuda_err_ != cudaSuccess)                                                \
      USP_FAIL(internal, #call, " failed: ", cudaGetErrorName(usp_cuda_err_), " (",  \
               cudaGetErrorString(usp_cuda_err_), ") at ", __FILE__, ":", __LINE__); \
  } while (0)

namespace usp::cuda::detail {
// The calling thread's compute stream (created on first use, non-blocking, destroyed when the
// thread exits). All kernel launches of a thread go there.
cudaStream_t compute_stream();
// Makes `device` current for the calling thread (cheap when it already is).
void set_device(int device);
}  // namespace usp::cuda::detail
