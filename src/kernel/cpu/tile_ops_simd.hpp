// The CPU kernel's inner loops written once over a vector-ISA description S (simd/avx2.hpp,
// simd/neon.hpp): a register-blocked micro-GEMM (S::kGemmRows rows × 16 columns of accumulators),
// exp2 on S::kLanes lanes, and the online-softmax and gradient tile steps with the meaning
// TileOps gives them. Include it after exactly one ISA header, which defines USP_SIMD_TARGET; each
// ISA's tile_ops_<isa>.cpp instantiates make_tile_ops<S>().
#pragma once

#include <cstdint>

#include "kernel/cpu/tile_ops.hpp"
#include "kernel/cpu/tiling.hpp"
#include "usp/dtype.hpp"

namespace usp::cpu::vec {

inline constexpr int kStrip = 16;  // micro-GEMM columns per accumulator block (= kVec)

// C[R][16] (+)= A·B over K for the 16 columns at B and C; A[r][k] at A[r·lda + k] (or at
// A[k·lda + r] when TA).
template <class S, int R, bool TA>
USP_SIMD_TARGET inline void gemm_block(int K, const float* A, int lda, const float* B, int ldb,
                                       float* C, int ldc, bool accumulate) {
  using V = typename S::V;
  constexpr int NV = kStrip / S::kLanes;
  V c[R][NV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v)
      c[r][v] = accumulate ? S::load(C + static_cast<long>(r) * ldc + S::kLanes * v) : S::zero();
  for (int k = 0; k < K; ++k) {
    V b[NV];
    const float* bk = B + static_cast<long>(k) * ldb;
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) b[v] = S::load(bk + S::kLanes * v);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const V a =
          S::set1(TA ? A[static_cast<long>(k) * lda + r] : A[static_cast<long>(r) * lda + k]);
#pragma GCC unroll 4
      for (int v = 0; v < NV; ++v) c[r][v] = S::fma(a, b[v], c[r][v]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < NV; ++v) S::store(C + static_cast<long>(r) * ldc + S::kLanes * v, c[r][v]);
}

// The remaining M % kGemmRows rows (fewer than kGemmRows) of a 16-column strip.
template <class S, bool TA, int R = S::kGemmRows - 1>
USP_SIMD_TARGET inline void gemm_tail(int rows, int K, const float* A, int lda, const float* B,
                                      int ldb, float* C, int ldc, bool accumulate) {
  if constexpr (R > 0) {
    if (rows == R) {
      gemm_block<S, R, TA>(K, A, lda, B, ldb, C, ldc, accumulate);
      return;
    }
    gemm_tail<S, TA, R - 1>(rows, K, A, lda, B, ldb, C, ldc, accumulate);
  }
}

template <class S, bool TA>
USP_SIMD_TARGET void gemm_any(int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                              float* C, int ldc, bool accumulate) {
  constexpr int R = S::kGemmRows;
  // Row i of C starts at A + i·lda (A row-major) or at A + i (A transposed).
  const long a_step = TA ? 1 : lda;
  for (int j = 0; j < N; j += kStrip) {
    int i = 0;
    for (; i + R <= M; i += R)
      gemm_block<S, R, TA>(K, A + i * a_step, lda, B + j, ldb, C + static_cast<long>(i) * ldc + j,
                           ldc, accumulate);
    if (i < M)
      gemm_tail<S, TA>(M - i, K, A + i * a_step, lda, B + j, ldb,
                       C + static_cast<long>(i) * ldc + j, ldc, accumulate);
  }
}

template <class S>
USP_SIMD_TARGET void gemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                          float* C, int ldc, bool accumulate) {
  gemm_any<S, false>(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

template <class S>
USP_SIMD_TARGET void gemm_tn(int M, int N, int K, const float* A, int lda, const float* B, int ldb,
                             float* C, int ldc, bool accumulate) {
  gemm_any<S, true>(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

// 2^x: n = floor(x), 2^(x − n) by 1 + f·q(f) with q of degree 4 (8.2e-8 relative, the AVX-512
// path's polynomial; exactly 1 at f = 0) and 2^n from the exponent bits. -inf and anything below
// -126 give exactly 0 (no subnormal result), above 128 +inf, NaN stays NaN.
template <class S>
USP_SIMD_TARGET inline typename S::V exp2(typename S::V x) {
  using V = typename S::V;
  const V lo = S::set1(-126.0f);
  const auto below = S::lt(x, lo);             // not NaN
  x = S::min(S::set1(128.0f), S::max(lo, x));  // a NaN x stays NaN
  const V n = S::floor(x);
  const V f = S::sub(x, n);
  V q = S::set1(1.8669905751736039e-03f);
  q = S::fma(q, f, S::set1(9.017325422701788e-03f));
  q = S::fma(q, f, S::set1(5.5799702507083423e-02f));
  q = S::fma(q, f, S::set1(2.4016450769905454e-01f));
  q = S::fma(q, f, S::set1(6.931513071100063e-01f));
  const V p = S::fma(q, f, S::set1(1.0f));
  return S::zero_where(below, S::mul(p, S::pow2i(n)));
}

template <class S>
USP_SIMD_TARGET float row_max(const float* x, int n) {
  auto m = S::set1(-__builtin_inff());
  for (int j = 0; j < n; j += S::kLanes) m = S::max(m, S::load(x + j));
  return S::max_lane(m);
}

template <class S>
USP_SIMD_TARGET float exp2_row(float* x, int n, float c, float sub) {
  const auto vc = S::set1(c), vs = S::set1(-sub);
  auto s = S::zero();
  for (int j = 0; j < n; j += S::kLanes) {
    const auto e = exp2<S>(S::fma(vc, S::load(x + j), vs));
    S::store(x + j, e);
    s = S::add(s, e);
  }
  return S::sum(s);
}

template <class S>
USP_SIMD_TARGET void scale_row(float* x, int n, float a) {
  const auto va = S::set1(a);
  for (int j = 0; j < n; j += S::kLanes) S::store(x + j, S::mul(va, S::load(x + j)));
}

template <class S>
USP_SIMD_TARGET void ds_row(const float* p, float* dp, int n, float D) {
  const auto vd = S::set1(D);
  for (int j = 0; j < n; j += S::kLanes)
    S::store(dp + j, S::mul(S::load(p + j), S::sub(S::load(dp + j), vd)));
}

// TileOps::softmax_step. Three passes, so that the rows' dependency chains overlap: the rows'
// tile maxima; the new running maxima and rescale factors, kLanes rows per vector; the
// exponentials, sums and accumulator rescaling.
template <class S>
USP_SIMD_TARGET void softmax_step(float* s, int rows, int n, int lds, float c, float* m, float* l,
                                  float* acc, int nacc, int ldacc) {
  using V = typename S::V;
  constexpr float kNegInf = -__builtin_inff();
  constexpr int kMaxRows = kBr;
  constexpr int W = S::kLanes;
  alignas(64) float tmax[kMaxRows], m_old[kMaxRows], m_new[kMaxRows], alpha[kMaxRows];
  const V vc = S::set1(c);
  const V neg_inf = S::set1(kNegInf);
  for (int r0 = 0; r0 < rows; r0 += kMaxRows) {
    const int nr = rows - r0 < kMaxRows ? rows - r0 : kMaxRows;
    const int nr_pad = (nr + W - 1) / W * W;
    float* const s0 = s + static_cast<long>(r0) * lds;
    for (int r = 0; r < nr_pad; ++r) {
      tmax[r] = kNegInf;
      m_old[r] = r < nr ? m[r0 + r] : kNegInf;
    }
    for (int r = 0; r < nr; ++r) {
      const float* x = s0 + static_cast<long>(r) * lds;
      tmax[r] = row_max<S>(x, n);
      // The vector maximum drops NaN scores; where no finite one is left the row would pass for
      // one that sees no key. A NaN maximum makes its sums and outputs NaN, as in the reference.
      if (tmax[r] == kNegInf) tmax[r] = first_nan(x, n);
    }
    for (int r = 0; r < nr_pad; r += W) {
      const V mo = S::load(m_old + r);
      // A row without a visible score keeps its maximum: c·(-inf) = -inf never wins.
      const V mn = S::max(mo, S::mul(vc, S::load(tmax + r)));
      // 1 where the maximum stays (also -inf = -inf), 0 where the old one was -inf (acc and l
      // are still 0 then), 2^(m − m') otherwise.
      V al = exp2<S>(S::sub(mo, mn));
      al = S::select(S::eq(mo, neg_inf), S::zero(), al);
      al = S::select(S::eq(mo, mn), S::set1(1.0f), al);
      S::store(m_new + r, mn);
      S::store(alpha + r, al);
    }
    for (int r = 0; r < nr; ++r) {
      float* x = s0 + static_cast<long>(r) * lds;
      if (tmax[r] == kNegInf) {  // nothing visible to this row in this tile
        for (int j = 0; j < n; j += W) S::store(x + j, S::zero());
        continue;
      }
      const V vs = S::set1(-m_new[r]);
      V sum = S::zero();
      for (int j = 0; j < n; j += W) {
        const V e = exp2<S>(S::fma(vc, S::load(x + j), vs));
        S::store(x + j, e);
        sum = S::add(sum, e);
      }
      const float row_sum = S::sum(sum);
      const int ri = r0 + r;
      if (alpha[r] == 1.0f) {
        l[ri] += row_sum;
      } else {
        l[ri] = l[ri] * alpha[r] + row_sum;
        scale_row<S>(acc + static_cast<long>(ri) * ldacc, nacc, alpha[r]);
      }
      m[ri] = m_new[r];
    }
  }
}

// TileOps::probs_grads.
template <class S>
USP_SIMD_TARGET void probs_grads(float* s, float* dp, int rows, int n, int ld, float c,
                                 const float* lse2, const float* D) {
  using V = typename S::V;
  const V vc = S::set1(c);
  for (int r = 0; r < rows; ++r) {
    float* x = s + static_cast<long>(r) * ld;
    float* g = dp + static_cast<long>(r) * ld;
    if (lse2[r] == -__builtin_inff()) {  // the row sees no key at all: no gradient
      for (int j = 0; j < n; j += S::kLanes) {
        S::store(x + j, S::zero());
        S::store(g + j, S::zero());
      }
      continue;
    }
    const V vs = S::set1(-lse2[r]);
    const V vd = S::set1(D[r]);
    for (int j = 0; j < n; j += S::kLanes) {
      const V p = exp2<S>(S::fma(vc, S::load(x + j), vs));
      S::store(x + j, p);
      S::store(g + j, S::mul(p, S::sub(S::load(g + j), vd)));
    }
  }
}

template <class S>
USP_SIMD_TARGET void load_row(const void* src, DType t, float* dst, int n) {
  constexpr int W = S::kLanes;
  int j = 0;
  switch (t) {
    case DType::f32: {
      const float* x = static_cast<const float*>(src);
      for (; j + W <= n; j += W) S::store(dst + j, S::load(x + j));
      for (; j < n; ++j) dst[j] = x[j];
      return;
    }
    case DType::bf16: {
      const auto* x = static_cast<const std::uint16_t*>(src);
      for (; j + W <= n; j += W) S::store(dst + j, S::load_bf16(x + j));
      for (; j < n; ++j) dst[j] = bf16_to_f32(x[j]);
      return;
    }
    case DType::f16: {
      const auto* x = static_cast<const std::uint16_t*>(src);
      for (; j + W <= n; j += W) S::store(dst + j, S::load_f16(x + j));
      for (; j < n; ++j) dst[j] = f16_to_f32(x[j]);
      return;
    }
  }
}

// The tile ops of ISA S.
template <class S>
TileOps make_tile_ops() {
  return TileOps{S::kName,     gemm<S>,   gemm_tn<S>,  row_max<S>,      exp2_row<S>,
                 scale_row<S>, ds_row<S>, load_row<S>, softmax_step<S>, probs_grads<S>};
}

}  // namespace usp::cpu::vec
