// Block-attention backward on WMMA fragments (any sm_70+), deterministic (no float atomics);
// delta = rowsum(dout ∘ out) comes from attention_delta.cu:
//   1. dK, dV: each block owns 64 keys of one (batch, kv head) and loops over the query heads of
//      its group and over the query tiles, recomputing P = exp2(S·scale·log2e − lse·log2e);
//   2. dQ: each block owns 64 query rows of one (batch, head) and loops over the key tiles.
// Per warp: Sᵀ/dPᵀ (or S/dP) 16 × 64 in fp32 scratch, P and dS as 16-bit WMMA operands, dK/dV/dQ
// in fp32 fragments. Nothing of size sq × sk reaches global memory.
#include "attention_common.cuh"
#include "dispatch.cuh"

namespace usp::cuda::detail {
namespace {

// Per-warp scratch of both backward kernels: two fp32 16 × kLdS tiles and two 16-bit 16 × kLdP.
constexpr int kScrF = align128(16 * kLdS * 4);
constexpr int kScrT = align128(16 * kLdP * 2);
constexpr int kWarpBytes = 2 * kScrF + 2 * kScrT;

template <int D>
struct BwdSmem {
  static constexpr int kTile = align128(kTileN * Pitch<D>::kT * 2);
  static constexpr int kOffB = kTile;                             // second 64-row tile
  static constexpr int kOffWarp = 2 * kTile;                      // kWarps × kWarpBytes
  static constexpr int kOffVec = kOffWarp + kWarps * kWarpBytes;  // 2 × 64 floats
  static constexpr int kTotal = kOffVec + align128(2 * kTileN * 4);
  static_assert(2 * kTileM * Pitch<D>::kT * 2 <= kWarps * kWarpBytes, "staging must fit");
  static_assert(16 * Pitch<D>::kO * 4 <= kWarpBytes, "epilogue staging must fit");
};

// A backward block's shared memory as both kernels use it: the two 64-row tiles x and y, the warp
// area (staging before the loop), this warp's scratch — S and dP (fp32, pitch kLdS), then the
// 16-bit P (dK/dV kernel only) and dS (pitch kLdP); the dQ kernel's dS sits where P would — and
// the lse and delta of the 64 streamed rows (dK/dV kernel).
template <class T, int D>
struct BwdShared {
  T *x, *y;
  unsigned char *warps, *scratch;
  float *s, *dp;
  T *p, *ds;
  float *lse, *delta;
  __device__ BwdShared(unsigned char* smem, int warp, bool with_p)
      : x(reinterpret_cast<T*>(smem)),
        y(reinterpret_cast<T*>(smem + BwdSmem<D>::kOffB)),
        warps(smem + BwdSmem<D>::kOffWarp),
        scratch(warps + warp * kWarpBytes),
        s(reinterpret_cast<float*>(scratch)),
        dp(reinterpret_cast<float*>(scratch + kScrF)),
        p(reinterpret_cast<T*>(scratch + 2 * kScrF)),
        ds(reinterpret_cast<T*>(scratch + 2 * kScrF + (with_p ? kScrT : 0))),
        lse(reinterpret_cast<float*>(smem + BwdSmem<D>::kOffVec)),
        delta(lse + kTileN) {}
};

// Copies rows [row0, row0 + kTileM) of two operands x and y (base pointers, row strides; rows
// >= limit read as zeros) into the shared tiles xs and ys and keeps this warp's 16 rows of each
// as A operands in xa and ya.
template <class T, int D>
__device__ __forceinline__ void stage_a_rows(FragA<T> (&xa)[D / 16], FragA<T> (&ya)[D / 16], T* xs,
                                             T* ys, const T* x, std::int64_t x_stride, const T* y,
                                             std::int64_t y_stride, int row0, int limit) {
  constexpr int kT = Pitch<D>::kT;
  load_tile<D>(xs, x, x_stride, row0, kTileM, limit);
  load_tile<D>(ys, y, y_stride, row0, kTileM, limit);
  __syncthreads();
  const int warp = threadIdx.x / 32;
#pragma unroll
  for (int kk = 0; kk < D / 16; ++kk) {
    wmma::load_matrix_sync(xa[kk], xs + warp * 16 * kT + kk * 16, kT);
    wmma::load_matrix_sync(ya[kk], ys + warp * 16 * kT + kk * 16, kT);
  }
}

// The recomputation shared by both kernels, for this warp's 16 rows and the kTileN rows of the
// shared tiles xt and yt: S = xa · xtᵀ into Sw and dP = ya · ytᵀ into dPw (fp32, pitch kLdS).
template <class T, int D>
__device__ __forceinline__ void recompute_s_dp(const FragA<T> (&xa)[D / 16], const T* xt,
                                               const FragA<T> (&ya)[D / 16], const T* yt, float* Sw,
                                               float* dPw) {
  constexpr int kT = Pitch<D>::kT;
#pragma unroll
  for (int j = 0; j < kTileN / 16; ++j) {
    FragAcc s, dp;
    wmma::fill_fragment(s, 0.0f);
    wmma::fill_fragment(dp, 0.0f);
#pragma unroll
    for (int kk = 0; kk < D / 16; ++kk) {
      FragBCol<T> xf, yf;
      wmma::load_matrix_sync(xf, xt + j * 16 * kT + kk * 16, kT);
      wmma::mma_sync(s, xa[kk], xf, s);
      wmma::load_matrix_sync(yf, yt + j * 16 * kT + kk * 16, kT);
      wmma::mma_sync(dp, ya[kk], yf, dp);
    }
    wmma::store_matrix_sync(Sw + j * 16, s, kLdS, wmma::mem_row_major);
    wmma::store_matrix_sync(dPw + j * 16, dp, kLdS, wmma::mem_row_major);
  }
  __syncwarp();
}

// Writes a warp's 16 × D fp32 result (fragments acc, staged in `scr` with pitch kO) to dst,
// scaled, with optional accumulation. Lanes 2r, 2r+1 write row r.
template <int D>
__device__ __forceinline__ void write_rows(const FragAcc (&acc)[D / 16], float* scr, float* dst,
                                           const std::int64_t* str, int b, int head, int row,
                                           int limit, float scale, bool accumulate, int r,
                                           int half) {
#pragma unroll
  for (int f = 0; f < D / 16; ++f)
    wmma::store_matrix_sync(scr + f * 16, acc[f], Pitch<D>::kO, wmma::mem_row_major);
  __syncwarp();
  if (row >= limit) return;
  float* p = dst + b * str[0] + row * str[1] + head * str[2];
  const float* s = scr + r * Pitch<D>::kO;
  for (int c = half * (D / 2); c < (half + 1) * (D / 2); ++c) {
    const float v = s[c] * scale;
    p[c] = accumulate ? p[c] + v : v;
  }
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads) dkdv_kernel(AttnArgs a) {
  constexpr int kT = Pitch<D>::kT, kF = D / 16;
  extern __shared__ __align__(128) unsigned char smem[];
  const BwdShared<T, D> sm(smem, threadIdx.x / 32, /*with_p=*/true);
  T *Qs = sm.x, *dOs = sm.y, *Pw = sm.p, *dSw = sm.ds;
  float *Sw = sm.s, *dPw = sm.dp, *lse_s = sm.lse, *del_s = sm.delta;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  const int n0 = (gridDim.x - 1 - blockIdx.x) * kTileM;  // this block's keys
  const int b = blockIdx.y / a.kv_heads, kvh = blockIdx.y % a.kv_heads;
  const int group = a.heads / a.kv_heads;

  // Stage K and V rows through the (not yet used) warp scratch area, keep them as A operands.
  FragA<T> ka[kF], va[kF];
  {
    T* Kst = reinterpret_cast<T*>(sm.warps);
    stage_a_rows<T, D>(ka, va, Kst, Kst + kTileM * kT,
                       static_cast<const T*>(a.k) + b * a.k_str[0] + kvh * a.k_str[2], a.k_str[1],
                       static_cast<const T*>(a.v) + b * a.v_str[0] + kvh * a.v_str[2], a.v_str[1],
                       n0, a.sk);
  }
  FragAcc dk[kF], dv[kF];
#pragma unroll
  for (int f = 0; f < kF; ++f) {
    wmma::fill_fragment(dk[f], 0.0f);
    wmma::fill_fragment(dv[f], 0.0f);
  }

  const int r = lane >> 1, half = lane & 1;
  const int kj = n0 + warp * 16 + r;  // the key of this lane's row of Sᵀ
  const float sc = a.scale * kLog2e;
  // Causal: queries before n0 see none of these keys.
  const int m_begin = a.mask != 0 ? n0 : 0;

  for (int g = 0; g < group; ++g) {
    const int h = kvh * group + g;
    const T* qb = static_cast<const T*>(a.q) + b * a.q_str[0] + h * a.q_str[2];
    const T* db = static_cast<const T*>(a.dout) + b * a.dout_str[0] + h * a.dout_str[2];
    const float* lrow = a.lse + b * a.lse_str[0] + h * a.lse_str[1];
    const float* drow = a.delta + (static_cast<std::int64_t>(b) * a.heads + h) * a.sq;
    for (int m0 = m_begin; m0 < a.sq; m0 += kTileN) {
      __syncthreads();  // staging / previous tile consumed by every warp
      load_tile<D>(Qs, qb, a.q_str[1], m0, kTileN, a.sq);
      load_tile<D>(dOs, db, a.dout_str[1], m0, kTileN, a.sq);
      for (int i = threadIdx.x; i < kTileN; i += kThreads) {
        const int qi = m0 + i;
        const float l = qi < a.sq ? lrow[qi * a.lse_str[2]] : -INFINITY;
        lse_s[i] = l * kLog2e;  // -inf marks a row that contributes nothing
        del_s[i] = qi < a.sq ? drow[qi] : 0.0f;
      }
      __syncthreads();

      // Sᵀ = K Qᵀ and dPᵀ = V dOᵀ, 16 keys × 64 queries per warp.
      recompute_s_dp<T, D>(ka, Qs, va, dOs, Sw, dPw);

      // Pᵀ and dSᵀ = Pᵀ ∘ (dPᵀ − delta) for row r (key kj), columns of this lane's half.
#pragma unroll 8
      for (int c = 0; c < 32; ++c) {
        const int col = half * 32 + c, qi = m0 + col;
        const float l2 = lse_s[col];
        float p = 0.0f;
        if (qi < a.sq && kj < a.sk && l2 != -INFINITY && visible(a.mask, qi, kj))
          p = exp2f(Sw[r * kLdS + col] * sc - l2);
        Pw[r * kLdP + col] = from_f32<T>(p);
        dSw[r * kLdP + col] = from_f32<T>(p * (dPw[r * kLdS + col] - del_s[col]));
      }
      __syncwarp();

      // dV += Pᵀ dO, dK += dSᵀ Q (scale applied at the end).
#pragma unroll
      for (int kk = 0; kk < kTileN / 16; ++kk) {
        FragA<T> pa, dsa;
        wmma::load_matrix_sync(pa, Pw + kk * 16, kLdP);
        wmma::load_matrix_sync(dsa, dSw + kk * 16, kLdP);
#pragma unroll
        for (int f = 0; f < kF; ++f) {
          FragBRow<T> of, qf;
          wmma::load_matrix_sync(of, dOs + kk * 16 * kT + f * 16, kT);
          wmma::mma_sync(dv[f], pa, of, dv[f]);
          wmma::load_matrix_sync(qf, Qs + kk * 16 * kT + f * 16, kT);
          wmma::mma_sync(dk[f], dsa, qf, dk[f]);
        }
      }
      __syncwarp();
    }
  }

  float* scr = reinterpret_cast<float*>(sm.scratch);
  write_rows<D>(dk, scr, a.dk, a.dk_str, b, kvh, kj, a.sk, a.scale, a.accumulate, r, half);
  __syncwarp();
  write_rows<D>(dv, scr, a.dv, a.dv_str, b, kvh, kj, a.sk, 1.0f, a.accumulate, r, half);
}

template <class T, int D>
__global__ void __launch_bounds__(kThreads) dq_kernel(AttnArgs a) {
  constexpr int kT = Pitch<D>::kT, kF = D / 16;
  extern __shared__ __align__(128) unsigned char smem[];
  const BwdShared<T, D> sm(smem, threadIdx.x / 32, /*with_p=*/false);
  T *Ks = sm.x, *Vs = sm.y, *dSw = sm.ds;
  float *Sw = sm.s, *dPw = sm.dp;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;

  const int m0 = (gridDim.x - 1 - blockIdx.x) * kTileM;
  const int b = blockIdx.y / a.heads, h = blockIdx.y % a.heads;
  const int kvh = h / (a.heads / a.kv_heads);

  // Q and dO rows staged through the K/V tiles, kept as A operands.
  FragA<T> qa[kF], doa[kF];
  stage_a_rows<T, D>(qa, doa, Ks, Vs, static_cast<const T*>(a.q) + b * a.q_str[0] + h * a.q_str[2],
                     a.q_str[1],
                     static_cast<const T*>(a.dout) + b * a.dout_str[0] + h * a.dout_str[2],
                     a.dout_str[1], m0, a.sq);
  FragAcc dq[kF];
#pragma unroll
  for (int f = 0; f < kF; ++f) wmma::fill_fragment(dq[f], 0.0f);

  const int r = lane >> 1, half = lane & 1;
  const int qi = m0 + warp * 16 + r;
  float l2 = -INFINITY, del = 0.0f;
  if (qi < a.sq) {
    l2 = a.lse[b * a.lse_str[0] + h * a.lse_str[1] + qi * a.lse_str[2]] * kLog2e;
    del = a.delta[(static_cast<std::int64_t>(b) * a.heads + h) * a.sq + qi];
  }
  const bool row_live = qi < a.sq && l2 != -INFINITY;
  const float sc = a.scale * kLog2e;
  const T* kb = static_cast<const T*>(a.k) + b * a.k_str[0] + kvh * a.k_str[2];
  const T* vb = static_cast<const T*>(a.v) + b * a.v_str[0] + kvh * a.v_str[2];
  int n_end = a.sk;
  if (a.mask != 0) n_end = min(a.sk, m0 + kTileM - (a.mask == 2 ? 1 : 0));

  for (int n0 = 0; n0 < n_end; n0 += kTileN) {
    __syncthreads();
    load_tile<D>(Ks, kb, a.k_str[1], n0, kTileN, a.sk);
    load_tile<D>(Vs, vb, a.v_str[1], n0, kTileN, a.sk);
    __syncthreads();

    // S = Q Kᵀ, dP = dO Vᵀ (16 × 64 per warp).
    recompute_s_dp<T, D>(qa, Ks, doa, Vs, Sw, dPw);

#pragma unroll 8
    for (int c = 0; c < 32; ++c) {
      const int col = half * 32 + c, kj = n0 + col;
      float p = 0.0f;
      if (row_live && kj < a.sk && visible(a.mask, qi, kj)) p = exp2f(Sw[r * kLdS + col] * sc - l2);
      dSw[r * kLdP + col] = from_f32<T>(p * (dPw[r * kLdS + col] - del));
    }
    __syncwarp();

    // dQ += dS K.
    mma_acc_rows<T, kF>(dq, dSw, kLdP, Ks, kT);
    __syncwarp();
  }

  write_rows<D>(dq, reinterpret_cast<float*>(sm.scratch), a.dq, a.dq_str, b, h, qi, a.sq, a.scale,
                a.accumulate, r, half);
}

template <class T, int D>
void run_backward(const AttnArgs& a, cudaStream_t stream) {
  launch_backward_pair(dkdv_kernel<T, D>, dq_kernel<T, D>, BwdSmem<D>::kTotal, kTileM, kThreads, a,
                       stream, "");
}

}  // namespace

void launch_backward_wmma(const AttnArgs& a, cudaStream_t stream) {
  dispatch(a, [&](auto type, auto dim) {
    run_backward<typename decltype(type)::type, decltype(dim)::value>(a, stream);
  });
}

}  // namespace usp::cuda::detail
