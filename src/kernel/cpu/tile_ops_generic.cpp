#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "kernel/cpu/tile_ops.hpp"
#include "usp/cpu.hpp"

namespace usp::cpu {

namespace {

void gemm(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C, int ldc,
          bool accumulate) {
  for (int i = 0; i < M; ++i) {
    float* __restrict c = C + static_cast<long>(i) * ldc;
    if (!accumulate) std::fill(c, c + N, 0.0f);
    const float* a = A + static_cast<long>(i) * lda;
    for (int k = 0; k < K; ++k) {
      const float av = a[k];
      const float* __restrict b = B + static_cast<long>(k) * ldb;
      for (int j = 0; j < N; ++j) c[j] += av * b[j];
    }
  }
}

void gemm_tn(int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
             int ldc, bool accumulate) {
  if (!accumulate)
    for (int i = 0; i < M; ++i)
      std::fill(C + static_cast<long>(i) * ldc, C + static_cast<long>(i) * ldc + N, 0.0f);
  for (int k = 0; k < K; ++k) {
    const float* a = A + static_cast<long>(k) * lda;
    const float* __restrict b = B + static_cast<long>(k) * ldb;
    for (int i = 0; i < M; ++i) {
      const float av = a[i];
      float* __restrict c = C + static_cast<long>(i) * ldc;
      for (int j = 0; j < N; ++j) c[j] += av * b[j];
    }
  }
}

// NaN when x holds one (the softmax then gives NaN, as the reference does), else the maximum.
float row_max(const float* x, int n) {
  float m = -std::numeric_limits<float>::infinity();
  for (int j = 0; j < n; ++j) {
    if (x[j] != x[j]) return x[j];
    m = std::max(m, x[j]);
  }
  return m;
}

float exp2_row(float* x, int n, float c, float sub) {
  float s = 0;
  for (int j = 0; j < n; ++j) {
    x[j] = std::exp2(c * x[j] - sub);
    s += x[j];
  }
  return s;
}

void scale_row(float* x, int n, float a) {
  for (int j = 0; j < n; ++j) x[j] *= a;
}

void ds_row(const float* __restrict p, float* __restrict dp, int n, float D) {
  for (int j = 0; j < n; ++j) dp[j] = p[j] * (dp[j] - D);
}

void load_row(const void* src, DType t, float* dst, int n) {
  convert(src, t, dst, DType::f32, static_cast<std::size_t>(n));
}

}  // namespace

const TileOps& generic_tile_ops() {
  static const TileOps ops{"generic", gemm,      gemm_tn, row_max,
                           exp2_row,  scale_row, ds_row,  load_row};
  return ops;
}

const TileOps& best_tile_ops() {
  // One decision for the whole library: usp::cpu_path() (USP_CPU_PATH may force it), which only
  // names a path the CPU can run.
  const TileOps* fast = nullptr;
  switch (cpu_path()) {
    case CpuPath::generic:
      break;
    case CpuPath::avx2:
      fast = avx2_tile_ops();
      break;
    case CpuPath::avx512:
    case CpuPath::amx:
      fast = avx512_tile_ops();
      break;
    case CpuPath::neon:
      fast = neon_tile_ops();
      break;
  }
  return fast != nullptr ? *fast : generic_tile_ops();
}

}  // namespace usp::cpu
