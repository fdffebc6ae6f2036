// Block-attention backward on mma.sync (sm_80+), deterministic (no float atomics): the two-kernel
// scheme of the WMMA backward with every S, P, dP and dS tile in registers. delta =
// rowsum(dout ∘ out) comes from attention_delta.cu.
//   dK/dV: a block owns 64 keys of one (batch, kv head), each of its 4 warps 16 of them, and
//     streams the query tiles of every query head of the group (Q and dO double-buffered with
//     cp.async, lse and delta beside them). Per tile: Sᵀ = K Qᵀ and dPᵀ = V dOᵀ (m16n8 fp32
//     accumulators), Pᵀ = exp2(Sᵀ·scale·log2e − lse·log2e), dSᵀ = Pᵀ ∘ (dPᵀ − delta), then
//     dV += Pᵀ dO and dK += dSᵀ Q with Pᵀ and dSᵀ repacked in registers as A operands.
//   dQ: a block owns 64 query rows of one (batch, head) and streams the K/V tiles: S = Q Kᵀ,
//     dP = dO Vᵀ, dS = P ∘ (dP − delta), dQ += dS K.
// As in the mma forward, the accumulator layout of two adjacent 8-column tiles is the A-operand
// layout of one 16-wide k-step, so P and dS never leave registers. Streamed tiles hold 64 rows for
// d ≤ 64 and 32 at d = 128, where dK and dV alone take 128 fp32 registers per lane (on an H200, 64
// rows there spilled and ran fwd+bwd 10 % slower; 16 rows with K/V fragments kept, 12 % slower).
// The block's own rows stay in shared memory; their A fragments are also kept in registers where
// that fits.
//
// Fragment addressing (element offsets in a tile of pitch P = d + 8; lr = lane % 8, lm = lane / 8
// picks ldmatrix.x4's matrix):
//   a_off: the warp's 16 own rows as the A operand of a 16-wide k-step (rows 0-7 | 8-15 ×
//          cols 0-7 | 8-15 in the order a0..a3);
//   b_off: B = Xᵀ of two 8-wide n-tiles from 16 rows of X (rows = n, k contiguous), no .trans;
//   t_off: B = X of two 8-wide n-tiles from 16 rows of X (rows = k, n contiguous), .trans.
// A lane's accumulator c0, c1 is row g = lane / 4, columns 2t, 2t + 1 (t = lane % 4); c2, c3 the
// same columns of row g + 8 (mma_ptx.cuh).
#include "attention_common.cuh"
#include "dispatch.cuh"
#include "mma_ptx.cuh"

