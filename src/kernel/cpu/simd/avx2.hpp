// The vector operations of the AVX2 + FMA + F16C tile ops: 8 fp32 lanes in a ymm register. Every
// function carries the target attribute USP_SIMD_TARGET, which tile_ops_simd.hpp also puts on the
// loops built from them; they run only after a run-time CPU check.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define USP_HAVE_SIMD_AVX2 1
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include <cstdint>

#define USP_SIMD_TARGET __attribute__((target("avx2,fma,f16c")))

namespace usp::cpu::vec {

struct Avx2 {
  static constexpr const char* kName = "avx2";
  static constexpr int kLanes = 8;
  // Micro-GEMM accumulator block: kGemmRows rows × 16 columns (2 × 6 ymm accumulators, 2 for B
  // and one broadcast of A: 15 of the 16 registers).
  static constexpr int kGemmRows = 6;
  using V = __m256;
  using M = __m256;  // comparison result, all-ones lanes where true

  USP_SIMD_TARGET static V load(const float* p) { return _mm256_loadu_ps(p); }
  USP_SIMD_TARGET static void store(float* p, V v) { _mm256_storeu_ps(p, v); }
  USP_SIMD_TARGET static V set1(float x) { return _mm256_set1_ps(x); }
  USP_SIMD_TARGET static V zero() { return _mm256_setzero_ps(); }
  USP_SIMD_TARGET static V add(V a, V b) { return _mm256_add_ps(a, b); }
  USP_SIMD_TARGET static V sub(V a, V b) { return _mm256_sub_ps(a, b); }
  USP_SIMD_TARGET static V mul(V a, V b) { return _mm256_mul_ps(a, b); }
  // a·b + c.
  USP_SIMD_TARGET static V fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
  // The larger of a and b; b where either is NaN (x86's rule, so max(lo, x) keeps a NaN x).
  USP_SIMD_TARGET static V max(V a, V b) { return _mm256_max_ps(a, b); }
  // The smaller of a and b; b where either is NaN.
  USP_SIMD_TARGET static V min(V a, V b) { return _mm256_min_ps(a, b); }
  USP_SIMD_TARGET static M eq(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_EQ_OQ); }
  USP_SIMD_TARGET static M lt(V a, V b) { return _mm256_cmp_ps(a, b, _CMP_LT_OQ); }
  // a where m is true, b elsewhere.
  USP_SIMD_TARGET static V select(M m, V a, V b) { return _mm256_blendv_ps(b, a, m); }
  // Zero where m is true, v elsewhere.
  USP_SIMD_TARGET static V zero_where(M m, V v) { return _mm256_andnot_ps(m, v); }

  USP_SIMD_TARGET static float sum(V v) {
    __m128 x = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_add_ps(x, _mm_movehl_ps(x, x));
    x = _mm_add_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
  }
  USP_SIMD_TARGET static float max_lane(V v) {
    __m128 x = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    x = _mm_max_ps(x, _mm_movehl_ps(x, x));
    x = _mm_max_ss(x, _mm_movehdup_ps(x));
    return _mm_cvtss_f32(x);
  }

  // floor(x) for |x| < 2^23, and 2^n for integer-valued n in [-126, 128] (128 gives +inf).
  USP_SIMD_TARGET static V floor(V x) { return _mm256_floor_ps(x); }
  USP_SIMD_TARGET static V pow2i(V n) {
    const __m256i e = _mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127));
    return _mm256_castsi256_ps(_mm256_slli_epi32(e, 23));
  }

  // 8 bf16 or fp16 values widened to fp32.
  USP_SIMD_TARGET static V load_bf16(const std::uint16_t* p) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
  }
  USP_SIMD_TARGET static V load_f16(const std::uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  }
};

}  // namespace usp::cpu::vec

#else
#define USP_HAVE_SIMD_AVX2 0
#endif
