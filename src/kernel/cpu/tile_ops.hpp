// The inner loops of the CPU kernel over packed fp32 tiles, in a portable version and an AVX-512
// version chosen at run time.
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
};

const TileOps& generic_tile_ops();
// Null when the CPU lacks AVX-512 (F, BW, VL, DQ) and FMA.
const TileOps* avx512_tile_ops();
// By usp::cpu_path(): AVX-512 when available, unless USP_CPU_PATH=generic forces the portable ops
// (read on every call, so a test can pick the portable path for the kernels it constructs).
const TileOps& best_tile_ops();

}  // namespace usp::cpu