namespace usp::cuda::detail {
namespace {

constexpr int kBwWarps = 4;
constexpr int kBwThreads = 32 * kBwWarps;
constexpr int kOwn = 16 * kBwWarps;  // rows a block owns: keys (dK/dV) or queries (dQ)

// Shared memory of both kernels: the two own operands (X, Y: K and V, or Q and dO), then the two
// streamed operands double-buffered (A[0], A[1], B[0], B[1]), then fp32 lse·log2e and delta of
// the streamed query rows per buffer (dK/dV only).
template <int D>
struct BwdMma {
  static constexpr int kN = D >= 128 ? 32 : 64;  // streamed rows per step
  static constexpr int kPitch = D + 8;           // elements; 16-byte aligned, bank-skewed rows
  static constexpr int kOwnBytes = kOwn * kPitch * 2;
  static constexpr int kStreamBytes = kN * kPitch * 2;
  static constexpr int kOffY = kOwnBytes;
  static constexpr int kOffA = 2 * kOwnBytes;
  static constexpr int kOffB = kOffA + 2 * kStreamBytes;
  static constexpr int kOffVec = kOffB + 2 * kStreamBytes;
  static constexpr int kTotal = kOffVec + 2 * 2 * kN * 4;
  static_assert(kN % 16 == 0 && kN <= 64 && (kPitch * 2) % 16 == 0, "tile geometry");
};

struct Lane {
  int warp, g, t, a_off, b_off, t_off;
  template <int P>
  __device__ static Lane make() {
    const int lane = threadIdx.x % 32, lr = lane & 7, lm = lane >> 3;
    Lane l;
    l.warp = threadIdx.x / 32;
    l.g = lane >> 2;
    l.t = lane & 3;
    l.a_off = (l.warp * 16 + (lm & 1) * 8 + lr) * P + (lm >> 1) * 8;
    l.b_off = ((lm >> 1) * 8 + lr) * P + (lm & 1) * 8;
    l.t_off = ((lm & 1) * 8 + lr) * P + (lm >> 1) * 8;
    return l;
  }
};

// The two products of the recomputation for one streamed tile: C1 = X Aᵀ and C2 = Y Bᵀ for this
// warp's 16 own rows (X, Y in shared memory, or their kept fragments xa, ya when Keep) and the N
// rows of the streamed tiles At, Bt.
template <class T, int D, int N, bool Keep>
__device__ __forceinline__ void products(float (&c1)[N / 8][4], float (&c2)[N / 8][4],
                                         const std::uint32_t (&xa)[Keep ? D / 16 : 1][4],
                                         const std::uint32_t (&ya)[Keep ? D / 16 : 1][4],
                                         const T* Xs, const T* Ys, const T* At, const T* Bt,
                                         const Lane& l) {
  constexpr int P = D + 8;
#pragma unroll
  for (int j = 0; j < N / 8; ++j)
#pragma unroll
    for (int e = 0; e < 4; ++e) c1[j][e] = c2[j][e] = 0.0f;
#pragma unroll
  for (int kd = 0; kd < D / 16; ++kd) {
    std::uint32_t x[4], y[4];
    if constexpr (Keep) {
#pragma unroll
      for (int i = 0; i < 4; ++i) {
        x[i] = xa[kd][i];
        y[i] = ya[kd][i];
      }
    } else {
      ldmatrix_x4(x, smem_addr(Xs + l.a_off + kd * 16));
      ldmatrix_x4(y, smem_addr(Ys + l.a_off + kd * 16));
    }
#pragma unroll
    for (int jj = 0; jj < N / 16; ++jj) {
      std::uint32_t bf[4];
      ldmatrix_x4(bf, smem_addr(At + l.b_off + jj * 16 * P + kd * 16));
      mma_16816<T>(c1[2 * jj], x, bf[0], bf[1]);
      mma_16816<T>(c1[2 * jj + 1], x, bf[2], bf[3]);
      ldmatrix_x4(bf, smem_addr(Bt + l.b_off + jj * 16 * P + kd * 16));
      mma_16816<T>(c2[2 * jj], y, bf[0], bf[1]);
      mma_16816<T>(c2[2 * jj + 1], y, bf[2], bf[3]);
    }
  }
}

// Writes the warp's 16 × D fp32 accumulators (rows row0 = first + g and row0 + 8) to dst, scaled,
// optionally added to what is there; rows ≥ limit are skipped.
template <int D>
__device__ __forceinline__ void write_acc(const float (&acc)[D / 8][4], float* dst,
                                          const std::int64_t* str, int b, int head, int row0,
                                          int limit, float scale, bool accumulate, int t) {
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int row = row0 + 8 * hf;
    if (row >= limit) continue;
    float* p = dst + b * str[0] + row * str[1] + head * str[2] + 2 * t;
#pragma unroll
    for (int f = 0; f < D / 8; ++f) {
      float* q = p + 8 * f;
      float x = acc[f][2 * hf] * scale, y = acc[f][2 * hf + 1] * scale;
      if ((reinterpret_cast<std::uintptr_t>(q) & 7) == 0) {
        auto* q2 = reinterpret_cast<float2*>(q);
        if (accumulate) {
          const float2 o = *q2;
          x += o.x;
          y += o.y;
        }
        *q2 = make_float2(x, y);
      } else {
        q[0] = accumulate ? q[0] + x : x;
        q[1] = accumulate ? q[1] + y : y;
      }
    }
  }
}

template <int D>
constexpr bool kKeepKV = D <= 64;  // dK/dV kernel: K/V fragments in registers

// Blocks per SM the kernels are compiled for: 4 at d = 16 (≤ 128 registers; on an H200 the
// fwd+bwd ran ~4 % faster than with the 152/116 registers ptxas picks alone, although the dK/dV
// kernel then spills 36 bytes), else whatever the registers allow (2 at d ≥ 64).
template <int D>
constexpr int kMinBlocks = D == 16 ? 4 : 1;

template <class T, int D>
__global__ void __launch_bounds__(kBwThreads, kMinBlocks<D>) dkdv_mma_kernel(AttnArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // never launched: the host side picks the WMMA backward below sm_80
#else
  using L = BwdMma<D>;
  constexpr int N = L::kN, kKd = D / 16;
  constexpr bool kKeep = kKeepKV<D>;
  extern __shared__ __align__(128) unsigned char smem[];
  T* Ks = reinterpret_cast<T*>(smem);
  T* Vs = reinterpret_cast<T*>(smem + L::kOffY);
  T* Qs0 = reinterpret_cast<T*>(smem + L::kOffA);
  T* dOs0 = reinterpret_cast<T*>(smem + L::kOffB);
  float* vec0 = reinterpret_cast<float*>(smem + L::kOffVec);  // buffer i: lse at 2Ni, delta +N
  constexpr int kStreamElems = L::kStreamBytes / 2;
  const Lane l = Lane::make<L::kPitch>();

  // Causal work shrinks with the key index: the heaviest blocks (first keys) start first.
  const int n0 = blockIdx.x * kOwn;
  const int b = blockIdx.y / a.kv_heads, kvh = blockIdx.y % a.kv_heads;
  const int group = a.heads / a.kv_heads;
  const int kj0 = n0 + l.warp * 16 + l.g;  // this lane's keys: kj0, kj0 + 8
  // Causal: queries before n0 see none of these keys.
  const int m_begin = a.mask != 0 ? n0 : 0;
  const int per_head = a.sq > m_begin ? (a.sq - m_begin + N - 1) / N : 0;
  const int steps = group * per_head;
  const float sc = a.scale * kLog2e;

  // Step s: query tile m_begin + (s % per_head)·N of group head s / per_head.
  auto issue = [&](int s, int buf) {
    const int h = kvh * group + s / per_head, m0 = m_begin + (s % per_head) * N;
    cp_async_rows<D, N, kBwThreads>(Qs0 + buf * kStreamElems,
                                    static_cast<const T*>(a.q) + b * a.q_str[0] + h * a.q_str[2],
                                    a.q_str[1], m0, a.sq);
    cp_async_rows<D, N, kBwThreads>(
        dOs0 + buf * kStreamElems,
        static_cast<const T*>(a.dout) + b * a.dout_str[0] + h * a.dout_str[2], a.dout_str[1], m0,
        a.sq);
    // lse (natural log) and delta of the tile's rows; rows past sq read as zeros.
    const int i = threadIdx.x % 64;
    if (i < N) {
      const bool is_delta = threadIdx.x >= 64, in = m0 + i < a.sq;
      const int qi = in ? m0 + i : 0;
      const float* src = is_delta
                             ? a.delta + (static_cast<std::int64_t>(b) * a.heads + h) * a.sq + qi
                             : a.lse + b * a.lse_str[0] + h * a.lse_str[1] + qi * a.lse_str[2];
      cp_async_4(smem_addr(vec0 + buf * 2 * N + (is_delta ? N : 0) + i), src, in ? 4 : 0);
    }
  };

  // Groups: {K, V}, {step 0}, then one per step (the next step's tiles, or empty).
  cp_async_rows<D, kOwn, kBwThreads>(
      Ks, static_cast<const T*>(a.k) + b * a.k_str[0] + kvh * a.k_str[2], a.k_str[1], n0, a.sk);
  cp_async_rows<D, kOwn, kBwThreads>(
      Vs, static_cast<const T*>(a.v) + b * a.v_str[0] + kvh * a.v_str[2], a.v_str[1], n0, a.sk);
  cp_async_commit();
  if (steps > 0) issue(0, 0);
  cp_async_commit();
  cp_async_wait<1>();  // K and V have landed (this thread's part)
  __syncthreads();     // ... and every thread's

  std::uint32_t ka[kKeep ? kKd : 1][4], va[kKeep ? kKd : 1][4];
  if constexpr (kKeep) {
#pragma unroll
    for (int kd = 0; kd < kKd; ++kd) {
      ldmatrix_x4(ka[kd], smem_addr(Ks + l.a_off + kd * 16));
      ldmatrix_x4(va[kd], smem_addr(Vs + l.a_off + kd * 16));
    }
  }
  float dk[D / 8][4], dv[D / 8][4];
#pragma unroll
  for (int f = 0; f < D / 8; ++f)
#pragma unroll
    for (int e = 0; e < 4; ++e) dk[f][e] = dv[f][e] = 0.0f;

  for (int s = 0; s < steps; ++s) {
    const int buf = s & 1;
    __syncthreads();  // every warp is done with buffer buf ^ 1 (step s - 1)
    if (s + 1 < steps) issue(s + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();  // step s has landed (only the group just committed may be pending)
    __syncthreads();
    const int m0 = m_begin + (s % per_head) * N;
    const T* Qt = Qs0 + buf * kStreamElems;
    const T* dOt = dOs0 + buf * kStreamElems;
    const float* lsev = vec0 + buf * 2 * N;
    const float* dlv = lsev + N;

    // Sᵀ = K Qᵀ and dPᵀ = V dOᵀ: 16 keys × N queries per warp.
    float st[N / 8][4], dp[N / 8][4];
    products<T, D, N, kKeep>(st, dp, ka, va, Ks, Vs, Qt, dOt, l);

    // Pᵀ and dSᵀ = Pᵀ ∘ (dPᵀ − delta) in place. Rows that saw no key (lse -inf), queries past
    // sq, keys past sk (zero rows of K) and keys the mask hides get P = 0; the range and mask
    // tests run only on tiles where they can matter.
    const bool need_mask = n0 + kOwn > a.sk || m0 + N > a.sq ||
                           (a.mask != 0 && n0 + kOwn - 1 + (a.mask == 2 ? 1 : 0) > m0);
#pragma unroll
    for (int j = 0; j < N / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int c = 8 * j + 2 * l.t + (e & 1);  // query column in the tile
        const int kj = kj0 + (e < 2 ? 0 : 8);
        const float lse = lsev[c];
        bool live = lse != -INFINITY;
        if (need_mask) live = live && m0 + c < a.sq && kj < a.sk && visible(a.mask, m0 + c, kj);
        const float p = live ? fast_exp2(st[j][e] * sc - lse * kLog2e) : 0.0f;
        st[j][e] = p;
        dp[j][e] = p * (dp[j][e] - dlv[c]);
      }
    }

    // dV += Pᵀ dO, dK += dSᵀ Q (the softmax scale is applied to dK at the end).
    mma_acc_tile<T, D, N>(dv, st, dOt, l.t_off);
    mma_acc_tile<T, D, N>(dk, dp, Qt, l.t_off);
  }
  cp_async_wait<0>();

  write_acc<D>(dk, a.dk, a.dk_str, b, kvh, kj0, a.sk, a.scale, a.accumulate, l.t);
  write_acc<D>(dv, a.dv, a.dv_str, b, kvh, kj0, a.sk, 1.0f, a.accumulate, l.t);
#endif
}

template <class T, int D>
__global__ void __launch_bounds__(kBwThreads, kMinBlocks<D>) dq_mma_kernel(AttnArgs a) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
  __trap();  // never launched: the host side picks the WMMA backward below sm_80
#else
  using L = BwdMma<D>;
  constexpr int N = L::kN, kKd = D / 16;
  extern __shared__ __align__(128) unsigned char smem[];
  T* Qs = reinterpret_cast<T*>(smem);
  T* dOs = reinterpret_cast<T*>(smem + L::kOffY);
  T* Ks0 = reinterpret_cast<T*>(smem + L::kOffA);
  T* Vs0 = reinterpret_cast<T*>(smem + L::kOffB);
  constexpr int kStreamElems = L::kStreamBytes / 2;
  const Lane l = Lane::make<L::kPitch>();

