// AMX forward. For each batch of (batch, kv head) groups: pack K (pairs of d, B operand of Q·Kᵀ)
// and V (pairs of keys, B operand of P·V) as bf16 once; then one task per (group, head of the
// group, block of kQ query rows) streams the key tiles: S = Q·Kᵀ on tiles (fp32), online softmax
// with AVX-512 (running max and fp32 sum per row, as the fp32 path computes them; P is rounded to
// bf16 for the tiles), O += P·V on tiles into an fp32 accumulator.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernel/cpu/amx/amx_attention.hpp"
#include "kernel/cpu/amx/amx_pack.hpp"
#include "kernel/cpu/amx/amx_tiles.hpp"
#include "usp/memory.hpp"
#include "util/rows.hpp"

namespace usp::cpu::amx {

#if USP_HAVE_AMX_PATH

namespace {

constexpr int kQ = 64;  // query rows per task
constexpr int kK = 64;  // keys per tile (a multiple of 32)
constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kLog2e = 1.4426950408889634f;
constexpr float kLn2 = 0.6931471805599453f;

struct Shape {
  int d, dk, dp;        // head size, rounded up to 32 (reduction of Q·Kᵀ) and to 16 (columns)
  std::int64_t sk_pad;  // keys rounded up to kK
  std::size_t k_panel;  // bf16 of one group's packed K
  std::size_t panel;    // bytes of one group's panels (K, then V)
  std::size_t worker;   // bytes of one worker's tiles
  explicit Shape(const Problem& p) {
    d = static_cast<int>(p.d);
    dk = round_up(d, 32);
    dp = round_up(d, 16);
    sk_pad = (p.sk + kK - 1) / kK * kK;
    const auto sp = static_cast<std::size_t>(sk_pad);
    k_panel = sp * static_cast<std::size_t>(dk);
    panel = Carve::round(2 * k_panel) + Carve::round(2 * sp * static_cast<std::size_t>(dp));
    worker = Carve::round(2 * kQ * dk) + Carve::round(4 * kQ * kK) + Carve::round(2 * kQ * kK) +
             Carve::round(4 * static_cast<std::size_t>(kQ) * dp) + 2 * Carve::round(4 * kQ);
  }
};

struct Worker {
  bf16* q;   // [kQ][dk]
  float* s;  // [kQ][kK]
  bf16* pb;  // [kQ][kK]
  float* o;  // [kQ][dp]
  float* m;  // [kQ] running max (base-2 units)
  float* l;  // [kQ] running sum
};

// Keys [0, end) of the tile starting at j0 visible to query i (end <= kK).
int visible(const Problem& p, std::int64_t i, std::int64_t j0) {
  std::int64_t last = p.sk - 1;
  if (p.mask == MaskMode::causal) last = std::min(last, i);
  if (p.mask == MaskMode::causal_strict) last = std::min(last, i - 1);
  return static_cast<int>(std::clamp<std::int64_t>(last - j0 + 1, 0, kK));
}

// Online softmax of the S tile rows [0, rows): P (bf16) for the tile, running max and sum, and
// the accumulator rows rescaled where the max grew.
USP_AMX void softmax_tile(const Problem& p, const Worker& w, int rows, std::int64_t i0,
                          std::int64_t j0, bool masked, int dp, float c) {
  const __m512 vc = _mm512_set1_ps(c);
  for (int r = 0; r < rows; ++r) {
    float* srow = w.s + r * kK;
    bf16* prow = w.pb + r * kK;
    if (masked) {
      const int end = visible(p, i0 + r, j0);
      std::fill(srow + end, srow + kK, kNegInf);
    }
    __m512 mx = _mm512_max_ps(_mm512_load_ps(srow), _mm512_load_ps(srow + 16));
    for (int j = 32; j < kK; j += 32)
      mx =
          _mm512_max_ps(mx, _mm512_max_ps(_mm512_load_ps(srow + j), _mm512_load_ps(srow + j + 16)));
    const float tile_max = _mm512_reduce_max_ps(mx);
    if (tile_max == kNegInf) {  // nothing visible to this row in this tile
      for (int j = 0; j < kK; j += 32) _mm512_store_si512(prow + j, _mm512_setzero_si512());
      continue;
    }
    const float m_new = std::max(w.m[r], c * tile_max);
    const __m512 vm = _mm512_set1_ps(-m_new);
    __m512 sum = _mm512_setzero_ps();
    for (int j = 0; j < kK; j += 32) {
      const __m512 e0 = exp2_ps(_mm512_fmadd_ps(vc, _mm512_load_ps(srow + j), vm));
      const __m512 e1 = exp2_ps(_mm512_fmadd_ps(vc, _mm512_load_ps(srow + j + 16), vm));
      const __m512i pb = to_bf16(e0, e1);
      _mm512_store_si512(prow + j, pb);
      sum = _mm512_add_ps(sum, _mm512_add_ps(e0, e1));
    }
    const float alpha = std::exp2(w.m[r] - m_new);  // 0 on the first visible tile
    w.l[r] = w.l[r] * alpha + _mm512_reduce_add_ps(sum);
    w.m[r] = m_new;
    if (alpha != 1.0f) {
      float* orow = w.o + static_cast<long>(r) * dp;
      const __m512 va = _mm512_set1_ps(alpha);
      for (int j = 0; j < dp; j += 16)
        _mm512_store_ps(orow + j, _mm512_mul_ps(va, _mm512_load_ps(orow + j)));
    }
  }
}

USP_AMX void query_block(const Problem& p, const Shape& sh, const Worker& w, const View& vq,
                         const View& vo, const View& vl, const bf16* kpack, const bf16* vpack,
                         std::int64_t bi, std::int64_t hi, std::int64_t i0) {
  const int rows = static_cast<int>(std::min<std::int64_t>(kQ, p.sq - i0));
  const int m_tiles = (rows + 15) / 16;
  const int dk = sh.dk, dp = sh.dp, d = sh.d;
  const float c = p.scale * kLog2e;
  pack_rows(vq, bi, i0, rows, hi, d, w.q, dk, m_tiles * 16);
  std::fill(w.m, w.m + kQ, kNegInf);
  std::fill(w.l, w.l + kQ, 0.0f);
  std::fill(w.o, w.o + static_cast<long>(kQ) * dp, 0.0f);
  std::fill(w.pb, w.pb + kQ * kK, bf16{0});  // rows past `rows` stay zero

  const std::int64_t kend = p.key_end(i0 + rows);
  TileScope tiles;
  for (std::int64_t j0 = 0; j0 < kend; j0 += kK) {
    // S = Q·Kᵀ: A = Q rows, B tile (chunk c, key block n) at kpack + (j0/16 + n)·16·dk + c·512.
    memory_fence();
    tile_gemm(m_tiles, kK / 16, dk / 32, reinterpret_cast<const char*>(w.q), 2L * dk,
              reinterpret_cast<const char*>(kpack + j0 * dk), 2L * 512, 2L * 16 * dk,
              reinterpret_cast<char*>(w.s), 4L * kK, false);
    memory_fence();
    const bool masked = j0 + kK > p.sk || p.tile_needs_mask(i0, j0 + kK);
    softmax_tile(p, w, rows, i0, j0, masked, dp, c);
    memory_fence();
    // O += P·V: A = P rows, B tile (key chunk k, column block n) at vpack + (j0/32 + k)·32·dp +
    // n·512.
    tile_gemm(m_tiles, dp / 16, kK / 32, reinterpret_cast<const char*>(w.pb), 2L * kK,
              reinterpret_cast<const char*>(vpack + j0 * dp), 2L * 32 * dp, 2L * 512,
              reinterpret_cast<char*>(w.o), 4L * dp, true);
  }
  memory_fence();

  for (int r = 0; r < rows; ++r) {
    float* o = w.o + static_cast<long>(r) * dp;
    float* lse_out = static_cast<float*>(vl.at(bi, hi, i0 + r));
    const float l = w.l[r];
    if (l == 0.0f) {  // no visible key
      std::fill(o, o + d, 0.0f);
      *lse_out = kNegInf;
    } else {
      const float inv = 1.0f / l;
      for (int j = 0; j < d; ++j) o[j] *= inv;
      *lse_out = (w.m[r] + std::log2(l)) * kLn2;
    }
    detail::store_row(o, vo.at(bi, i0 + r, hi), vo.dtype, 1, d);
  }
}

}  // namespace

bool compiled() {
  return true;
}

bool forward(const Problem& p, const Context& cx, const Tensor& q, const Tensor& k, const Tensor& v,
             Tensor& out, Tensor& lse) {
  if (p.b == 0 || p.sq == 0 || p.sk == 0 || p.h == 0) return false;
  const Shape sh(p);
  const int threads = cx.pool.size();
  // The call takes exactly the scratch the kernel documents (cpu_kernel_scratch_bytes); the bf16
  // panels are about half the fp32 ones, so as many groups as fit share a batch.
  const std::size_t bytes = sizeof(float) * workspace_floats(Pass::forward, p, threads);
  const std::size_t workers = static_cast<std::size_t>(threads) * sh.worker;
  if (bytes < workers + sh.panel) return false;
  const std::int64_t groups = p.b * p.hkv, g = p.group(), nqt = (p.sq + kQ - 1) / kQ;
  const std::int64_t want = threads > 1 ? 8 * threads : 1;
  const std::int64_t per_batch =
      std::min({groups, (want + g * nqt - 1) / (g * nqt),
                static_cast<std::int64_t>((bytes - workers) / sh.panel)});

  Buffer block(cx.scratch, bytes);
  Carve carve(block.data());
  std::vector<Worker> ws(static_cast<std::size_t>(threads));
  for (Worker& w : ws) {
    w.q = carve.take<bf16>(static_cast<std::size_t>(kQ) * sh.dk);
    w.s = carve.take<float>(static_cast<std::size_t>(kQ) * kK);
    w.pb = carve.take<bf16>(static_cast<std::size_t>(kQ) * kK);
    w.o = carve.take<float>(static_cast<std::size_t>(kQ) * sh.dp);
    w.m = carve.take<float>(kQ);
    w.l = carve.take<float>(kQ);
  }
  char* const panels = carve.take<char>(0);
  auto k_panel = [&](std::int64_t slot) {
    return reinterpret_cast<bf16*>(panels + static_cast<std::size_t>(slot) * sh.panel);
  };
  auto v_panel = [&](std::int64_t slot) {
    return reinterpret_cast<bf16*>(panels + static_cast<std::size_t>(slot) * sh.panel +
                                   Carve::round(2 * sh.k_panel));
  };

  const View vq(q), vk(k), vv(v), vo(out), vl(lse);
  const std::int64_t nkt = sh.sk_pad / kK;
  for (std::int64_t first = 0; first < groups; first += per_batch) {
    const std::int64_t count = std::min(per_batch, groups - first);
    cx.pool.parallel_for(static_cast<std::size_t>(count * nkt), [&](std::size_t task, int) {
      const auto slot = static_cast<std::int64_t>(task) / nkt,
                 kt = static_cast<std::int64_t>(task) % nkt;
      const std::int64_t grp = first + slot, bi = grp / p.hkv, hk = grp % p.hkv;
      const std::int64_t j0 = kt * kK;
      const int n = static_cast<int>(std::min<std::int64_t>(kK, p.sk - j0));
      pack_pairs_d(vk, bi, j0, n, hk, sh.d, k_panel(slot) + j0 * sh.dk, sh.dk, kK);
      pack_pairs_row(vv, bi, j0, n, hk, sh.d, v_panel(slot) + j0 * sh.dp, sh.dp, kK);
    });
    const std::int64_t per_tile = count * g;
    cx.pool.parallel_for(
        static_cast<std::size_t>(per_tile * nqt), [&](std::size_t task, int worker) {
          const auto t = static_cast<std::int64_t>(task);
          const std::int64_t qt = nqt - 1 - t / per_tile;  // the longest blocks (causal) first
          const std::int64_t slot = (t % per_tile) / g;
          const std::int64_t grp = first + slot, bi = grp / p.hkv, hk = grp % p.hkv;
          query_block(p, sh, ws[static_cast<std::size_t>(worker)], vq, vo, vl, k_panel(slot),
                      v_panel(slot), bi, hk * g + t % g, qt * kQ);
        });
  }
  return true;
}

#else

bool compiled() {
  return false;
}

bool forward(const Problem&, const Context&, const Tensor&, const Tensor&, const Tensor&, Tensor&,
             Tensor&) {
  return false;
}

#endif

}  // namespace usp::cpu::amx
