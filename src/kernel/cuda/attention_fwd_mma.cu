// Block-attention forward on mma.sync (sm_80+; FlashAttention-2 scheme with register-resident
// scores). Each block owns 64 query rows of one (batch, head), each of its 4 warps 16 of them.
// K/V tiles of 64 keys stream through shared memory, double-buffered with cp.async (rows past the
// key length arrive as zeros); fragments come out of shared memory with ldmatrix (.trans for V).
// Per tile and warp: S = Q Kᵀ (16 × 64, fp32, 8 m16n8 accumulators), mask, online softmax in base
// 2 with fp32 row statistics, P = exp2(S − m) packed to 16 bits in place — the m16n8k16
// accumulator layout of two adjacent 8-column tiles of S is exactly the A-operand layout of one
// 16-key step of P·V — then O += P V in fp32 registers. Nothing of S or P touches memory.
//
// Layouts (see mma_ptx.cuh; g = lane / 4, t = lane % 4): lane holds the scores
//   s[j][0..1] = S[g][8j + 2t + {0,1}],  s[j][2..3] = S[g + 8][8j + 2t + {0,1}]
// and the output o[f][..] = O[g or g + 8][8f + 2t + {0,1}] the same way, so each lane owns two
// rows (g, g + 8); a row's 64 scores are spread over the 4 lanes of the quad (same g), whose row
// max is reduced with __shfl_xor_sync over lane bits 0 and 1. Row sums stay per-lane partial
// sums (every lane of a quad rescales by the same alpha) and are reduced once at the end.
#include "attention_common.cuh"
#include "dispatch.cuh"
#include "mma_ptx.cuh"

