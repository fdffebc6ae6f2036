// 2^x on 16 fp32 lanes with AVX-512: the one exponential of the softmax for every vector path
// (the fp32 tile ops and the AMX bf16 path). Each function carries its own target attribute and
// inlines into callers built for a superset of it; callers enter it only after a run-time CPU
// check.
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define USP_HAVE_EXP2_AVX512 1
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#define USP_EXP2_AVX512 __attribute__((target("avx512f,avx512dq")))

namespace usp::cpu::simd {

// 2^x for finite x: x = n + f with n = floor(x) and f in [0, 1) in one instruction (vreduceps),
// 2^f = 1 + f·q(f) with q of degree 4 fitted for the least maximum relative error on [0, 1)
// (8.2e-8; about 2e-7 with fp32 rounding), 2^n by scalef, which takes floor(x) itself, gives 0
// far below -149 and inf far above 127. Integers give exact powers of two (2^0 = 1, so a running
// maximum that stays rescales by exactly 1). -inf gives NaN: use exp2_ps where it can occur.
USP_EXP2_AVX512 inline __m512 exp2_finite_ps(__m512 x) {
  const __m512 f = _mm512_reduce_ps(x, _MM_FROUND_TO_NEG_INF);
  __m512 q = _mm512_set1_ps(1.8669905751736039e-03f);
  q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(9.017325422701788e-03f));
  q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(5.5799702507083423e-02f));
  q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(2.4016450769905454e-01f));
  q = _mm512_fmadd_ps(q, f, _mm512_set1_ps(6.931513071100063e-01f));
  return _mm512_scalef_ps(_mm512_fmadd_ps(q, f, _mm512_set1_ps(1.0f)), x);
}

// 2^x for any x: -inf (masked scores) gives exactly 0, NaN stays NaN.
USP_EXP2_AVX512 inline __m512 exp2_ps(__m512 x) {
  return exp2_finite_ps(_mm512_max_ps(_mm512_set1_ps(-150.0f), x));  // max(-150, NaN) is NaN
}

// exp2_finite_ps where the caller knows no -inf occurs (Finite), exp2_ps otherwise.
template <bool Finite>
USP_EXP2_AVX512 inline __m512 exp2_sel(__m512 x) {
  if constexpr (Finite) {
    return exp2_finite_ps(x);
  } else {
    return exp2_ps(x);
  }
}

}  // namespace usp::cpu::simd

#else
#define USP_HAVE_EXP2_AVX512 0
#endif
