// Thin inline-PTX wrappers for sm_80+ tensor-core code: mma.sync m16n8k16 (fp16 / bf16 in, fp32
// accumulate), ldmatrix (x4, plain and .trans), cp.async (16 bytes, zero-fill; whole tiles of
// rows) and ex2.approx.
//
// Fragment layouts of mma.sync.aligned.m16n8k16.row.col (PTX ISA, "Matrix Fragments for
// mma.m16n8k16"), for lane l of the warp with g = l / 4 (group) and t = l % 4 (thread in group).
// Every 32-bit register holds two 16-bit values, the lower column / lower k in the low half.
//   A (16×16, row-major, M×K):  a0 = A[g][2t, 2t+1]      a1 = A[g+8][2t, 2t+1]
//                               a2 = A[g][2t+8, 2t+9]    a3 = A[g+8][2t+8, 2t+9]
//   B (16×8, "col": K×N):       b0 = B[2t, 2t+1][g]      b1 = B[2t+8, 2t+9][g]
//   C/D (16×8, fp32):           c0, c1 = C[g][2t, 2t+1]  c2, c3 = C[g+8][2t, 2t+1]
// ldmatrix.x4: lanes 8i..8i+7 give the row addresses (16 bytes each) of 8×8 matrix i; register i
// of lane l receives M_i[l / 4][2(l % 4), 2(l % 4)+1], or with .trans M_i[2(l % 4), 2(l % 4)+1][l /
// 4] (the two elements of one column).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

namespace usp::cuda::detail {

// D = A·B + D on one m16n8k16 tile; T (__half or __nv_bfloat16) selects the .f16 or .bf16
// instruction.
#define USP_MMA_16816(ty)                                \
  asm("mma.sync.aligned.m16n8k16.row.col.f32." ty "." ty \
      ".f32 {%0, %1, %2, %3}, "                          \
      "{%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"  \
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])   \
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1))
template <class T>
__device__ __forceinline__ void mma_16816(float (&d)[4], const std::uint32_t (&a)[4],
                                          std::uint32_t b0, std::uint32_t b1) {
  static_assert(std::is_same_v<T, __half> || std::is_same_v<T, __nv_bfloat16>);
  if constexpr (std::is_same_v<T, __half>)
    USP_MMA_16816("f16");
  else
    USP_MMA_16816("bf16");
}
#undef USP_MMA_16816

__device__ __forceinline__ std::uint32_t smem_addr(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

// Four 8×8 matrices of 16-bit elements; `row` is this lane's row address (see the header).
__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], std::uint32_t row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(row)
               : "memory");
}

__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], std::uint32_t row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(row)
               : "memory");
}

// 16 bytes global → shared, asynchronously; src_bytes = 0 reads nothing and writes 16 zero bytes
// (src must still be a valid address).
__device__ __forceinline__ void cp_async_16(std::uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(dst), "l"(src),
               "r"(src_bytes)
               : "memory");
}

// 4 bytes global → shared (cached at all levels), the same zero-fill rule.
__device__ __forceinline__ void cp_async_4(std::uint32_t dst, const void* src, int src_bytes) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(dst), "l"(src), "r"(src_bytes)
               : "memory");
}

__device__ __forceinline__ void cp_async_commit() {
  asm volatile("cp.async.commit_group;\n" ::: "memory");
}

// Waits until at most N of this thread's committed groups are still pending.
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}

// 2^x; ex2.approx(-inf) = +0.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;\n" : "=f"(y) : "f"(x));
  return y;
}

// Rows [row0, row0 + R) of a [.., s, .., D] operand (16-bit, last dim contiguous, 16-byte
// aligned rows, `row_stride` elements apart) into a shared tile of pitch D + 8 elements,
// asynchronously, by the Threads threads of the block; rows ≥ limit are zero-filled (src-size 0:
// nothing is read). The caller commits the group.
template <int D, int R, int Threads, class T>
__device__ __forceinline__ void cp_async_rows(T* tile, const T* base, std::int64_t row_stride,
                                              int row0, int limit) {
  constexpr int kChunks = D / 8;  // 16-byte chunks per row
  static_assert((R * kChunks) % Threads == 0, "whole chunks per thread");
#pragma unroll
  for (int it = 0; it < R * kChunks / Threads; ++it) {
    const int i = static_cast<int>(threadIdx.x) + it * Threads;
    const int r = i / kChunks, c = (i % kChunks) * 8;
    const bool in = row0 + r < limit;
    const T* src = in ? base + (row0 + r) * row_stride + c : base;
    cp_async_16(smem_addr(tile + r * (D + 8) + c), src, in ? 16 : 0);
  }
}

// Two fp32 values → one register of two 16-bit values (lo in the low half).
template <class T>
__device__ __forceinline__ std::uint32_t pack2(float lo, float hi);

template <>
__device__ __forceinline__ std::uint32_t pack2<__half>(float lo, float hi) {
  __half2 h = __floats2half2_rn(lo, hi);
  return *reinterpret_cast<std::uint32_t*>(&h);
}

template <>
__device__ __forceinline__ std::uint32_t pack2<__nv_bfloat16>(float lo, float hi) {
  __nv_bfloat162 h = __floats2bfloat162_rn(lo, hi);
  return *reinterpret_cast<std::uint32_t*>(&h);
}

// The A operand of 16-wide k-step kk from m16n8 accumulators c of a 16 × 8NT product (tiles 2kk
// and 2kk + 1): the accumulator layout of two adjacent 8-column tiles is the A layout of one
// 16-wide k-step, so a P or dS tile feeds the next product without leaving registers.
template <class T, int NT>
__device__ __forceinline__ void acc_as_a(std::uint32_t (&a)[4], const float (&c)[NT][4], int kk) {
  a[0] = pack2<T>(c[2 * kk][0], c[2 * kk][1]);
  a[1] = pack2<T>(c[2 * kk][2], c[2 * kk][3]);
  a[2] = pack2<T>(c[2 * kk + 1][0], c[2 * kk + 1][1]);
  a[3] = pack2<T>(c[2 * kk + 1][2], c[2 * kk + 1][3]);
}

// acc += C · M for one warp: acc the 16 × D product as m16n8 accumulators, C (16 × N) given as
// m16n8 accumulators too (a P or dS tile, repacked with acc_as_a), M the N × D tile in shared
// memory (rows = k, pitch D + 8 elements) read with ldmatrix .trans from this lane's element
// offset trans_off = (8·((lane / 8) % 2) + lane % 8)·(D + 8) + 8·(lane / 16).
template <class T, int D, int N>
__device__ __forceinline__ void mma_acc_tile(float (&acc)[D / 8][4], const float (&c)[N / 8][4],
                                             const T* M, int trans_off) {
  constexpr int kPitch = D + 8;
#pragma unroll
  for (int kk = 0; kk < N / 16; ++kk) {
    std::uint32_t a[4];
    acc_as_a<T>(a, c, kk);
#pragma unroll
    for (int dd = 0; dd < D / 16; ++dd) {
      std::uint32_t bf[4];
      ldmatrix_x4_trans(bf, smem_addr(M + trans_off + kk * 16 * kPitch + dd * 16));
      mma_16816<T>(acc[2 * dd], a, bf[0], bf[1]);
      mma_16816<T>(acc[2 * dd + 1], a, bf[2], bf[3]);
    }
  }
}

}  // namespace usp::cuda::detail
