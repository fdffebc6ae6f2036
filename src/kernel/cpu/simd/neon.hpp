// The vector operations of the NEON (Advanced SIMD, aarch64) tile ops: 4 fp32 lanes in a q
// register. NEON is part of every aarch64 CPU, so no target attribute is needed.
#pragma once

#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__))
#define USP_HAVE_SIMD_NEON 1
#include <arm_neon.h>

#include <cstdint>

#define USP_SIMD_TARGET

namespace usp::cpu::vec {

struct Neon {
  static constexpr const char* kName = "neon";
  static constexpr int kLanes = 4;
  // Micro-GEMM accumulator block: kGemmRows rows × 16 columns (6 × 4 accumulators, 4 for B and
  // one broadcast of A: 29 of the 32 registers).
  static constexpr int kGemmRows = 6;
  using V = float32x4_t;
  using M = uint32x4_t;

  static V load(const float* p) { return vld1q_f32(p); }
  static void store(float* p, V v) { vst1q_f32(p, v); }
  static V set1(float x) { return vdupq_n_f32(x); }
  static V zero() { return vdupq_n_f32(0.0f); }
  static V add(V a, V b) { return vaddq_f32(a, b); }
  static V sub(V a, V b) { return vsubq_f32(a, b); }
  static V mul(V a, V b) { return vmulq_f32(a, b); }
  static V fma(V a, V b, V c) { return vfmaq_f32(c, a, b); }
  // NaN where either is NaN (a NaN x survives max(lo, x) as on x86).
  static V max(V a, V b) { return vmaxq_f32(a, b); }
  static V min(V a, V b) { return vminq_f32(a, b); }
  static M eq(V a, V b) { return vceqq_f32(a, b); }
  static M lt(V a, V b) { return vcltq_f32(a, b); }
  static V select(M m, V a, V b) { return vbslq_f32(m, a, b); }
  static V zero_where(M m, V v) {
    return vreinterpretq_f32_u32(vbicq_u32(vreinterpretq_u32_f32(v), m));
  }
  static float sum(V v) { return vaddvq_f32(v); }
  static float max_lane(V v) { return vmaxvq_f32(v); }
  static V floor(V x) { return vrndmq_f32(x); }
  static V pow2i(V n) {
    const int32x4_t e = vaddq_s32(vcvtq_s32_f32(n), vdupq_n_s32(127));
    return vreinterpretq_f32_s32(vshlq_n_s32(e, 23));
  }
  static V load_bf16(const std::uint16_t* p) {
    return vreinterpretq_f32_u32(vshll_n_u16(vld1_u16(p), 16));
  }
  static V load_f16(const std::uint16_t* p) {
    return vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(p)));
  }
};

}  // namespace usp::cpu::vec

#else
#define USP_HAVE_SIMD_NEON 0
#endif
