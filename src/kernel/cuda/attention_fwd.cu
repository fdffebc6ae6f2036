// Block-attention forward on tensor cores (FlashAttention-2 scheme): each block owns 64 query rows
// of one (batch, head), each of its 4 warps 16 of them; K/V tiles of 64 keys stream through shared
// memory; online softmax in base 2 with fp32 statistics; O accumulates in fp32 WMMA fragments.
// No score matrix ever reaches global memory.
#include <algorithm>

#include "attention_common.cuh"
#include "dispatch.cuh"

namespace usp::cuda::detail {
namespace {

template <int D>
struct FwdSmem {
  static constexpr int kQ = align128(kTileM * Pitch<D>::kT * 2);
  static constexpr int kKV = align128(kTileN * Pitch<D>::kT * 2);
  static constexpr int kScr = align128(16 * (kLdS > Pitch<D>::kO ? kLdS : Pitch<D>::kO) * 4);
  static constexpr int kP = align128(16 * kLdP * 2);
  static constexpr int kOffK = kQ;
  static constexpr int kOffV = kOffK + kKV;
  static constexpr int kOffScr = kOffV + kKV;
  static constexpr int kOffP = kOffScr + kWarps * kScr;
  static constexpr int kOffAlpha = kOffP + kWarps * kP;
  static constexpr int kTotal = kOffAlpha + align128(kTileM * 4);
};

template <class T, int D>
__global__ void __launch_bounds__(kThreads) fwd_kernel(AttnArgs a) {
  using S = FwdSmem<D>;
  constexpr int kT = Pitch<D>::kT, kO = Pitch<D>::kO, kF = D / 16;
  extern __shared__ __align__(128) unsigned char smem[];
  T* Qs = reinterpret_cast<T*>(smem);
  T* Ks = reinterpret_cast<T*>(smem + S::kOffK);
  T* Vs = reinterpret_cast<T*>(smem + S::kOffV);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  float* scr = reinterpret_cast<float*>(smem + S::kOffScr + warp * S::kScr);
  T* Pw = reinterpret_cast<T*>(smem + S::kOffP + warp * S::kP);
  float* alpha_s = reinterpret_cast<float*>(smem + S::kOffAlpha) + warp * 16;

  // Heaviest causal blocks (last query rows) first.
  const int m0 = (gridDim.x - 1 - blockIdx.x) * kTileM;
  const auto [b, h, qb, kb, vb] = head_rows<T>(a);

  AccRowMap map;
  map.init(scr, lane);

  load_tile<D>(Qs, qb, a.q_str[1], m0, kTileM, a.sq);
  __syncthreads();
  FragA<T> qa[kF];
#pragma unroll
  for (int kk = 0; kk < kF; ++kk) wmma::load_matrix_sync(qa[kk], Qs + warp * 16 * kT + kk * 16, kT);
  FragAcc acc[kF];
#pragma unroll
  for (int f = 0; f < kF; ++f) wmma::fill_fragment(acc[f], 0.0f);

  // Lanes 2r and 2r+1 own row r of the warp's 16 rows (columns split in two halves of 32); both
  // keep identical copies of the row's running max and sum.
  const int r = lane >> 1, half = lane & 1;
  const int qi = m0 + warp * 16 + r;
  const float sc = a.scale * kLog2e;
  float m_i = -INFINITY, l_i = 0.0f;

  int n_end = a.sk;
  if (a.mask != 0) n_end = min(a.sk, m0 + kTileM - (a.mask == 2 ? 1 : 0));

  for (int n0 = 0; n0 < n_end; n0 += kTileN) {
    __syncthreads();  // every warp is done with the previous K/V tile
    load_tile<D>(Ks, kb, a.k_str[1], n0, kTileN, a.sk);
    load_tile<D>(Vs, vb, a.v_str[1], n0, kTileN, a.sk);
    __syncthreads();

    // S = Q Kᵀ (16 × 64 per warp), into the fp32 scratch.
#pragma unroll
    for (int j = 0; j < kTileN / 16; ++j) {
      FragAcc s;
      wmma::fill_fragment(s, 0.0f);
#pragma unroll
      for (int kk = 0; kk < kF; ++kk) {
        FragBCol<T> kf;
        wmma::load_matrix_sync(kf, Ks + j * 16 * kT + kk * 16, kT);
        wmma::mma_sync(s, qa[kk], kf, s);
      }
      wmma::store_matrix_sync(scr + j * 16, s, kLdS, wmma::mem_row_major);
    }
    __syncwarp();

    // Online softmax of row r over this tile.
    float* srow = scr + r * kLdS + half * 32;
    float mx = -INFINITY;
#pragma unroll 8
    for (int c = 0; c < 32; ++c) {
      const int kj = n0 + half * 32 + c;
      const float x = (kj < a.sk && visible(a.mask, qi, kj)) ? srow[c] * sc : -INFINITY;
      srow[c] = x;
      mx = fmaxf(mx, x);
    }
    mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
    const float m_new = fmaxf(m_i, mx);
    const float m_use = m_new == -INFINITY ? 0.0f : m_new;  // a row that saw nothing yet
    const float alpha = exp2f(m_i - m_use);
    T* prow = Pw + r * kLdP + half * 32;
    float rs = 0.0f;
#pragma unroll 8
    for (int c = 0; c < 32; ++c) {
      const float p = exp2f(srow[c] - m_use);
      prow[c] = from_f32<T>(p);
      rs += p;
    }
    rs += __shfl_xor_sync(0xffffffffu, rs, 1);
    l_i = l_i * alpha + rs;
    m_i = m_new;
    if (half == 0) alpha_s[r] = alpha;
    __syncwarp();

    // O = diag(alpha) O + P V.
#pragma unroll
    for (int f = 0; f < kF; ++f)
#pragma unroll
      for (int i = 0; i < FragAcc::num_elements; ++i) acc[f].x[i] *= alpha_s[map.row[i]];
    mma_acc_rows<T, kF>(acc, Pw, kLdP, Vs, kT);
    __syncwarp();
  }

  // Epilogue: O / l through the scratch, lse = ln(sum exp) = (m + log2 l)·ln 2.
#pragma unroll
  for (int f = 0; f < kF; ++f)
    wmma::store_matrix_sync(scr + f * 16, acc[f], kO, wmma::mem_row_major);
  __syncwarp();
  if (qi < a.sq) {
    const float inv = l_i > 0.0f ? 1.0f / l_i : 0.0f;
    const std::int64_t o = b * a.out_str[0] + qi * a.out_str[1] + h * a.out_str[2];
    for (int c = half * (D / 2); c < (half + 1) * (D / 2); ++c)
      store_f32(a.out, o + c, a.out_dtype, scr[r * kO + c] * inv);
    if (half == 0)
      a.lse[b * a.lse_str[0] + h * a.lse_str[1] + qi * a.lse_str[2]] =
          l_i > 0.0f ? (m_i + log2f(l_i)) * kLn2 : -INFINITY;
  }
}

template <class T, int D>
void run_forward(const AttnArgs& a, cudaStream_t stream) {
  constexpr int smem = FwdSmem<D>::kTotal;
  USP_CUDA_CHECK(
      cudaFuncSetAttribute(fwd_kernel<T, D>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  dim3 grid((a.sq + kTileM - 1) / kTileM, a.batch * a.heads);
  fwd_kernel<T, D><<<grid, kThreads, smem, stream>>>(a);
  check_launch("attention forward");
}

}  // namespace

bool supported(int dtype, int head_dim) {
  return (dtype == kF16 || dtype == kBF16) &&
         (head_dim == 16 || head_dim == 32 || head_dim == 64 || head_dim == 128);
}

void launch_forward_wmma(const AttnArgs& a, cudaStream_t stream) {
  if (a.sq == 0 || a.batch == 0 || a.heads == 0) return;
  dispatch(a, [&](auto type, auto dim) {
    run_forward<typename decltype(type)::type, decltype(dim)::value>(a, stream);
  });
}

}  // namespace usp::cuda::detail