  // Heaviest causal blocks (last query rows) first.
  const int m0 = (gridDim.x - 1 - blockIdx.x) * kOwn;
  const int b = blockIdx.y / a.heads, h = blockIdx.y % a.heads;
  const int kvh = h / (a.heads / a.kv_heads);
  const int row_w = m0 + l.warp * 16;  // this warp's first query row
  const int qi0 = row_w + l.g;         // this lane's rows: qi0, qi0 + 8
  float l2[2] = {-INFINITY, -INFINITY}, del[2] = {0.0f, 0.0f};
#pragma unroll
  for (int hf = 0; hf < 2; ++hf) {
    const int qi = qi0 + 8 * hf;
    if (qi < a.sq) {
      l2[hf] = a.lse[b * a.lse_str[0] + h * a.lse_str[1] + qi * a.lse_str[2]] * kLog2e;
      del[hf] = a.delta[(static_cast<std::int64_t>(b) * a.heads + h) * a.sq + qi];
    }
  }
  const float sc = a.scale * kLog2e;
  const T* kb = static_cast<const T*>(a.k) + b * a.k_str[0] + kvh * a.k_str[2];
  const T* vb = static_cast<const T*>(a.v) + b * a.v_str[0] + kvh * a.v_str[2];
  // Keys any row of the block can see: [0, n_end).
  int n_end = a.sk;
  if (a.mask != 0) n_end = min(a.sk, m0 + kOwn - (a.mask == 2 ? 1 : 0));
  const int steps = n_end > 0 ? (n_end + N - 1) / N : 0;

