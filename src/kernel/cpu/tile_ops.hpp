// The inner loops of the CPU kernel over packed fp32 tiles: a portable version, a hand-written
// AVX-512 one, and AVX2 and NEON ones from one vector source (tile_ops_simd.hpp), chosen at run
// time by usp::cpu_path().
#pragma once

#include "usp/dtype.hpp"

namespace usp::cpu {

struct TileOps {
  const char* isa;
  // C[M][N] = A[M][K]·B[K][N] (accumulate: C += ...). N is a multiple of kVec; leading dimensions
  // are in floats.
  void (*gemm)(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
               int ldc, bool accumulate);
  // C[M][N] = Aᵀ·B (accumulate: C += ...) with A stored as [K][M] (A[k][i] at A[k·lda + i]).
  void (*gemm_tn)(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
                  int ldc, bool accumulate);
  // max of x[0, n); n a multiple of kVec.
  float (*row_max)(const float* x, int n);
  // x[j] = 2^(c·x[j] − sub) for j < n (n a multiple of kVec; -inf gives 0); returns the sum.
  float (*exp2_row)(float* x, int n, float c, float sub);
  // x[j] *= a for j < n (n a multiple of kVec).
  void (*scale_row)(float* x, int n, float a);
  // dp[j] = p[j]·(dp[j] − D) for j < n (n a multiple of kVec).
  void (*ds_row)(const float* p, float* dp, int n, float D);
  // dst[j] = src[j] as fp32 for j < n (any n, contiguous source).
  void (*load_row)(const void* src, DType t, float* dst, int n);

  // Fused tile versions of the row loops above. Null: the passes run the row functions instead,
  // with the same meaning.
  //
  // One online-softmax step over the score tile s[rows][lds] (columns [0, n), n a multiple of
  // kVec, hidden scores -inf) with the rows' running max m (base-2 units) and sum l and their
  // output rows acc[r·ldacc + [0, nacc)): a row with a visible score gets m' = max(m, c·max s),
  // s = 2^(c·s − m'), l = l·2^(m − m') + Σ s, acc ·= 2^(m − m') and m = m'; a row without one
  // gets s = 0 and keeps m, l and acc. nacc is a multiple of kVec.
  void (*softmax_step)(float* s, int rows, int n, int lds, float c, float* m, float* l, float* acc,
                       int nacc, int ldacc) = nullptr;
  // Softmax gradients over a tile: s = P = 2^(c·s − lse2[r]) (0 in rows with lse2[r] = -inf) and
  // dp = P∘(dp − D[r]), both [rows][ld] over columns [0, n), n a multiple of kVec.
  void (*probs_grads)(float* s, float* dp, int rows, int n, int ld, float c, const float* lse2,
                      const float* D) = nullptr;
};

// NaN if x[0, n) holds one, else -inf. For the fused softmax steps: a vector maximum drops NaN
// lanes, so a row whose maximum comes out -inf may still hold NaN scores, and then its sums and
// outputs must be NaN, as in the reference.
inline float first_nan(const float* x, int n) {
  for (int j = 0; j < n; ++j)
    if (x[j] != x[j]) return x[j];
  return -__builtin_inff();
}

const TileOps& generic_tile_ops();
// Null when the CPU lacks AVX-512 (F, BW, VL, DQ) and FMA.
const TileOps* avx512_tile_ops();
// Null when the CPU lacks AVX2, FMA and F16C.
const TileOps* avx2_tile_ops();
// Null except on aarch64.
const TileOps* neon_tile_ops();
// The ops of usp::cpu_path() (read on every call, so a test can pick a path with USP_CPU_PATH for
// the kernels it constructs): generic, avx2, neon, or the AVX-512 ops for avx512 and amx (the AMX
// path runs its bf16 tiles on top of them).
const TileOps& best_tile_ops();

}  // namespace usp::cpu
