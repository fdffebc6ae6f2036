// Device-side helpers: typed loads/stores by runtime dtype code, and the two 16-bit types.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>

#include "check.hpp"
#include "launch.hpp"

namespace usp::cuda::detail {

__device__ __forceinline__ float load_f32(const void* p, std::int64_t i, int dtype) {
  if (dtype == kF16) return __half2float(static_cast<const __half*>(p)[i]);
  if (dtype == kBF16) return __bfloat162float(static_cast<const __nv_bfloat16*>(p)[i]);
  return static_cast<const float*>(p)[i];
}

__device__ __forceinline__ void store_f32(void* p, std::int64_t i, int dtype, float v) {
  if (dtype == kF16) {
    static_cast<__half*>(p)[i] = __float2half_rn(v);
  } else if (dtype == kBF16) {
    static_cast<__nv_bfloat16*>(p)[i] = __float2bfloat16_rn(v);
  } else {
    static_cast<float*>(p)[i] = v;
  }
}

template <class T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

__device__ __forceinline__ float to_f32(__half v) {
  return __half2float(v);
}
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) {
  return __bfloat162float(v);
}

// Checks the last launch and turns a failure into usp::Error.
inline void check_launch(const char* what) {
  cudaError_t e = cudaGetLastError();
  if (e != cudaSuccess)
    USP_FAIL(internal, "CUDA launch of ", what, " failed: ", cudaGetErrorName(e), " (",
             cudaGetErrorString(e), ")");
}

inline unsigned grid_for(std::int64_t n, int block) {
  std::int64_t g = (n + block - 1) / block;
  if (g > 1048576) g = 1048576;  // grid-stride loops cover the rest
  if (g < 1) g = 1;
  return static_cast<unsigned>(g);
}

}  // namespace usp::cuda::detail
