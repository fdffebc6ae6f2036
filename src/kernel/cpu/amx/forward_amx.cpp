// AMX forward. For each batch of (batch, kv head) groups: pack K (pairs of d, B operand of Q·Kᵀ)
// and V (pairs of keys, B operand of P·V) as bf16 once; then one task per (group, head of the
// group, block of query rows) streams the key tiles: S = Q·Kᵀ on tiles (fp32), online softmax
// with AVX-512 (running max and fp32 sum per row, as the fp32 path computes them; P is rounded to
// bf16 for the tiles), O += P·V on tiles into an fp32 accumulator.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernel/cpu/amx/amx_attention.hpp"
#include "kernel/cpu/amx/amx_pack.hpp"
#include "kernel/cpu/amx/amx_tiles.hpp"
#include "kernel/cpu/group_batch.hpp"
#include "kernel/cpu/workspace.hpp"
#include "usp/memory.hpp"
#include "util/rows.hpp"

namespace usp::cpu::amx {

#if USP_HAVE_AMX_PATH

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kLog2e = 1.4426950408889634f;

// Tile sizes, chosen per call from the problem's shape alone (never from the thread count, so the
// results are the same bits for any thread count): the largest whose scratch fits the documented
// block (cpu_kernel_scratch_bytes: per worker the fp32 path's tiles, per (batch, kv head) group its
// fp32 panels) for up to kThreadsCovered threads. The bf16 panels are about half the fp32 ones;
// what they leave pays for larger worker tiles. With more threads than that the call may not fit
// and the fp32 path runs.
constexpr std::size_t kThreadsCovered = 64;

struct Shape {
  int bq, bk;           // query rows per task, keys per tile (a multiple of 32)
  int rows;             // query rows of the worker tiles: min(bq, sq rounded up to 16)
  int strip;            // query rows per S tile: min(32, rows)
  int d, dk, dp;        // head size, rounded up to 32 (reduction of Q·Kᵀ) and to 16 (columns)
  std::int64_t sk_pad;  // keys rounded up to bk
  std::size_t k_panel;  // bf16 of one group's packed K
  std::size_t panel;    // bytes of one group's panels (K, then V)
  std::size_t worker;   // bytes of one worker's tiles
  Shape(const BlockProblem& p, int q_rows, int keys) : bq(q_rows), bk(keys) {
    d = static_cast<int>(p.d);
    dk = round_up(d, 32);
    dp = round_up(d, 16);
    rows = static_cast<int>(std::min<std::int64_t>(
        bq, round_up(static_cast<int>(std::min<std::int64_t>(p.sq, bq)), 16)));
    strip = std::min(32, rows);
    sk_pad = (p.sk + bk - 1) / bk * bk;
    const auto sp = static_cast<std::size_t>(sk_pad), r = static_cast<std::size_t>(rows);
    k_panel = sp * static_cast<std::size_t>(dk);
    panel = Carve::round(2 * k_panel) + Carve::round(2 * sp * static_cast<std::size_t>(dp));
    worker = Carve::round(2 * r * static_cast<std::size_t>(dk)) +
             Carve::round(6 * static_cast<std::size_t>(strip) * static_cast<std::size_t>(bk)) +
             Carve::round(4 * r * static_cast<std::size_t>(dp)) + 3 * Carve::round(4 * r);
  }
};

// The first of the tile sizes (largest first) that fits; bq = 0 when none does.
Shape choose_shape(const BlockProblem& p) {
  const std::size_t tile_bytes =
      sizeof(float) *
      tile_floats(Pass::forward, p.dpad, tile_rows(p.sq, kBr), tile_rows(p.sk, kBc));
  const std::size_t panel_bytes = sizeof(float) * forward_panels(p).per_group;
  for (const auto& [bq, bk] : {std::pair{128, 128}, {64, 128}, {64, 64}, {32, 64}, {16, 32}}) {
    Shape sh(p, bq, bk);
    if (sh.panel > panel_bytes) continue;
    const std::size_t extra = sh.worker > tile_bytes ? sh.worker - tile_bytes : 0;
    if (extra * kThreadsCovered <= panel_bytes - sh.panel) return sh;
  }
  Shape none(p, 16, 32);
  none.bq = 0;
  return none;
}

struct Worker {
  bf16* q;       // [rows][dk]
  float* s;      // [strip][bk]
  bf16* pb;      // [strip][bk]
  float* o;      // [rows][dp]
  float* m;      // [rows] running max (base-2 units)
  float* l;      // [rows] running sum
  float* alpha;  // [rows] rescaling of the accumulator rows
};

// Keys [0, end) of the tile starting at j0 visible to query i (end <= bk).
int visible(const BlockProblem& p, std::int64_t i, std::int64_t j0, int bk) {
  std::int64_t last = p.sk - 1;
  if (p.mode() == MaskMode::causal) last = std::min(last, i);
  if (p.mode() == MaskMode::causal_strict) last = std::min(last, i - 1);
  return static_cast<int>(std::clamp<std::int64_t>(last - j0 + 1, 0, bk));
}

// P = 2^(c·s − m) of one row of S, rounded to bf16 into prow; returns the 16 partial sums of the
// unrounded P. Finite: the row holds no -inf score.
template <bool Finite>
USP_AMX inline __m512 probs_row(const float* srow, bf16* prow, int bk, __m512 vc, __m512 vm) {
  __m512 sum = _mm512_setzero_ps();
  for (int j = 0; j < bk; j += 32) {
    const __m512 e0 = exp2_sel<Finite>(_mm512_fmadd_ps(vc, _mm512_load_ps(srow + j), vm));
    const __m512 e1 = exp2_sel<Finite>(_mm512_fmadd_ps(vc, _mm512_load_ps(srow + j + 16), vm));
    _mm512_store_si512(prow + j, to_bf16(e0, e1));
    sum = _mm512_add_ps(sum, _mm512_add_ps(e0, e1));
  }
  return sum;
}

// How far P may grow above 1 before a row's running maximum is raised: 2^16 (see
// softmax_strip_stale).
constexpr float kStaleLimit = 65536.0f;

// The strip's online softmax when no score is masked and every row already has a running maximum
// m: P = 2^(c·s − m) against m as it stands, without a pass for the tile's maxima (m only shifts
// P and l alike; lse = m + log l either way). A row where some P would exceed kStaleLimit (a lane
// of its partial sums does; each lane adds bk/16 values) takes its tile maximum, raises m,
// rescales its accumulator row and is redone, as softmax_strip does for every row.
USP_AMX void softmax_strip_stale(const Shape& sh, const Worker& w, int s0, int st, float c) {
  const int bk = sh.bk, dp = sh.dp;
  const __m512 vc = _mm512_set1_ps(c), limit = _mm512_set1_ps(kStaleLimit);
  float* alpha = w.alpha + s0;
  float* m = w.m + s0;
  float* l = w.l + s0;
  for (int r = 0; r < st; ++r) {
    float* srow = w.s + r * bk;
    bf16* prow = w.pb + r * bk;
    __m512 sum = probs_row<true>(srow, prow, bk, vc, _mm512_set1_ps(-m[r]));
    alpha[r] = 1.0f;
    if (_mm512_cmp_ps_mask(sum, limit, _CMP_GT_OQ) != 0) {
      const float m_new = std::max(m[r], c * row_max(srow, bk));
      alpha[r] = std::exp2(m[r] - m_new);
      m[r] = m_new;
      sum = probs_row<true>(srow, prow, bk, vc, _mm512_set1_ps(-m_new));
      scale_row(w.o + static_cast<long>(s0 + r) * dp, dp, alpha[r]);
    }
    _mm512_store_ps(srow, sum);  // the row of S is read: park its sum there
  }
  for (int r = 0; r < st; r += 16)
    _mm512_store_ps(l + r, _mm512_fmadd_ps(_mm512_load_ps(l + r), _mm512_load_ps(alpha + r),
                                           reduce_rows16(w.s + r * bk, bk, AddOp{})));
}

// Online softmax of one strip of S (rows [s0, s0 + st) of the block, `valid` of them real): P
// (bf16) for the strip, running max and sum, and the accumulator rows rescaled where the max grew.
// Row maxima and sums are reduced 16 rows at a time (reduce_rows16), from per-row vectors parked
// in the strip's P buffer (before P is written) and in the S rows (once read). Once every row of
// the strip has a running maximum and the tile has no masked score, softmax_strip_stale does it
// in one pass instead.
USP_AMX void softmax_strip(const BlockProblem& p, const Shape& sh, const Worker& w, int s0, int st,
                           int valid, std::int64_t i0, std::int64_t j0, bool masked, float c) {
  const int bk = sh.bk, dp = sh.dp;
  const __m512 vc = _mm512_set1_ps(c);
  const __m512 neg_inf = _mm512_set1_ps(kNegInf);
  float* alpha = w.alpha + s0;
  float* m = w.m + s0;
  float* l = w.l + s0;
  if (!masked && valid == st) {
    bool all_started = true;
    for (int r = 0; r < st; ++r) all_started = all_started && m[r] != kNegInf;
    if (all_started) return softmax_strip_stale(sh, w, s0, st, c);
  }
  float* parked = reinterpret_cast<float*>(w.pb);  // st × 16 floats fit: bk >= 32
  for (int r = 0; r < st; ++r) {
    float* srow = w.s + r * bk;
    __m512 mx = neg_inf;
    if (r < valid) {
      if (masked) {
        const int end = visible(p, i0 + s0 + r, j0, bk);
        std::fill(srow + end, srow + bk, kNegInf);
      }
      for (int j = 0; j < bk; j += 32)
        mx = _mm512_max_ps(mx,
                           _mm512_max_ps(_mm512_load_ps(srow + j), _mm512_load_ps(srow + j + 16)));
    }
    _mm512_store_ps(parked + r * 16, mx);
  }
  // m_new = max(m, c·tile max); alpha = 2^(m − m_new), 1 while both are -inf.
  for (int r = 0; r < st; r += 16) {
    const __m512 m_old = _mm512_load_ps(m + r);
    const __m512 m_new =
        _mm512_max_ps(m_old, _mm512_mul_ps(vc, reduce_rows16(parked + r * 16, 16, MaxOp{})));
    // 1 exactly where the maximum stays (both -inf included): those rows skip the rescale.
    const __mmask16 same = _mm512_cmp_ps_mask(m_new, m_old, _CMP_EQ_OQ);
    const __m512 a =
        _mm512_mask_blend_ps(same, exp2_ps(_mm512_sub_ps(m_old, m_new)), _mm512_set1_ps(1.0f));
    _mm512_store_ps(m + r, m_new);
    _mm512_store_ps(alpha + r, a);
  }
  for (int r = 0; r < st; ++r) {
    float* srow = w.s + r * bk;
    bf16* prow = w.pb + r * bk;
    __m512 sum = _mm512_setzero_ps();
    if (r >= valid || m[r] == kNegInf) {  // no key visible to this row so far
      for (int j = 0; j < bk; j += 32) _mm512_store_si512(prow + j, _mm512_setzero_si512());
    } else {
      // Only masked tiles hold -inf scores; elsewhere x is finite.
      const __m512 vm = _mm512_set1_ps(-m[r]);
      sum = masked ? probs_row<false>(srow, prow, bk, vc, vm)
                   : probs_row<true>(srow, prow, bk, vc, vm);
      if (alpha[r] != 1.0f) scale_row(w.o + static_cast<long>(s0 + r) * dp, dp, alpha[r]);
    }
    _mm512_store_ps(srow, sum);  // the row of S is read: park its sum there
  }
  for (int r = 0; r < st; r += 16)
    _mm512_store_ps(l + r, _mm512_fmadd_ps(_mm512_load_ps(l + r), _mm512_load_ps(alpha + r),
                                           reduce_rows16(w.s + r * bk, bk, AddOp{})));
}

USP_AMX void query_block(const BlockProblem& p, const Shape& sh, const Worker& w, const View& vq,
                         const View& vo, const View& vl, const bf16* kpack, const bf16* vpack,
                         std::int64_t bi, std::int64_t hi, std::int64_t i0) {
  const int rows = static_cast<int>(std::min<std::int64_t>(sh.bq, p.sq - i0));
  const int rows_pad = round_up(rows, 16);
  const int dk = sh.dk, dp = sh.dp, d = sh.d, bk = sh.bk;
  const float c = p.scale * kLog2e;
  pack_rows(vq, bi, i0, rows, hi, d, w.q, dk, rows_pad);
  start_forward_rows(p, w.o, dp, d, w.m, w.l, rows, rows_pad, vo, vl, bi, hi, i0);

  const std::int64_t kend = p.key_end(i0 + rows);
  TileScope tiles;
  for (std::int64_t j0 = 0; j0 < kend; j0 += bk) {
    const bool masked = j0 + bk > p.sk || p.tile_needs_mask(i0, i0 + rows, j0, j0 + bk);
    for (int s0 = 0; s0 < rows_pad; s0 += sh.strip) {
      const int st = std::min(sh.strip, rows_pad - s0);
      // S = Q·Kᵀ for the strip: A = Q rows, B tile (chunk c, key block n) at kpack + (j0/16 +
      // n)·16·dk + c·512.
      memory_fence();
      if (st == 32 && dk == 64)
        tile_gemm_32x64(bk / 16, reinterpret_cast<const char*>(w.q + s0 * dk), 2L * dk,
                        reinterpret_cast<const char*>(kpack + j0 * dk), 2L * 512, 2L * 16 * dk,
                        reinterpret_cast<char*>(w.s), 4L * bk);
      else
        tile_gemm(st / 16, bk / 16, dk / 32, reinterpret_cast<const char*>(w.q + s0 * dk), 2L * dk,
                  reinterpret_cast<const char*>(kpack + j0 * dk), 2L * 512, 2L * 16 * dk,
                  reinterpret_cast<char*>(w.s), 4L * bk, false);
      memory_fence();
      softmax_strip(p, sh, w, s0, st, std::clamp(rows - s0, 0, st), i0, j0, masked, c);
      memory_fence();
      // O += P·V: A = P rows, B tile (key chunk k, column block n) at vpack + (j0/32 + k)·32·dp
      // + n·512.
      tile_gemm(st / 16, dp / 16, bk / 32, reinterpret_cast<const char*>(w.pb), 2L * bk,
                reinterpret_cast<const char*>(vpack + j0 * dp), 2L * 32 * dp, 2L * 512,
                reinterpret_cast<char*>(w.o + s0 * dp), 4L * dp, true);
    }
  }
  memory_fence();

  finish_forward_rows(w.o, dp, d, w.m, w.l, rows, vo, vl, bi, hi, i0);
}

}  // namespace

