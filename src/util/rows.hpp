// Iteration over the rows (all dimensions but the last) of a strided tensor, and element access
// in any storage type. Internal helpers shared by the tensor utilities and the CPU kernel.
#pragma once

#include <array>
#include <cstdint>

#include "usp/dtype.hpp"
#include "usp/tensor.hpp"

namespace usp::detail {

// Calls fn(idx) for every index tuple over dimensions [0, dim - 1) in row-major order; idx has
// Tensor::kMaxDims entries, the last-dimension entry is 0.
template <class Fn>
void for_each_row(const Tensor::Dims& shape, Fn&& fn) {
  const int nd = static_cast<int>(shape.size());
  for (int i = 0; i < nd; ++i)
    if (shape[static_cast<std::size_t>(i)] == 0) return;
  std::array<std::int64_t, Tensor::kMaxDims> idx{};
  while (true) {
    fn(idx);
    int d = nd - 2;
    while (d >= 0) {
      if (++idx[static_cast<std::size_t>(d)] < shape[static_cast<std::size_t>(d)]) break;
      idx[static_cast<std::size_t>(d)] = 0;
      --d;
    }
    if (d < 0) return;
  }
}

// Byte offset of element idx (over all dims) in t.
inline std::int64_t byte_offset(const Tensor& t,
                                const std::array<std::int64_t, Tensor::kMaxDims>& idx) {
  std::int64_t off = 0;
  for (int i = 0; i < t.dim(); ++i) off += idx[static_cast<std::size_t>(i)] * t.stride(i);
  return off * static_cast<std::int64_t>(dtype_size(t.dtype()));
}

inline float load_as_f32(const void* p, DType t) {
  switch (t) {
    case DType::f32:
      return *static_cast<const float*>(p);
    case DType::bf16:
      return bf16_to_f32(*static_cast<const std::uint16_t*>(p));
    case DType::f16:
      return f16_to_f32(*static_cast<const std::uint16_t*>(p));
  }
  return 0.0f;
}

inline void store_from_f32(void* p, DType t, float x) {
  switch (t) {
    case DType::f32:
      *static_cast<float*>(p) = x;
      return;
    case DType::bf16:
      *static_cast<std::uint16_t*>(p) = f32_to_bf16(x);
      return;
    case DType::f16:
      *static_cast<std::uint16_t*>(p) = f32_to_f16(x);
      return;
  }
}

// Reads n elements with element stride `stride` of type t into fp32 dst.
inline void load_row(const void* src, DType t, std::int64_t stride, float* dst, std::int64_t n) {
  if (stride == 1) {
    convert(src, t, dst, DType::f32, static_cast<std::size_t>(n));
    return;
  }
  const char* p = static_cast<const char*>(src);
  const std::int64_t step = stride * static_cast<std::int64_t>(dtype_size(t));
  for (std::int64_t i = 0; i < n; ++i) dst[i] = load_as_f32(p + i * step, t);
}

// Writes n fp32 values to dst (type t, element stride `stride`).
inline void store_row(const float* src, void* dst, DType t, std::int64_t stride, std::int64_t n) {
  if (stride == 1) {
    convert(src, DType::f32, dst, t, static_cast<std::size_t>(n));
    return;
  }
  char* p = static_cast<char*>(dst);
  const std::int64_t step = stride * static_cast<std::int64_t>(dtype_size(t));
  for (std::int64_t i = 0; i < n; ++i) store_from_f32(p + i * step, t, src[i]);
}

}  // namespace usp::detail
