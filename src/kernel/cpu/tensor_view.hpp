// Byte addressing of the elements of a [b, s, h, d] or [b, h, s] host tensor (last dim
// contiguous): what the passes read rows through.
#pragma once

#include <cstdint>

#include "usp/dtype.hpp"
#include "usp/tensor.hpp"

namespace usp::cpu {

struct View {
  char* base;
  std::int64_t s0, s1, s2;  // byte strides of the first three dims
  DType dtype;
  explicit View(const Tensor& t)
      : base(static_cast<char*>(t.data())),
        s0(t.stride(0) * static_cast<std::int64_t>(dtype_size(t.dtype()))),
        s1(t.dim() > 1 ? t.stride(1) * static_cast<std::int64_t>(dtype_size(t.dtype())) : 0),
        s2(t.dim() > 2 ? t.stride(2) * static_cast<std::int64_t>(dtype_size(t.dtype())) : 0),
        dtype(t.dtype()) {}
  void* at(std::int64_t i0, std::int64_t i1, std::int64_t i2) const {
    return base + i0 * s0 + i1 * s1 + i2 * s2;
  }
};

}  // namespace usp::cpu