  auto issue = [&](int s, int buf) {
    cp_async_rows<D, N, kBwThreads>(Ks0 + buf * kStreamElems, kb, a.k_str[1], s * N, a.sk);
    cp_async_rows<D, N, kBwThreads>(Vs0 + buf * kStreamElems, vb, a.v_str[1], s * N, a.sk);
  };

  // Groups: {Q, dO}, {step 0}, then one per step.
  cp_async_rows<D, kOwn, kBwThreads>(
      Qs, static_cast<const T*>(a.q) + b * a.q_str[0] + h * a.q_str[2], a.q_str[1], m0, a.sq);
  cp_async_rows<D, kOwn, kBwThreads>(
      dOs, static_cast<const T*>(a.dout) + b * a.dout_str[0] + h * a.dout_str[2], a.dout_str[1], m0,
      a.sq);
  cp_async_commit();
  if (steps > 0) issue(0, 0);
  cp_async_commit();
  cp_async_wait<1>();
  __syncthreads();

  std::uint32_t qa[kKd][4], da[kKd][4];
#pragma unroll
  for (int kd = 0; kd < kKd; ++kd) {
    ldmatrix_x4(qa[kd], smem_addr(Qs + l.a_off + kd * 16));
    ldmatrix_x4(da[kd], smem_addr(dOs + l.a_off + kd * 16));
  }
  float dq[D / 8][4];
#pragma unroll
  for (int f = 0; f < D / 8; ++f)
#pragma unroll
    for (int e = 0; e < 4; ++e) dq[f][e] = 0.0f;

