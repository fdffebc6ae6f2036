// The one place that maps a launch's runtime dtype and head size to the compiled kernels:
// dispatch(a, f) calls f(std::type_identity<T>{}, std::integral_constant<int, D>{}) for T =
// __half / __nv_bfloat16 and D ∈ {16, 32, 64, 128}, and throws Error(unsupported) otherwise
// (kernel.cpp rejects such inputs first, with the tensors named, through supported()).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <type_traits>

#include "check.hpp"
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

}  // namespace usp::cuda::detail
