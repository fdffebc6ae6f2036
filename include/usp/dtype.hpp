// Storage types and the exact conversions between them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

namespace usp {

enum class DType : std::uint8_t { f32, bf16, f16 };

constexpr std::size_t dtype_size(DType t) {
  return t == DType::f32 ? 4 : 2;
}
const char* dtype_name(DType t);  // "fp32", "bf16", "fp16"
// Accepts "fp32"/"f32"/"float32", "bf16"/"bfloat16", "fp16"/"f16"/"float16"; throws Error naming
// `what` otherwise.
DType parse_dtype(std::string_view s, std::string_view what = "dtype");

// Round-to-nearest-even; NaN stays NaN (quiet), infinities and signed zero are kept.
inline std::uint16_t f32_to_bf16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((u >> 16) | 0x0040u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<std::uint16_t>(u >> 16);
}
inline float bf16_to_f32(std::uint16_t h) {
  std::uint32_t u = static_cast<std::uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}
std::uint16_t f32_to_f16(float f);
float f16_to_f32(std::uint16_t h);

// Converts n contiguous elements between storage types (same type: memcpy).
void convert(const void* src, DType src_t, void* dst, DType dst_t, std::size_t n);
// Rounds n fp32 values in place through storage type t (identity for f32).
void round_through(float* x, std::size_t n, DType t);

}  // namespace usp