  for (int s = 0; s < steps; ++s) {
    const int buf = s & 1, n0 = s * N;
    __syncthreads();
    if (s + 1 < steps) issue(s + 1, buf ^ 1);
    cp_async_commit();
    cp_async_wait<1>();
    __syncthreads();
    const T* Kt = Ks0 + buf * kStreamElems;
    const T* Vt = Vs0 + buf * kStreamElems;

    // S = Q Kᵀ and dP = dO Vᵀ: 16 queries × N keys per warp.
    float score[N / 8][4], dp[N / 8][4];
    products<T, D, N, true>(score, dp, qa, da, Qs, dOs, Kt, Vt, l);

    const bool need_mask =
        n0 + N > a.sk || (a.mask != 0 && n0 + N - 1 + (a.mask == 2 ? 1 : 0) > row_w);
#pragma unroll
    for (int j = 0; j < N / 8; ++j) {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        const int hf = e >> 1, kj = n0 + 8 * j + 2 * l.t + (e & 1);
        bool live = l2[hf] != -INFINITY;
        if (need_mask) live = live && kj < a.sk && visible(a.mask, qi0 + 8 * hf, kj);
        const float p = live ? fast_exp2(score[j][e] * sc - l2[hf]) : 0.0f;
        dp[j][e] = p * (dp[j][e] - del[hf]);
      }
    }

    // dQ += dS K (the softmax scale is applied at the end).
    mma_acc_tile<T, D, N>(dq, dp, Kt, l.t_off);
  }
  cp_async_wait<0>();

  write_acc<D>(dq, a.dq, a.dq_str, b, h, qi0, a.sq, a.scale, a.accumulate, l.t);
#endif
}

template <class T, int D>
void run_backward_mma(const AttnArgs& a, cudaStream_t stream) {
  launch_backward_pair(dkdv_mma_kernel<T, D>, dq_mma_kernel<T, D>, BwdMma<D>::kTotal, kOwn,
                       kBwThreads, a, stream, " (mma)");
}

}  // namespace

void launch_backward_mma(const AttnArgs& a, cudaStream_t stream) {
  dispatch(a, [&](auto type, auto dim) {
    run_backward_mma<typename decltype(type)::type, decltype(dim)::value>(a, stream);
  });
}

}  // namespace usp::cuda::detail
