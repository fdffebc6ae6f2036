// AVX-512 inner loops: a register-blocked micro-GEMM (up to 6 rows × 64 columns of accumulators)
// and the softmax rows (exp2, row maximum and scaling from softmax_avx512.hpp). Compiled for the
// generic target and entered only after a run-time CPU check.
#include "kernel/cpu/tile_ops.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define USP_HAVE_AVX512_OPS 1
// GCC 12 reports its own intrinsics' self-initialized placeholders as uninitialized when they are
// inlined into target-attributed functions; nothing here reads uninitialized data.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "kernel/cpu/softmax_avx512.hpp"
#else
#define USP_HAVE_AVX512_OPS 0
#endif

namespace usp::cpu {

#if USP_HAVE_AVX512_OPS

#define USP_AVX512 __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,fma")))

namespace {

// C[R][16·NV] (+)= A·B over K, A[r][k] at A[r·lda + k] (or A[k·lda + r] when TA).
template <int R, int NV, bool TA>
USP_AVX512 inline void gemm_block(int K, const float* A, int lda, const float* B, int ldb, float* C,
                                  int ldc, bool accumulate) {
  __m512 c[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      c[r][v] = accumulate ? _mm512_loadu_ps(C + r * ldc + 16 * v) : _mm512_setzero_ps();
  for (int k = 0; k < K; ++k) {
    __m512 b[NV];
    const float* bk = B + static_cast<long>(k) * ldb;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = _mm512_loadu_ps(bk + 16 * v);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const __m512 a = _mm512_set1_ps(TA ? A[static_cast<long>(k) * lda + r] : A[r * lda + k]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[r][v] = _mm512_fmadd_ps(a, b[v], c[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) _mm512_storeu_ps(C + r * ldc + 16 * v, c[r][v]);
}

constexpr int kRows = 6;  // accumulator rows per block (6 × 4 zmm accumulators)

// The remaining M % kRows rows (fewer than kRows) of a strip: one block of exactly `rows` rows.
template <int NV, bool TA, int R = kRows - 1>
USP_AVX512 inline void gemm_tail(int rows, int K, const float* A, int lda, const float* B, int ldb,
                                 float* C, int ldc, bool accumulate) {
  if constexpr (R > 0) {
    if (rows == R) {
      gemm_block<R, NV, TA>(K, A, lda, B, ldb, C, ldc, accumulate);
      return;
    }
    gemm_tail<NV, TA, R - 1>(rows, K, A, lda, B, ldb, C, ldc, accumulate);
  }
}

template <int NV, bool TA>
USP_AVX512 void gemm_strip(int M, int K, const float* A, int lda, const float* B, int ldb, float* C,
                           int ldc, bool accumulate) {
  // Row i of C starts at A + i·lda (A row-major) or at A + i (A transposed).
  const long a_step = TA ? 1 : lda;
  int i = 0;
  for (; i + kRows <= M; i += kRows)
    gemm_block<kRows, NV, TA>(K, A + i * a_step, lda, B, ldb, C + static_cast<long>(i) * ldc, ldc,
                              accumulate);
  if (i < M)
    gemm_tail<NV, TA>(M - i, K, A + i * a_step, lda, B, ldb, C + static_cast<long>(i) * ldc, ldc,
                      accumulate);
}

template <bool TA>
USP_AVX512 void gemm_any(int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                         float* C, int ldc, bool accumulate) {
  for (int j = 0; j < N; j += 64) {
    const int nv = (N - j) >= 64 ? 4 : (N - j) / 16;
    switch (nv) {
      case 4:
        gemm_strip<4, TA>(M, K, A, lda, B + j, ldb, C + j, ldc, accumulate);
        break;
      case 3:
        gemm_strip<3, TA>(M, K, A, lda, B + j, ldb, C + j, ldc, accumulate);
        break;
      case 2:
        gemm_strip<2, TA>(M, K, A, lda, B + j, ldb, C + j, ldc, accumulate);
        break;
      default:
        gemm_strip<1, TA>(M, K, A, lda, B + j, ldb, C + j, ldc, accumulate);
        break;
    }
  }
}

USP_AVX512 void gemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                     float* C, int ldc, bool accumulate) {
  gemm_any<false>(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

USP_AVX512 void gemm_tn(int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                        float* C, int ldc, bool accumulate) {
  gemm_any<true>(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

using simd::exp2_ps;
using simd::row_max;
using simd::scale_row;

USP_AVX512 float exp2_row(float* x, int n, float c, float sub) {
  const __m512 vc = _mm512_set1_ps(c);
  const __m512 vs = _mm512_set1_ps(-sub);
  __m512 s = _mm512_setzero_ps();
  for (int j = 0; j < n; j += 16) {
    const __m512 e = exp2_ps(_mm512_fmadd_ps(vc, _mm512_loadu_ps(x + j), vs));
    _mm512_storeu_ps(x + j, e);
    s = _mm512_add_ps(s, e);
  }
  return _mm512_reduce_add_ps(s);
}

USP_AVX512 void ds_row(const float* p, float* dp, int n, float D) {
  const __m512 vd = _mm512_set1_ps(D);
  for (int j = 0; j < n; j += 16) {
    const __m512 v = _mm512_sub_ps(_mm512_loadu_ps(dp + j), vd);
    _mm512_storeu_ps(dp + j, _mm512_mul_ps(_mm512_loadu_ps(p + j), v));
  }
}

USP_AVX512 void softmax_step(float* s, int rows, int n, int lds, float c, float* m, float* l,
                             float* acc, int nacc, int ldacc) {
  // Three passes so that the rows' dependency chains (max reduction, the rescale factor's exp2,
  // the sum reduction) overlap instead of running one row after another: the rows' maxima; the
  // new running maxima and rescale factors 16 rows per vector; the exponentials and sums.
  constexpr float kNegInf = -__builtin_inff();
  constexpr int kMaxRows = 64;  // kBr
  alignas(64) float tmax[kMaxRows], m_new[kMaxRows], alpha[kMaxRows];
  const __m512 vc = _mm512_set1_ps(c);
  const __m512 neg_inf = _mm512_set1_ps(kNegInf);
  for (int r0 = 0; r0 < rows; r0 += kMaxRows) {
    const int nr = rows - r0 < kMaxRows ? rows - r0 : kMaxRows;
    float* const s0 = s + static_cast<long>(r0) * lds;
    for (int r = 0; r < nr; ++r) {
      const float* x = s0 + static_cast<long>(r) * lds;
      __m512 vmax = neg_inf;
      for (int j = 0; j < n; j += 16) vmax = _mm512_max_ps(vmax, _mm512_loadu_ps(x + j));
      tmax[r] = _mm512_reduce_max_ps(vmax);
      // The vector maximum may drop NaN scores; where no finite one is left the row would pass
      // for one that sees no key. A NaN maximum makes its sums and outputs NaN, as in the
      // reference.
      if (tmax[r] == kNegInf) tmax[r] = first_nan(x, n);
    }
    for (int r = 0; r < nr; r += 16) {
      const __mmask16 k =
          nr - r >= 16 ? __mmask16{0xFFFF} : static_cast<__mmask16>((1u << (nr - r)) - 1);
      const __m512 mo = _mm512_mask_loadu_ps(_mm512_setzero_ps(), k, m + r0 + r);
      const __m512 tm = _mm512_mask_loadu_ps(_mm512_setzero_ps(), k, tmax + r);
      // A row without a visible score keeps its maximum: c·(-inf) = -inf never wins.
      const __m512 mn = _mm512_max_ps(mo, _mm512_mul_ps(vc, tm));
      // 1 where the maximum stays (also -inf = -inf), 0 where the old one was -inf (acc and l
      // are still 0 then), 2^(m − m') otherwise.
      const __mmask16 same = _mm512_cmp_ps_mask(mo, mn, _CMP_EQ_OQ);
      const __mmask16 first = _mm512_cmp_ps_mask(mo, neg_inf, _CMP_EQ_OQ);
      __m512 al = exp2_ps(_mm512_sub_ps(mo, mn));
      al = _mm512_mask_blend_ps(static_cast<__mmask16>(first & ~same), al, _mm512_setzero_ps());
      al = _mm512_mask_blend_ps(same, al, _mm512_set1_ps(1.0f));
      _mm512_store_ps(m_new + r, mn);
      _mm512_store_ps(alpha + r, al);
    }
    for (int r = 0; r < nr; ++r) {
      float* x = s0 + static_cast<long>(r) * lds;
      if (tmax[r] == kNegInf) {  // nothing visible to this row in this tile
        for (int j = 0; j < n; j += 16) _mm512_storeu_ps(x + j, _mm512_setzero_ps());
        continue;
      }
      const __m512 vs = _mm512_set1_ps(-m_new[r]);
      __m512 sum = _mm512_setzero_ps();
      for (int j = 0; j < n; j += 16) {
        const __m512 e = exp2_ps(_mm512_fmadd_ps(vc, _mm512_loadu_ps(x + j), vs));
        _mm512_storeu_ps(x + j, e);
        sum = _mm512_add_ps(sum, e);
      }
      const float row_sum = _mm512_reduce_add_ps(sum);
      const int ri = r0 + r;
      if (alpha[r] == 1.0f) {
        l[ri] += row_sum;
      } else {
        l[ri] = l[ri] * alpha[r] + row_sum;
        const __m512 va = _mm512_set1_ps(alpha[r]);
        float* a = acc + static_cast<long>(ri) * ldacc;
        for (int j = 0; j < nacc; j += 16)
          _mm512_storeu_ps(a + j, _mm512_mul_ps(va, _mm512_loadu_ps(a + j)));
      }
      m[ri] = m_new[r];
    }
  }
}

USP_AVX512 void probs_grads(float* s, float* dp, int rows, int n, int ld, float c,
                            const float* lse2, const float* D) {
  const __m512 vc = _mm512_set1_ps(c);
  for (int r = 0; r < rows; ++r) {
    float* x = s + static_cast<long>(r) * ld;
    float* g = dp + static_cast<long>(r) * ld;
    if (lse2[r] == -__builtin_inff()) {  // the row sees no key at all: no gradient
      for (int j = 0; j < n; j += 16) {
        _mm512_storeu_ps(x + j, _mm512_setzero_ps());
        _mm512_storeu_ps(g + j, _mm512_setzero_ps());
      }
      continue;
    }
    const __m512 vs = _mm512_set1_ps(-lse2[r]);
    const __m512 vd = _mm512_set1_ps(D[r]);
    for (int j = 0; j < n; j += 16) {
      const __m512 p = exp2_ps(_mm512_fmadd_ps(vc, _mm512_loadu_ps(x + j), vs));
      _mm512_storeu_ps(x + j, p);
      _mm512_storeu_ps(g + j, _mm512_mul_ps(p, _mm512_sub_ps(_mm512_loadu_ps(g + j), vd)));
    }
  }
}

USP_AVX512 void load_row(const void* src, DType t, float* dst, int n) {
  int j = 0;
  switch (t) {
    case DType::f32: {
      const float* s = static_cast<const float*>(src);
      for (; j + 16 <= n; j += 16) _mm512_storeu_ps(dst + j, _mm512_loadu_ps(s + j));
      for (; j < n; ++j) dst[j] = s[j];
      return;
    }
    case DType::bf16: {
      const std::uint16_t* s = static_cast<const std::uint16_t*>(src);
      for (; j + 16 <= n; j += 16) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + j));
        const __m512i w = _mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16);
        _mm512_storeu_ps(dst + j, _mm512_castsi512_ps(w));
      }
      for (; j < n; ++j) dst[j] = bf16_to_f32(s[j]);
      return;
    }
    case DType::f16: {
      const std::uint16_t* s = static_cast<const std::uint16_t*>(src);
      for (; j + 16 <= n; j += 16) {
        const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(s + j));
        _mm512_storeu_ps(dst + j, _mm512_cvtph_ps(h));
      }
      for (; j < n; ++j) dst[j] = f16_to_f32(s[j]);
      return;
    }
  }
}

}  // namespace

const TileOps* avx512_tile_ops() {
  static const TileOps ops{"avx512",  gemm,   gemm_tn,  row_max,      exp2_row,
                           scale_row, ds_row, load_row, softmax_step, probs_grads};
  static const bool ok = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
                         __builtin_cpu_supports("fma");
  return ok ? &ops : nullptr;
}

#else

const TileOps* avx512_tile_ops() {
  return nullptr;
}

#endif

}  // namespace usp::cpu
