// The AVX-512 pieces of the softmax that every vector path shares (the fp32 tile ops and the
// AMX bf16 path): 2^x on 16 fp32 lanes, a row's maximum, a row scaled in place. Each function
// carries its own target attribute and inlines into callers built for a superset of it; callers
// enter it only after a run-time CPU check.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define USP_HAVE_SOFTMAX_AVX512 1
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#define USP_SOFTMAX_AVX512 __attribute__((target("avx512f,avx512dq")))

namespace usp::cpu::simd {

// 2^f for f in [0, 1): 1 + f·q(f) with q of degree 4 fitted for the least maximum relative error
// on [0, 1) (8.2e-8; about 2e-7 with fp32 rounding); exactly 1 at f = 0.
USP_SOFTMAX_AVX512 inline __m512 exp2_poly(__m512 f) {
  __m512 q = _mm512_set1_ps(1.8669905751736039e-03f);
  q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(9.017325422701788e-03f));
  q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(5.5799702507083423e-02f));
  q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(2.4016450769905454e-01f));
  q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(6.931513071100063e-01f));
  return _mm512_fmadd_ps(q, f, _mm512_set1_ps(1.0f));
}

// 2^x for finite x: x = n + f with n = floor(x) and f in [0, 1) in one instruction (vreduceps),
// 2^f by exp2_poly, 2^n by scalef, which takes floor(x) itself and gives inf far above 127.
// Integers give exact powers of two (2^0 = 1, so a running maximum that stays rescales by exactly
// 1). For the softmax's unmasked scores, x >= -126 in practice (a score 87 nats below its row's
// maximum): below that the result is subnormal, right but slow (see exp2_ps). -inf gives NaN: use
// exp2_ps where it can occur.
USP_SOFTMAX_AVX512 inline __m512 exp2_finite_ps(__m512 x) {
  return _mm512_scalef_ps(exp2_poly(_mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF)), x);
}

// 2^x for any x: -inf (masked scores) gives exactly 0, NaN stays NaN. Below -126, where 2^x is
// subnormal, it gives 0 (at most 2^-126 off) without computing a subnormal: a subnormal result
// costs a microcode assist per instruction on recent Intel cores (a masked score's 2^-150 did, and
// the causal diagonal tiles ran several times slower than the others).
USP_SOFTMAX_AVX512 inline __m512 exp2_ps(__m512 x) {
  const __m512 lo = _mm512_set1_ps(-126.0f);
  const __mmask16 zero = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);  // not NaN
  x = _mm512_max_ps(lo, x);                                      // max(lo, NaN) is NaN
  const __m512 f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF);
  return _mm512_maskz_scalef_ps(static_cast<__mmask16>(~zero), exp2_poly(f), x);
}

// exp2_finite_ps where the caller knows no -inf occurs (Finite), exp2_ps otherwise.
template <bool Finite>
USP_SOFTMAX_AVX512 inline __m512 exp2_sel(__m512 x) {
  if constexpr (Finite) {
    return exp2_finite_ps(x);
  } else {
    return exp2_ps(x);
  }
}

// The largest of x[0, n) (n a multiple of 16); -inf for n = 0.
USP_SOFTMAX_AVX512 inline float row_max(const float* x, int n) {
  __m512 m = _mm512_set1_ps(-__builtin_inff());
  for (int j = 0; j < n; j += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(x + j));
  return _mm512_reduce_max_ps(m);
}

// x[0, n) *= a (n a multiple of 16).
USP_SOFTMAX_AVX512 inline void scale_row(float* x, int n, float a) {
  const __m512 va = _mm512_set1_ps(a);
  for (int j = 0; j < n; j += 16)
    _mm512_storeu_ps(x + j, _mm512_mul_ps(va, _mm512_loadu_ps(x + j)));
}

}  // namespace usp::cpu::simd

#else
#define USP_HAVE_SOFTMAX_AVX512 0
#endif