namespace usp::cuda::detail {
namespace {

constexpr int kMmaWarps = 4;
constexpr int kMmaThreads = 32 * kMmaWarps;
constexpr int kBM = 16 * kMmaWarps;  // query rows per block
constexpr int kBN = 64;              // keys per K/V tile
static_assert(kBM == kBN, "the Q tile shares the K/V tile geometry");

// Shared memory: Q tile, then K[0], K[1], V[0], V[1]; rows of D 16-bit elements padded to
// D + 8 (a multiple of 16 bytes for cp.async and ldmatrix; the 16-byte skew per row makes the 8
// row addresses of every ldmatrix hit distinct banks).
template <int D>
struct MmaSmem {
  static constexpr int kPitch = D + 8;             // elements
  static constexpr int kTile = kBN * kPitch * 2;   // bytes
  static constexpr int kOffK = kTile;              // K[i] at kOffK + i · kTile
  static constexpr int kOffV = kOffK + 2 * kTile;  // V[i] at kOffV + i · kTile
  static constexpr int kTotal = kOffV + 2 * kTile;
  static_assert((kPitch * 2) % 16 == 0, "16-byte aligned rows");
};

// Two adjacent output elements (same row, columns c and c + 1) as the forward's out dtype.
__device__ __forceinline__ void store_pair(void* out, std::int64_t i, int dtype, float x, float y) {
  if (dtype == kF32) {
    float* p = static_cast<float*>(out) + i;
    if ((reinterpret_cast<std::uintptr_t>(p) & 7) == 0) {
      *reinterpret_cast<float2*>(p) = make_float2(x, y);
      return;
    }
  } else if (dtype == kF16) {
    __half* p = static_cast<__half*>(out) + i;
    if ((reinterpret_cast<std::uintptr_t>(p) & 3) == 0) {
      *reinterpret_cast<__half2*>(p) = __floats2half2_rn(x, y);
      return;
    }
  } else if (dtype == kBF16) {
    __nv_bfloat16* p = static_cast<__nv_bfloat16*>(out) + i;
    if ((reinterpret_cast<std::uintptr_t>(p) & 3) == 0) {
      *reinterpret_cast<__nv_bfloat162*>(p) = __floats2bfloat162_rn(x, y);
      return;
    }
  }
  store_f32(out, i, dtype, x);
  store_f32(out, i + 1, dtype, y);
}

// d ≤ 32: at least 4 blocks per SM (≤ 128 registers); without it ptxas spills a few bytes at d
// = 16.
template <class T, int D>
__global__ void __launch_bounds__(kMmaThreads, D <= 32 ? 4 : 1) fwd_mma_kernel(AttnArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // never launched: the host side picks the WMMA forward below sm_80
#else
  using S = MmaSmem<D>;
  constexpr int kP = S::kPitch;
  constexpr int kKd = D / 16;   // 16-wide k-steps of S = Q Kᵀ
  constexpr int kNo = D / 8;    // 8-wide n-tiles of O
  constexpr int kNs = kBN / 8;  // 8-wide n-tiles of S
  constexpr float kNegInf = -INFINITY;
  extern __shared__ __align__(128) unsigned char smem[];
  T* Qs = reinterpret_cast<T*>(smem);
  T* Ks0 = reinterpret_cast<T*>(smem + S::kOffK);
  T* Vs0 = reinterpret_cast<T*>(smem + S::kOffV);
  constexpr int kTileElems = S::kTile / 2;

  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int g = lane >> 2, t = lane & 3;

  // Heaviest causal blocks (last query rows) first.
  const int m0 = (gridDim.x - 1 - blockIdx.x) * kBM;
  const auto [b, h, qb, kb, vb] = head_rows<T>(a);

  const int row_w = m0 + warp * 16;          // this warp's first query row
  const int qi0 = row_w + g, qi1 = qi0 + 8;  // this lane's two rows
  const float sc = a.scale * kLog2e;

  // Keys any row of the block can see: [0, n_end).
  int n_end = a.sk;
  if (a.mask != 0) n_end = min(a.sk, m0 + kBM - (a.mask == 2 ? 1 : 0));
  const int n_tiles = n_end > 0 ? (n_end + kBN - 1) / kBN : 0;

  // ldmatrix.x4 row addresses of this lane (element offsets in a tile): lanes 8i..8i+7 address
  // the 8 rows of matrix i = lane / 8, row lane % 8.
  const int lr = lane & 7, lm = lane >> 3;
  // Q as the A operand of a 16-wide k-step: matrices (rows 0-7 | 8-15) × (cols 0-7 | 8-15) in
  // the order a0..a3 = (r0-7, c0-7), (r8-15, c0-7), (r0-7, c8-15), (r8-15, c8-15).
  const int q_off = (warp * 16 + (lm & 1) * 8 + lr) * kP + (lm >> 1) * 8;
  // K rows (keys) as B = Kᵀ of two n-tiles: b0, b1 of keys 0-7 (d 0-7, d 8-15), then of keys
  // 8-15; without .trans lane gets K[key g][d 2t, 2t+1] = B[2t, 2t+1][g].
  const int k_off = ((lm >> 1) * 8 + lr) * kP + (lm & 1) * 8;
  // V rows (keys) as B = V of two n-tiles (d 0-7, d 8-15), .trans: lane gets V[2t, 2t+1][g];
  // b0, b1 of d 0-7 (keys 0-7, keys 8-15), then of d 8-15.
  const int v_off = ((lm & 1) * 8 + lr) * kP + (lm >> 1) * 8;

  float o[kNo][4];
#pragma unroll
  for (int f = 0; f < kNo; ++f) o[f][0] = o[f][1] = o[f][2] = o[f][3] = 0.0f;
  float m_i[2] = {kNegInf, kNegInf};  // running max of rows g, g + 8 (base-2 scaled units)
  float l_i[2] = {0.0f, 0.0f};        // this lane's partial running sums

  if (n_tiles > 0) {
    // Groups: {Q}, {K0, V0}, then one per iteration (the next tile, or empty).
    cp_async_rows<D, kBN, kMmaThreads>(Qs, qb, a.q_str[1], m0, a.sq);
    cp_async_commit();
    cp_async_rows<D, kBN, kMmaThreads>(Ks0, kb, a.k_str[1], 0, a.sk);
    cp_async_rows<D, kBN, kMmaThreads>(Vs0, vb, a.v_str[1], 0, a.sk);
    cp_async_commit();
    cp_async_wait<1>();  // Q has landed (this thread's part)
    __syncthreads();     // ... and every thread's
  }
  std::uint32_t qa[kKd][4];
#pragma unroll
  for (int kd = 0; kd < kKd; ++kd) {
    if (n_tiles > 0) {
      ldmatrix_x4(qa[kd], smem_addr(Qs + q_off + kd * 16));
    } else {
      qa[kd][0] = qa[kd][1] = qa[kd][2] = qa[kd][3] = 0u;
    }
  }

  for (int it = 0; it < n_tiles; ++it) {
    const int n0 = it * kBN, buf = it & 1;
    __syncthreads();  // every warp is done with buffer buf ^ 1 (iteration it - 1)
    if (it + 1 < n_tiles) {
      cp_async_rows<D, kBN, kMmaThreads>(Ks0 + (buf ^ 1) * kTileElems, kb, a.k_str[1], n0 + kBN,
                                         a.sk);
      cp_async_rows<D, kBN, kMmaThreads>(Vs0 + (buf ^ 1) * kTileElems, vb, a.v_str[1], n0 + kBN,
                                         a.sk);
    }
    cp_async_commit();
    cp_async_wait<1>();  // tile `it` has landed (only the one just committed may be pending)
    __syncthreads();
    const T* Kt = Ks0 + buf * kTileElems;
    const T* Vt = Vs0 + buf * kTileElems;

    // S = Q Kᵀ.
    float s[kNs][4];
#pragma unroll
    for (int j = 0; j < kNs; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int kd = 0; kd < kKd; ++kd) {
#pragma unroll
      for (int jj = 0; jj < kNs / 2; ++jj) {
        std::uint32_t kf[4];
        ldmatrix_x4(kf, smem_addr(Kt + k_off + jj * 16 * kP + kd * 16));
        mma_16816<T>(s[2 * jj], qa[kd], kf[0], kf[1]);
        mma_16816<T>(s[2 * jj + 1], qa[kd], kf[2], kf[3]);
      }
    }

    // Scale to base 2; mask keys past sk and keys the mask hides (only where some can be).
    const bool need_mask =
        n0 + kBN > a.sk || (a.mask != 0 && n0 + kBN - 1 + (a.mask == 2 ? 1 : 0) > row_w);
#pragma unroll
    for (int j = 0; j < kNs; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        float x = s[j][e] * sc;
        if (need_mask) {
          const int kj = n0 + j * 8 + 2 * t + (e & 1);
          const int qi = e < 2 ? qi0 : qi1;
          if (kj >= a.sk || !visible(a.mask, qi, kj)) x = kNegInf;
        }
        s[j][e] = x;
      }
    }

    // Online softmax: row max over the quad, rescale factor, P in place.
    float mx0 = kNegInf, mx1 = kNegInf;
#pragma unroll
    for (int j = 0; j < kNs; ++j) {
      mx0 = fmaxf(mx0, fmaxf(s[j][0], s[j][1]));
      mx1 = fmaxf(mx1, fmaxf(s[j][2], s[j][3]));
    }
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 1));
    mx0 = fmaxf(mx0, __shfl_xor_sync(0xffffffffu, mx0, 2));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 1));
    mx1 = fmaxf(mx1, __shfl_xor_sync(0xffffffffu, mx1, 2));
    const float mn0 = fmaxf(m_i[0], mx0), mn1 = fmaxf(m_i[1], mx1);
    // A row that has seen no visible key yet keeps m = -inf; a finite stand-in keeps
    // exp2(-inf - m) = 0 (never NaN), and alpha = exp2(-inf - m) = 0 for the (zero) history.
    const float mu0 = mn0 == kNegInf ? 0.0f : mn0;
    const float mu1 = mn1 == kNegInf ? 0.0f : mn1;
    const float al0 = fast_exp2(m_i[0] - mu0), al1 = fast_exp2(m_i[1] - mu1);
    m_i[0] = mn0;
    m_i[1] = mn1;
    float rs0 = 0.0f, rs1 = 0.0f;
