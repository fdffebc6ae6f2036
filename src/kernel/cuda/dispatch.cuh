// The one place that maps a launch's runtime dtype and head size to the compiled kernels:
// dispatch(a, f) calls f(std::type_identity<T>{}, std::integral_constant<int, D>{}) for T =
// __half / __nv_bfloat16 and D ∈ {16, 32, 64, 128}, and throws Error(unsupported) otherwise
// (kernel.cpp rejects such inputs first, with the tensors named, through supported()). Also the
// launch of a backward's kernel pair, the same for both backward implementations.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <string>
#include <type_traits>

#include "check.hpp"
#include "device_util.cuh"
#include "launch.hpp"

namespace usp::cuda::detail {

template <class F>
void dispatch(const AttnArgs& a, F&& f) {
  auto by_dim = [&](auto type) {
    switch (a.head_dim) {
      case 16:
        return f(type, std::integral_constant<int, 16>{});
      case 32:
        return f(type, std::integral_constant<int, 32>{});
      case 64:
        return f(type, std::integral_constant<int, 64>{});
      case 128:
        return f(type, std::integral_constant<int, 128>{});
      default:
        USP_FAIL(unsupported, "CUDA kernel: head size ", a.head_dim, " not compiled");
    }
  };
  if (a.dtype == kF16) return by_dim(std::type_identity<__half>{});
  if (a.dtype == kBF16) return by_dim(std::type_identity<__nv_bfloat16>{});
  USP_FAIL(unsupported, "CUDA kernel: dtype code ", a.dtype, " not compiled");
}

// The two kernels of a backward: dK/dV with one block per `rows` keys of each (batch, KV head),
// then dQ with one block per `rows` queries of each (batch, head), `threads` threads and `smem`
// bytes of dynamic shared memory each. `tag` ends the launch-error names ("" or " (mma)").
inline void launch_backward_pair(void (*dkdv)(AttnArgs), void (*dq)(AttnArgs), int smem, int rows,
                                 int threads, const AttnArgs& a, cudaStream_t stream,
                                 const char* tag) {
  USP_CUDA_CHECK(cudaFuncSetAttribute(dkdv, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  USP_CUDA_CHECK(cudaFuncSetAttribute(dq, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  if (a.sk > 0) {
    dim3 grid((a.sk + rows - 1) / rows, a.batch * a.kv_heads);
    dkdv<<<grid, threads, smem, stream>>>(a);
    check_launch((std::string("attention backward dK/dV") + tag).c_str());
  }
  if (a.sq > 0) {
    dim3 grid((a.sq + rows - 1) / rows, a.batch * a.heads);
    dq<<<grid, threads, smem, stream>>>(a);
    check_launch((std::string("attention backward dQ") + tag).c_str());
  }
}

}  // namespace usp::cuda::detail