bool compiled() {
  return true;
}

bool forward(const BlockProblem& p, const Context& cx, const Tensor& q, const Tensor& k,
             const Tensor& v, Tensor& out, Tensor& lse) {
  if (p.b == 0 || p.sq == 0 || p.sk == 0 || p.h == 0) return false;
  const Shape sh = choose_shape(p);
  if (sh.bq == 0) return false;
  const int threads = cx.pool.size();
  // The call takes exactly the scratch the kernel documents (cpu_kernel_scratch_bytes); the bf16
  // panels are about half the fp32 ones, so as many groups as fit share a batch.
  const std::size_t bytes = sizeof(float) * workspace_floats(Pass::forward, p, threads);
  const std::size_t workers = static_cast<std::size_t>(threads) * sh.worker;
  if (bytes < workers + sh.panel) return false;  // not expected: choose_shape fits both parts
  const std::int64_t groups = p.b * p.hkv, g = p.group(), nqt = (p.sq + sh.bq - 1) / sh.bq;
  const std::int64_t want = threads > 1 ? 8 * threads : 1;
  const std::int64_t per_batch =
      std::min({groups, (want + g * nqt - 1) / (g * nqt),
                static_cast<std::int64_t>((bytes - workers) / sh.panel)});

  Buffer block(cx.scratch, bytes);
  Carve carve(block.data());
  std::vector<Worker> ws(static_cast<std::size_t>(threads));
  const auto rows = static_cast<std::size_t>(sh.rows);
  for (Worker& w : ws) {
    w.q = carve.take<bf16>(rows * static_cast<std::size_t>(sh.dk));
    w.s = carve.take<float>(static_cast<std::size_t>(sh.strip) * static_cast<std::size_t>(sh.bk));
    w.pb = carve.take<bf16>(static_cast<std::size_t>(sh.strip) * static_cast<std::size_t>(sh.bk));
    w.o = carve.take<float>(rows * static_cast<std::size_t>(sh.dp));
    w.m = carve.take<float>(rows);
    w.l = carve.take<float>(rows);
    w.alpha = carve.take<float>(rows);
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
  const std::int64_t nkt = sh.sk_pad / sh.bk;
  for (std::int64_t first = 0; first < groups; first += per_batch) {
    const std::int64_t count = std::min(per_batch, groups - first);
    cx.pool.parallel_for(static_cast<std::size_t>(count * nkt), [&](std::size_t task, int) {
      const auto slot = static_cast<std::int64_t>(task) / nkt,
                 kt = static_cast<std::int64_t>(task) % nkt;
      const std::int64_t grp = first + slot, bi = grp / p.hkv, hk = grp % p.hkv;
      const std::int64_t j0 = kt * sh.bk;
      const int n = static_cast<int>(std::min<std::int64_t>(sh.bk, p.sk - j0));
      pack_pairs_d(vk, bi, j0, n, hk, sh.d, k_panel(slot) + j0 * sh.dk, sh.dk, sh.bk);
      pack_pairs_row(vv, bi, j0, n, hk, sh.d, v_panel(slot) + j0 * sh.dp, sh.dp, sh.bk);
    });
    const std::int64_t per_tile = count * g;
    cx.pool.parallel_for(
        static_cast<std::size_t>(per_tile * nqt), [&](std::size_t task, int worker) {
          const auto t = static_cast<std::int64_t>(task);
          const std::int64_t qt = nqt - 1 - t / per_tile;  // the longest blocks (causal) first
          const std::int64_t slot = (t % per_tile) / g;
          const std::int64_t grp = first + slot, bi = grp / p.hkv, hk = grp % p.hkv;
          query_block(p, sh, ws[static_cast<std::size_t>(worker)], vq, vo, vl, k_panel(slot),
                      v_panel(slot), bi, hk * g + t % g, qt * sh.bq);
        });
  }
  return true;
}

#else

bool compiled() {
  return false;
}

bool forward(const BlockProblem&, const Context&, const Tensor&, const Tensor&, const Tensor&,
             Tensor&, Tensor&) {
  return false;
}

#endif

}  // namespace usp::cpu::amx