#pragma unroll
    for (int j = 0; j < kNs; ++j) {
      s[j][0] = fast_exp2(s[j][0] - mu0);
      s[j][1] = fast_exp2(s[j][1] - mu0);
      s[j][2] = fast_exp2(s[j][2] - mu1);
      s[j][3] = fast_exp2(s[j][3] - mu1);
      rs0 += s[j][0] + s[j][1];
      rs1 += s[j][2] + s[j][3];
    }
    l_i[0] = l_i[0] * al0 + rs0;
    l_i[1] = l_i[1] * al1 + rs1;
#pragma unroll
    for (int f = 0; f < kNo; ++f) {
      o[f][0] *= al0;
      o[f][1] *= al0;
      o[f][2] *= al1;
      o[f][3] *= al1;
    }

    // O += P V: 16-key step kk takes S tiles 2kk (keys 0-7) and 2kk + 1 (keys 8-15) as
    // a0 = P[g][2t..], a1 = P[g+8][2t..], a2 = P[g][8+2t..], a3 = P[g+8][8+2t..].
    mma_acc_tile<T, D, kBN>(o, s, Vt, v_off);
  }

  // Epilogue: full row sums over the quad; O / l; lse = ln(Σ exp) = (m + log2 l) · ln 2; rows
  // that saw no key get zeros and -inf.
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {  // row g (c0, c1), then row g + 8 (c2, c3) of the fragments
    float l = l_i[hf];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const auto qi = hf == 0 ? qi0 : qi1;
    if (qi >= a.sq) continue;
    const float inv = l > 0.0f ? 1.0f / l : 0.0f;
    const std::int64_t ob = b * a.out_str[0] + qi * a.out_str[1] + h * a.out_str[2];
#pragma unroll
    for (int f = 0; f < kNo; ++f)
      store_pair(a.out, ob + f * 8 + 2 * t, a.out_dtype, o[f][2 * hf] * inv,
                 o[f][2 * hf + 1] * inv);
    if (t == 0)
      a.lse[b * a.lse_str[0] + h * a.lse_str[1] + qi * a.lse_str[2]] =
          l > 0.0f ? (m_i[hf] + log2f(l)) * kLn2 : kNegInf;
  }
#endif
}

template <class T, int D>
void run_forward_mma(const AttnArgs& a, cudaStream_t stream) {
  constexpr int smem = MmaSmem<D>::kTotal;
  USP_CUDA_CHECK(cudaFuncSetAttribute(fwd_mma_kernel<T, D>,
                                      cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
  dim3 grid((a.sq + kBM - 1) / kBM, a.batch * a.heads);
  fwd_mma_kernel<T, D><<<grid, kMmaThreads, smem, stream>>>(a);
  check_launch("attention forward (mma)");
}

}  // namespace

void launch_forward_mma(const AttnArgs& a, cudaStream_t stream) {
  if (a.sq == 0 || a.batch == 0 || a.heads == 0) return;
  dispatch(a, [&](auto type, auto dim) {
    run_forward_mma<typename decltype(type)::type, decltype(dim)::value>(a, stream);
  });
}

}  // namespace usp::cuda::detail
