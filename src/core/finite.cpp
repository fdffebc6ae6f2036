#include "core/finite.hpp"

#include <cstring>

#include "usp/error.hpp"

namespace usp::detail {
namespace {

// Every exponent bit set: an infinity or a NaN, in each storage type.
bool non_finite(const unsigned char* p, DType t) {
  switch (t) {
    case DType::f32: {
      std::uint32_t u;
      std::memcpy(&u, p, 4);
      return (u & 0x7f800000u) == 0x7f800000u;
    }
    case DType::bf16:
    case DType::f16: {
      std::uint16_t u;
      std::memcpy(&u, p, 2);
      return t == DType::bf16 ? (u & 0x7f80u) == 0x7f80u : (u & 0x7c00u) == 0x7c00u;
    }
  }
  return false;
}

template <typename U>
bool row_finite(const unsigned char* p, std::int64_t n, U exponent) {
  const U* x = reinterpret_cast<const U*>(p);
  U bad = 0;
  for (std::int64_t i = 0; i < n; ++i) bad |= static_cast<U>((x[i] & exponent) == exponent);
  return bad == 0;
}

}  // namespace

std::int64_t first_non_finite(const Tensor& t) {
  USP_CHECK_ARG(t.device() == Device::host, "first_non_finite needs a host tensor, got ",
                t.describe());
  const int n = t.dim();
  const std::int64_t total = t.numel();
  const auto* base = static_cast<const unsigned char*>(t.data());
  const std::int64_t es = static_cast<std::int64_t>(dtype_size(t.dtype()));
  std::int64_t idx[Tensor::kMaxDims] = {};
  for (std::int64_t flat = 0; flat < total; ++flat) {
    std::int64_t off = 0;
    for (int d = 0; d < n; ++d) off += idx[d] * t.stride(d);
    if (non_finite(base + off * es, t.dtype())) return flat;
    for (int d = n - 1; d >= 0; --d) {
      if (++idx[d] < t.size(d)) break;
      idx[d] = 0;
    }
  }
  return -1;
}

bool all_finite(const Tensor& t) {
  USP_CHECK_ARG(t.device() == Device::host, "all_finite needs a host tensor, got ", t.describe());
  const int n = t.dim();
  if (t.numel() == 0) return true;
  if (n == 0 || t.stride(n - 1) != 1) return first_non_finite(t) < 0;
  const std::int64_t inner = t.size(n - 1), rows = t.numel() / inner;
  const auto* base = static_cast<const unsigned char*>(t.data());
  const std::int64_t es = static_cast<std::int64_t>(dtype_size(t.dtype()));
  std::int64_t idx[Tensor::kMaxDims] = {};
  for (std::int64_t r = 0; r < rows; ++r) {
    std::int64_t off = 0;
    for (int d = 0; d + 1 < n; ++d) off += idx[d] * t.stride(d);
    const unsigned char* p = base + off * es;
    const bool ok = t.dtype() == DType::f32    ? row_finite<std::uint32_t>(p, inner, 0x7f800000u)
                    : t.dtype() == DType::bf16 ? row_finite<std::uint16_t>(p, inner, 0x7f80u)
                                               : row_finite<std::uint16_t>(p, inner, 0x7c00u);
    if (!ok) return false;
    for (int d = n - 2; d >= 0; --d) {
      if (++idx[d] < t.size(d)) break;
      idx[d] = 0;
    }
  }
  return true;
}

}  // namespace usp::detail
