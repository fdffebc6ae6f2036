#include "usp/dtype.hpp"

#include <array>
#include <string>

#include "core/convert_fast.hpp"
#include "usp/cpu.hpp"
#include "usp/error.hpp"
#include "util/enum_names.hpp"

namespace usp {

const char* dtype_name(DType t) {
  static constexpr std::array<const char*, 3> kNames{"fp32", "bf16", "fp16"};  // DType order
  return detail::enum_name(t, kNames);
}

DType parse_dtype(std::string_view s, std::string_view what) {
  if (s == "fp32" || s == "f32" || s == "float32") return DType::f32;
  if (s == "bf16" || s == "bfloat16") return DType::bf16;
  if (s == "fp16" || s == "f16" || s == "float16") return DType::f16;
  USP_FAIL(invalid_argument, what, ": unknown dtype '", s,
           "', expected one of fp32 (f32, float32), bf16 (bfloat16), fp16 (f16, float16)");
}

std::uint16_t f32_to_f16(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, 4);
  const std::uint32_t sign = (u >> 16) & 0x8000u;
  const std::uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) {  // NaN: keep it quiet, keep the top payload bits
    return static_cast<std::uint16_t>(sign | 0x7e00u | ((a >> 13) & 0x3ffu));
  }
  if (a >= 0x477ff000u) {  // >= 65520 rounds to infinity (and inf stays inf)
    return static_cast<std::uint16_t>(sign | 0x7c00u);
  }
  if (a >= 0x38800000u) {  // normal half: re-bias the exponent, round 13 dropped bits
    const std::uint32_t r = a - 0x38000000u;
    std::uint32_t h = r >> 13;
    const std::uint32_t rem = r & 0x1fffu;
    if (rem > 0x1000u || (rem == 0x1000u && (h & 1u))) ++h;
    return static_cast<std::uint16_t>(sign | h);
  }
  // Subnormal half (units of 2^-24) or zero.
  const std::uint32_t e = a >> 23;
  if (e < 102) return static_cast<std::uint16_t>(sign);  // below 2^-25: rounds to zero
  const std::uint32_t mant = (a & 0x7fffffu) | 0x800000u;
  const std::uint32_t shift = 126 - e;  // 14..24
  std::uint32_t h = mant >> shift;
  const std::uint32_t rem = mant & ((1u << shift) - 1u);
  const std::uint32_t half = 1u << (shift - 1);
  if (rem > half || (rem == half && (h & 1u))) ++h;
  return static_cast<std::uint16_t>(sign | h);
}

float f16_to_f32(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t e = (h >> 10) & 0x1fu;
  const std::uint32_t m = h & 0x3ffu;
  std::uint32_t u;
  if (e == 0) {
    // Zero or subnormal: m · 2^-24, exact in fp32.
    float f = static_cast<float>(m) * 5.9604644775390625e-8f;
    std::memcpy(&u, &f, 4);
    u |= sign;
  } else if (e == 31) {
    u = sign | 0x7f800000u | (m << 13);
  } else {
    u = sign | ((e + 112u) << 23) | (m << 13);
  }
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

namespace {

template <class Load, class Store>
void convert_loop(const void* src, void* dst, std::size_t n, Load load, Store store) {
  for (std::size_t i = 0; i < n; ++i) store(dst, i, load(src, i));
}

float load_f32(const void* p, std::size_t i) {
  return static_cast<const float*>(p)[i];
}
float load_bf16(const void* p, std::size_t i) {
  return bf16_to_f32(static_cast<const std::uint16_t*>(p)[i]);
}
float load_f16(const void* p, std::size_t i) {
  return f16_to_f32(static_cast<const std::uint16_t*>(p)[i]);
}
void store_f32(void* p, std::size_t i, float x) {
  static_cast<float*>(p)[i] = x;
}
void store_bf16(void* p, std::size_t i, float x) {
  static_cast<std::uint16_t*>(p)[i] = f32_to_bf16(x);
}
void store_f16(void* p, std::size_t i, float x) {
  static_cast<std::uint16_t*>(p)[i] = f32_to_f16(x);
}

}  // namespace

void convert(const void* src, DType src_t, void* dst, DType dst_t, std::size_t n) {
  if (n == 0) return;
  if (src_t == dst_t) {
    std::memmove(dst, src, n * dtype_size(src_t));
    return;
  }
  // The vector conversion of the CPU path (none for USP_CPU_PATH=generic, which asks for the
  // portable code everywhere).
  if (src_t == DType::f32 && dst_t == DType::f16 &&
      detail::f32_to_f16_fast(static_cast<const float*>(src), static_cast<std::uint16_t*>(dst), n,
                              cpu_path()))
    return;
  auto with_store = [&](auto load) {
    switch (dst_t) {
      case DType::f32:
        convert_loop(src, dst, n, load, store_f32);
        break;
      case DType::bf16:
        convert_loop(src, dst, n, load, store_bf16);
        break;
      case DType::f16:
        convert_loop(src, dst, n, load, store_f16);
        break;
    }
  };
  switch (src_t) {
    case DType::f32:
      with_store(load_f32);
      break;
    case DType::bf16:
      with_store(load_bf16);
      break;
    case DType::f16:
      with_store(load_f16);
      break;
  }
}

void round_through(float* x, std::size_t n, DType t) {
  switch (t) {
    case DType::f32:
      return;
    case DType::bf16:
      for (std::size_t i = 0; i < n; ++i) x[i] = bf16_to_f32(f32_to_bf16(x[i]));
      return;
    case DType::f16:
      for (std::size_t i = 0; i < n; ++i) x[i] = f16_to_f32(f32_to_f16(x[i]));
      return;
  }
}

}  // namespace usp
