// Shared pieces of the tensor-core attention kernels (forward and backward).
//
// Tensor cores are used through WMMA 16×16×16 fragments (fp16/bf16 in, fp32 accumulate). WMMA's
// register layout is opaque, so the kernels never index fragments by position except through
// `AccRowMap`: a per-lane table, read once per kernel by loading a known matrix (M[r][c] = r) into
// an accumulator fragment, that tells which row of the 16×16 tile each of the lane's accumulator
// elements belongs to. That is enough to rescale output rows by the online-softmax factor in
// registers. Scores go through shared memory (store_matrix_sync) for the softmax, which is done
// by two lanes per row.
#pragma once

#include <mma.h>

#include "device_util.cuh"

namespace usp::cuda::detail {

namespace wmma = nvcuda::wmma;

constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

// Tile geometry: 4 warps, each owning 16 rows; tiles of 64 rows × 64 columns.
constexpr int kWarps = 4;
constexpr int kThreads = 32 * kWarps;
constexpr int kTileM = 16 * kWarps;  // rows of the block's own operand (queries or keys)
constexpr int kTileN = 64;           // rows of the streamed operand per step
constexpr int kLdS = kTileN + 4;     // fp32 score scratch row pitch (multiple of 4 for WMMA)
constexpr int kLdP = kTileN + 8;     // 16-bit P / dS row pitch (multiple of 8 for WMMA)

template <int D>
struct Pitch {
  static constexpr int kT = D + 8;  // 16-bit tile row pitch: multiple of 8, breaks bank conflicts
  static constexpr int kO = D + 4;  // fp32 output staging row pitch
};

template <class T>
using FragA = wmma::fragment<wmma::matrix_a, 16, 16, 16, T, wmma::row_major>;
template <class T>
using FragBRow = wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::row_major>;
// B = Xᵀ where X is stored row-major: reading X row-major as a column-major 16×16 B gives Xᵀ.
template <class T>
using FragBCol = wmma::fragment<wmma::matrix_b, 16, 16, 16, T, wmma::col_major>;
using FragAcc = wmma::fragment<wmma::accumulator, 16, 16, 16, float>;

// Per-lane row index of each accumulator element (see the header comment). `scratch` is this
// warp's fp32 scratch of at least 16 × kLdS floats, 32-byte aligned.
struct AccRowMap {
  int row[FragAcc::num_elements];
  __device__ void init(float* scratch, int lane) {
    for (int i = lane; i < 16 * 16; i += 32) scratch[(i / 16) * kLdS + i % 16] = float(i / 16);
    __syncwarp();
    FragAcc f;
    wmma::load_matrix_sync(f, scratch, kLdS, wmma::mem_row_major);
    for (int i = 0; i < f.num_elements; ++i) row[i] = static_cast<int>(f.x[i]);
    __syncwarp();
  }
};

// Copies rows [row0, row0 + rows) of a [.., s, .., D] operand (16-bit, last dim contiguous,
// 16-byte aligned rows) into shared memory with pitch Pitch<D>::kT; rows ≥ limit become zeros.
template <int D, class T>
__device__ __forceinline__ void load_tile(T* smem, const T* base, std::int64_t row_stride, int row0,
                                          int rows, int limit) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  for (int i = threadIdx.x; i < rows * kChunks; i += kThreads) {
    const int r = i / kChunks, c = (i % kChunks) * 8;
    uint4 v = make_uint4(0, 0, 0, 0);
    if (row0 + r < limit) v = *reinterpret_cast<const uint4*>(base + (row0 + r) * row_stride + c);
    *reinterpret_cast<uint4*>(smem + r * Pitch<D>::kT + c) = v;
  }
}

// The (batch, head) a forward block serves (blockIdx.y = batch · heads + head) and the first q
// row of that head and k and v rows of its kv head (GQA: head / (heads / kv_heads)).
template <class T>
struct HeadRows {
  int b, h;
  const T *q, *k, *v;
};
template <class T>
__device__ __forceinline__ HeadRows<T> head_rows(const AttnArgs& a) {
  const int b = blockIdx.y / a.heads, h = blockIdx.y % a.heads;
  const int kvh = h / (a.heads / a.kv_heads);
  return {b, h, static_cast<const T*>(a.q) + b * a.q_str[0] + h * a.q_str[2],
          static_cast<const T*>(a.k) + b * a.k_str[0] + kvh * a.k_str[2],
          static_cast<const T*>(a.v) + b * a.v_str[0] + kvh * a.v_str[2]};
}

// acc[f] += A · B[:, 16f, 16f + 16) for f < kF, one warp's product over kTileN: A is the warp's
// 16 × kTileN tile (row-major, pitch lda), B the kTileN × 16·kF tile (row-major, pitch ldb).
template <class T, int kF>
__device__ __forceinline__ void mma_acc_rows(FragAcc (&acc)[kF], const T* a, int lda, const T* b,
                                             int ldb) {
#pragma unroll
  for (int kk = 0; kk < kTileN / 16; ++kk) {
    FragA<T> fa;
    wmma::load_matrix_sync(fa, a + kk * 16, lda);
#pragma unroll
    for (int f = 0; f < kF; ++f) {
      FragBRow<T> fb;
      wmma::load_matrix_sync(fb, b + kk * 16 * ldb + f * 16, ldb);
      wmma::mma_sync(acc[f], fa, fb, acc[f]);
    }
  }
}

// Key j visible to query i (block-local indices) under mask mode m.
__device__ __forceinline__ bool visible(int mask, int i, int j) {
  return mask == 0 || (mask == 1 ? j <= i : j < i);
}

// Shared-memory carving: bytes rounded up to 128 so every region is WMMA-aligned.
__host__ __device__ constexpr int align128(int bytes) {
  return (bytes + 127) / 128 * 128;
}

}  // namespace usp::cuda::detail
