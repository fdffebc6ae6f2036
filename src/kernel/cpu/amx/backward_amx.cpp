// AMX backward on bf16 tiles, five tile products per (key tile, query tile) and one pass over
// the scores. P = exp(scale·QKᵀ − lse) is recomputed per tile, dS = P∘(dP − D) with D =
// rowsum(dout∘out). For each batch of (batch, kv head) groups:
//   pack:   K transposed (A of Kᵀ·dSᵀ); Q and dout of the group's heads with pairs of d and with
//           pairs of rows (B of K·Qᵀ, V·doutᵀ, Pᵀ·dout, dSᵀ·Q); lse in base 2 and D per row;
//   main:   the key tiles are dealt to the backward's chunks (backward_panels: the fp32 path's
//           count), tile kt to chunk kt mod chunks; one task per (group, chunk) walks its key
//           tiles in order. Per key tile it owns dk/dv and loops over the query tiles of every
//           head sharing the kv head: the transposed tiles Sᵀ = K·Qᵀ and dPᵀ = V·doutᵀ (keys are
//           the tile rows, so dv += Pᵀ·dout and dk += dSᵀ·Q take them as A operands directly),
//           and the chunk's fp32 dq partial dqᵀ += Kᵀ·dSᵀ (dSᵀ with pairs of keys interleaved);
//   reduce: one task per (group, head, query tile) sums the chunks' partials in chunk order into
//           dq.
// P and dS are rounded to bf16 for the tile products; everything else is fp32. Every output
// element is written by one task in a fixed order: the same bits for any thread count.
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

constexpr int kT = 64;  // query rows and keys per tile
constexpr float kInf = std::numeric_limits<float>::infinity();
constexpr float kLog2e = 1.4426950408889634f;

struct Shape {
  int d, dk, dp;
  std::int64_t g, nqt, nkt, sq_pad, sk_pad, chunks;
  // Offsets in bytes of one group's panels.
  std::size_t ktr, qpd, opd, qpr, opr, lse2, D, dqp, panel;
  std::size_t worker;
  explicit Shape(const BlockProblem& p) {
    d = static_cast<int>(p.d);
    dk = round_up(d, 32);
    dp = round_up(d, 16);
    g = p.group();
    nqt = (p.sq + kT - 1) / kT;
    nkt = (p.sk + kT - 1) / kT;
    sq_pad = nqt * kT;
    sk_pad = nkt * kT;
    chunks = backward_panels(p).tasks_per_group;
    const auto sk = static_cast<std::size_t>(sk_pad), rows = static_cast<std::size_t>(g * sq_pad);
    const auto udk = static_cast<std::size_t>(dk), udp = static_cast<std::size_t>(dp);
    std::size_t at = 0;
    auto take = [&at](std::size_t bytes) {
      const std::size_t r = at;
      at += Carve::round(bytes);
      return r;
    };
    ktr = take(2 * sk * udp);  // [nkt][dp][kT]
    qpd = take(2 * rows * udk);
    opd = take(2 * rows * udk);
    qpr = take(2 * rows * udp);
    opr = take(2 * rows * udp);
    lse2 = take(4 * rows);
    D = take(4 * rows);
    dqp = take(4 * static_cast<std::size_t>(chunks) * rows * udp);  // [chunks][g][nqt][dp][kT]
    panel = at;
    worker = 2 * Carve::round(2 * kT * udk) + 2 * Carve::round(4 * kT * kT) +
             2 * Carve::round(2 * kT * kT) + 2 * Carve::round(4 * kT * udp);
  }
};

// Whether the tiles fit the documented block (cpu_kernel_scratch_bytes: per worker the fp32
// path's tiles, per (batch, kv head) group its fp32 panels) for every thread count up to
// kThreadsCovered: decided from the problem's shape alone, so that whether the tiles or the fp32
// loops run (and so the result's bits) never depends on the thread count. With more threads than
// that the call may not fit and the fp32 loops run.
constexpr std::size_t kThreadsCovered = 64;

bool fits_any_threads(const BlockProblem& p, const Shape& sh) {
  const std::size_t tile_bytes =
      sizeof(float) * tile_floats(Pass::backward, p.dpad, task_rows(Pass::backward, p.sq),
                                  tile_rows(p.sk, kBwdTiles * kBc));
  const std::size_t panel_bytes = sizeof(float) * backward_panels(p).per_group;
  if (sh.panel > panel_bytes) return false;
  const std::size_t extra = sh.worker > tile_bytes ? sh.worker - tile_bytes : 0;
  return extra * kThreadsCovered <= panel_bytes - sh.panel;
}

struct Worker {
  bf16* a1;     // [kT][dk] A operand rows (K of the key tile, or Q of the query tile)
  bf16* a2;     // [kT][dk] (V of the key tile, or dout of the query tile)
  float* s;     // [kT][kT] scores, then P
  float* dp;    // [kT][kT] dP
  bf16* pb;     // [kT][kT] P in bf16
  bf16* dsb;    // [kT][kT] dS in bf16
  bf16* dsv;    // dSᵀ with pairs of keys interleaved (pairs_row layout), in dp's place once read
  float* acc1;  // [kT][dp] dk; [dp][kT] dqᵀ in the reduce
  float* acc2;  // [kT][dp] dv
};

template <class T>
const T* at(const char* base, std::size_t offset) {
  return reinterpret_cast<const T*>(base + offset);
}

// Whether all n values are finite (no row past sq or without keys, whose lse2 is +inf).
USP_AMX inline bool all_finite(const float* v, int n) {
  const __m512 inf = _mm512_set1_ps(kInf);
  __mmask16 any = 0;
  for (int j = 0; j < n; j += 16)
    any |= _mm512_cmp_ps_mask(_mm512_loadu_ps(v + j), inf, _CMP_EQ_OQ);
  return any == 0;
}

// One row of probabilities and score gradients over `n` columns (a multiple of 16): P =
// 2^(c·s − lse2) (lse2 = +inf gives 0), masked columns (s = -inf) give 0, dS = P·(dP − D). The
// statistics are per column (transposed tiles) when lse2/D point to `n` values, per row when
// scalar. Finite: the caller knows that neither -inf scores nor +inf lse2 occur.
template <bool Finite>
USP_AMX inline void probs_row_t(const float* s, const float* dp, const float* lse2, const float* D,
                                int n, float c, bf16* pb, bf16* dsb) {
  const __m512 vc = _mm512_set1_ps(c);
  for (int j = 0; j < n; j += 32) {
    const __m512 p0 =
        exp2_sel<Finite>(_mm512_fmsub_ps(vc, _mm512_load_ps(s + j), _mm512_loadu_ps(lse2 + j)));
    const __m512 p1 = exp2_sel<Finite>(
        _mm512_fmsub_ps(vc, _mm512_load_ps(s + j + 16), _mm512_loadu_ps(lse2 + j + 16)));
    const __m512 d0 =
        _mm512_mul_ps(p0, _mm512_sub_ps(_mm512_load_ps(dp + j), _mm512_loadu_ps(D + j)));
    const __m512 d1 =
        _mm512_mul_ps(p1, _mm512_sub_ps(_mm512_load_ps(dp + j + 16), _mm512_loadu_ps(D + j + 16)));
    _mm512_store_si512(pb + j, to_bf16(p0, p1));
    _mm512_store_si512(dsb + j, to_bf16(d0, d1));
  }
}

// dSᵀ [kT keys][kT queries] as the B operand of dqᵀ += Kᵀ·dSᵀ: tile (key chunk kc, query block
// nb) at dsv + kc·32·kT + nb·512 holds [16 key pairs][16 queries][2 keys].
USP_AMX void pair_keys(const bf16* dsb, bf16* dsv) {
  for (int pr = 0; pr < kT / 2; ++pr) {
    const bf16* even = dsb + 2 * pr * kT;
    bf16* dst = dsv + (pr / 16) * 32 * kT + (pr % 16) * 32;
    for (int h = 0; h < kT / 32; ++h) {
      const __m512i a = _mm512_load_si512(even + 32 * h), b = _mm512_load_si512(even + kT + 32 * h);
      _mm512_store_si512(dst + 2 * h * 512, interleave_lo(a, b));
      _mm512_store_si512(dst + (2 * h + 1) * 512, interleave_hi(a, b));
    }
  }
}

// First query tile that sees key tile kt (the last one when none does).
std::int64_t first_qtile(const BlockProblem& p, std::int64_t kt) {
  return p.first_query_tile(kt * kT, kT);
}

void store_grad_row(const float* src, float* dst, int d, float factor, bool accumulate) {
  if (accumulate) {
    for (int c = 0; c < d; ++c) dst[c] += factor * src[c];
  } else {
    for (int c = 0; c < d; ++c) dst[c] = factor * src[c];
  }
}

struct Views {
  View q, k, v, o, l, dout, dq, dk, dv;
};

// dk, dv of keys [j0, j0 + n) of group (bi, hk), and their share of dqᵀ into the chunk's
// partial dqp ([g][nqt][dp][kT]), which the chunk's first key tile writes (`first`) and the
// others add to.
USP_AMX void key_tile(const BlockProblem& p, const Shape& sh, const Worker& w, const Views& vw,
                      const char* base, float* dqp, bool first, std::int64_t bi, std::int64_t hk,
                      std::int64_t j0, bool accumulate) {
  const int n = static_cast<int>(std::min<std::int64_t>(kT, p.sk - j0));
  const int m_tiles = (n + 15) / 16;
  const int dk = sh.dk, dp = sh.dp, d = sh.d;
  const float c = p.scale * kLog2e;
  pack_rows(vw.k, bi, j0, n, hk, d, w.a1, dk, m_tiles * 16);
  pack_rows(vw.v, bi, j0, n, hk, d, w.a2, dk, m_tiles * 16);
  std::fill(w.acc1, w.acc1 + static_cast<long>(kT) * dp, 0.0f);
  std::fill(w.acc2, w.acc2 + static_cast<long>(kT) * dp, 0.0f);
  std::fill(w.pb, w.pb + kT * kT, bf16{0});
  std::fill(w.dsb, w.dsb + kT * kT, bf16{0});
  const std::int64_t qt0 = first_qtile(p, j0 / kT);
  const char* ktr = base + sh.ktr + 2 * static_cast<std::size_t>(j0) * dp;
  const bool causal = p.mode() != MaskMode::none;
  TileScope tiles;
  for (std::int64_t hi_in = 0; hi_in < sh.g; ++hi_in) {
    for (std::int64_t qt = qt0; qt < sh.nqt; ++qt) {
      const std::int64_t i0 = qt * kT;
      const std::size_t r0 = static_cast<std::size_t>(hi_in * sh.sq_pad + i0);
      const int q_tiles = static_cast<int>(std::min<std::int64_t>(kT, sh.sq_pad - i0)) / 16;
      // Sᵀ = K·Qᵀ and dPᵀ = V·doutᵀ, [keys][queries].
      memory_fence();
      tile_gemm(m_tiles, q_tiles, dk / 32, reinterpret_cast<const char*>(w.a1), 2L * dk,
                base + sh.qpd + 2 * r0 * dk, 2L * 512, 2L * 16 * dk, reinterpret_cast<char*>(w.s),
                4L * kT, false);
      tile_gemm(m_tiles, q_tiles, dk / 32, reinterpret_cast<const char*>(w.a2), 2L * dk,
                base + sh.opd + 2 * r0 * dk, 2L * 512, 2L * 16 * dk, reinterpret_cast<char*>(w.dp),
                4L * kT, false);
      memory_fence();
      const float* lse2 = at<float>(base, sh.lse2) + r0;
      const float* D = at<float>(base, sh.D) + r0;
      // No score masked (every query of the tile sees the tile's last key) and no +inf lse2.
      const bool finite =
          (!causal || p.first_query(j0 + n - 1) <= i0) && all_finite(lse2, q_tiles * 16);
      for (int j = 0; j < n; ++j) {
        float* srow = w.s + j * kT;
        if (causal) {  // queries before the first that sees key j0 + j
          const std::int64_t first = p.first_query(j0 + j) - i0;
          if (first > 0) std::fill(srow, srow + std::min<std::int64_t>(first, kT), -kInf);
        }
        if (finite) {
          probs_row_t<true>(srow, w.dp + j * kT, lse2, D, kT, c, w.pb + j * kT, w.dsb + j * kT);
        } else {
          probs_row_t<false>(srow, w.dp + j * kT, lse2, D, kT, c, w.pb + j * kT, w.dsb + j * kT);
        }
      }
      pair_keys(w.dsb, w.dsv);
      memory_fence();
      // dv += Pᵀ·dout, dk += dSᵀ·q: B tiles (query chunk k, column block nb) at
      // panel + (r0/32 + k)·32·dp + nb·512.
      tile_gemm(m_tiles, dp / 16, kT / 32, reinterpret_cast<const char*>(w.pb), 2L * kT,
                base + sh.opr + 2 * r0 * dp, 2L * 32 * dp, 2L * 512,
                reinterpret_cast<char*>(w.acc2), 4L * dp, true);
      tile_gemm(m_tiles, dp / 16, kT / 32, reinterpret_cast<const char*>(w.dsb), 2L * kT,
                base + sh.qpr + 2 * r0 * dp, 2L * 32 * dp, 2L * 512,
                reinterpret_cast<char*>(w.acc1), 4L * dp, true);
      // dqᵀ (+)= Kᵀ·dSᵀ: A = Kᵀ rows (d) at 2·kT bytes, B tile (key chunk, query block) of dsv.
      tile_gemm(dp / 16, q_tiles, kT / 32, ktr, 2L * kT, reinterpret_cast<const char*>(w.dsv),
                2L * 32 * kT, 2L * 512,
                reinterpret_cast<char*>(dqp + (hi_in * sh.nqt + qt) * dp * kT), 4L * kT, !first);
    }
  }
  memory_fence();
  for (int j = 0; j < n; ++j) {
    store_grad_row(w.acc1 + static_cast<long>(j) * dp,
                   static_cast<float*>(vw.dk.at(bi, j0 + j, hk)), d, p.scale, accumulate);
    store_grad_row(w.acc2 + static_cast<long>(j) * dp,
                   static_cast<float*>(vw.dv.at(bi, j0 + j, hk)), d, 1.0f, accumulate);
  }
}

// dq of query rows [i0, i0 + rows) of head hi (hi_in within its group): the partials of the
// chunks that reach the tile (every chunk whose first key tile is seen from it), in chunk order.
USP_AMX void reduce_dq(const BlockProblem& p, const Shape& sh, const Worker& w, const Views& vw,
                       const char* base, std::int64_t bi, std::int64_t hi, std::int64_t hi_in,
                       std::int64_t qt, bool accumulate) {
  const std::int64_t i0 = qt * kT;
  const int rows = static_cast<int>(std::min<std::int64_t>(kT, p.sq - i0));
  const int dp = sh.dp, d = sh.d;
  const std::size_t block = static_cast<std::size_t>(dp) * kT;  // one [dp][kT] partial tile
  float* acc = w.acc1;
  bool any = false;
  for (std::int64_t ch = 0; ch < sh.chunks; ++ch) {
    if (first_qtile(p, ch) > qt) continue;
    const float* part = at<float>(base, sh.dqp) +
                        ((ch * sh.g + hi_in) * sh.nqt + qt) * static_cast<std::int64_t>(block);
    for (std::size_t e = 0; e < block; e += 16) {
      const __m512 x = _mm512_load_ps(part + e);
      _mm512_store_ps(acc + e, any ? _mm512_add_ps(_mm512_load_ps(acc + e), x) : x);
    }
    any = true;
  }
  if (!any) std::fill(acc, acc + block, 0.0f);
  for (int r = 0; r < rows; ++r) {
    auto* dst = static_cast<float*>(vw.dq.at(bi, i0 + r, hi));
    for (int cc = 0; cc < d; ++cc) {
      const float v =
          p.scale * acc[static_cast<std::size_t>(cc) * kT + static_cast<std::size_t>(r)];
      dst[cc] = accumulate ? dst[cc] + v : v;
    }
  }
}

}  // namespace

bool backward(const BlockProblem& p, const Context& cx, const Tensor& q, const Tensor& k,
              const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& dout, Tensor& dq,
              Tensor& dk, Tensor& dv, bool accumulate) {
  if (p.b == 0 || p.sq == 0 || p.sk == 0 || p.h == 0) return false;
  if (dout.dtype() != DType::bf16) return false;
  const Shape sh(p);
  if (!fits_any_threads(p, sh)) return false;
  const int threads = cx.pool.size();
  const std::size_t bytes = sizeof(float) * workspace_floats(Pass::backward, p, threads);
  const std::size_t workers = static_cast<std::size_t>(threads) * sh.worker;
  if (bytes < workers + sh.panel) return false;  // more than kThreadsCovered threads only
  const std::int64_t groups = p.b * p.hkv, g = sh.g, nqt = sh.nqt, nkt = sh.nkt;
  const std::int64_t want = threads > 1 ? 8 * threads : 1;
  const std::int64_t tasks = sh.chunks;
  const std::int64_t per_batch =
      std::min({groups, (want + tasks - 1) / tasks,
                static_cast<std::int64_t>((bytes - workers) / sh.panel)});

  Buffer block(cx.scratch, bytes);
  Carve carve(block.data());
  std::vector<Worker> ws(static_cast<std::size_t>(threads));
  const auto udk = static_cast<std::size_t>(sh.dk), udp = static_cast<std::size_t>(sh.dp);
  for (Worker& w : ws) {
    w.a1 = carve.take<bf16>(kT * udk);
    w.a2 = carve.take<bf16>(kT * udk);
    w.s = carve.take<float>(kT * kT);
    w.dp = carve.take<float>(kT * kT);
    w.pb = carve.take<bf16>(kT * kT);
    w.dsb = carve.take<bf16>(kT * kT);
    w.dsv = reinterpret_cast<bf16*>(w.dp);
    w.acc1 = carve.take<float>(kT * udp);
    w.acc2 = carve.take<float>(kT * udp);
  }
  char* const panels = carve.take<char>(0);
  auto panel = [&](std::int64_t slot) {
    return panels + static_cast<std::size_t>(slot) * sh.panel;
  };
  const Views vw{View(q),    View(k),  View(v),  View(out), View(lse),
                 View(dout), View(dq), View(dk), View(dv)};

  for (std::int64_t first = 0; first < groups; first += per_batch) {
    const std::int64_t count = std::min(per_batch, groups - first);
    // Pack: tasks [0, nkt) per group are key tiles, [nkt, nkt + g·nqt) are query tiles.
    const std::int64_t pack_tasks = nkt + g * nqt;
    cx.pool.parallel_for(static_cast<std::size_t>(count * pack_tasks), [&](std::size_t task, int) {
      const auto slot = static_cast<std::int64_t>(task) / pack_tasks;
      const auto t = static_cast<std::int64_t>(task) % pack_tasks;
      const std::int64_t grp = first + slot, bi = grp / p.hkv, hk = grp % p.hkv;
      char* base = panel(slot);
      auto bf = [&](std::size_t off, std::size_t elems) {
        return reinterpret_cast<bf16*>(base + off) + elems;
      };
      if (t < nkt) {
        const std::int64_t j0 = t * kT;
        const int n = static_cast<int>(std::min<std::int64_t>(kT, p.sk - j0));
        pack_transposed(vw.k, bi, j0, n, hk, sh.d, bf(sh.ktr, static_cast<std::size_t>(j0) * udp),
                        sh.dp, kT);
        return;
      }
      const std::int64_t hi_in = (t - nkt) / nqt, qt = (t - nkt) % nqt;
      const std::int64_t hi = hk * g + hi_in, i0 = qt * kT;
      const int rows = static_cast<int>(std::min<std::int64_t>(kT, p.sq - i0));
      const auto r0 = static_cast<std::size_t>(hi_in * sh.sq_pad + i0);
      pack_pairs_d(vw.q, bi, i0, rows, hi, sh.d, bf(sh.qpd, r0 * udk), sh.dk, kT);
      pack_pairs_d(vw.dout, bi, i0, rows, hi, sh.d, bf(sh.opd, r0 * udk), sh.dk, kT);
      pack_pairs_row(vw.q, bi, i0, rows, hi, sh.d, bf(sh.qpr, r0 * udp), sh.dp, kT);
      pack_pairs_row(vw.dout, bi, i0, rows, hi, sh.d, bf(sh.opr, r0 * udp), sh.dp, kT);
      float* lse2 = reinterpret_cast<float*>(base + sh.lse2) + r0;
      float* D = reinterpret_cast<float*>(base + sh.D) + r0;
      // Rows past sq and rows that see no key get lse2 = +inf: P = 0 there.
      const auto osize = static_cast<std::int64_t>(dtype_size(vw.o.dtype));
      for (int r = 0; r < kT; ++r) {
        if (r >= rows) {
          lse2[r] = kInf;
          D[r] = 0.0f;
          continue;
        }
        const float l = *static_cast<const float*>(vw.l.at(bi, hi, i0 + r));
        lse2[r] = l == -kInf ? kInf : l * kLog2e;
        const auto* dor = static_cast<const std::uint16_t*>(vw.dout.at(bi, i0 + r, hi));
        const auto* orow = static_cast<const char*>(vw.o.at(bi, i0 + r, hi));
        double s = 0;
        for (int cc = 0; cc < sh.d; ++cc)
          s += static_cast<double>(detail::load_as_f32(orow + cc * osize, vw.o.dtype)) *
               bf16_to_f32(dor[cc]);
        D[r] = static_cast<float>(s);
      }
    });

    const std::int64_t chunks = sh.chunks;
    cx.pool.parallel_for(
        static_cast<std::size_t>(count * chunks), [&](std::size_t task, int worker) {
          const auto ch = static_cast<std::int64_t>(task) / count;
          const auto slot = static_cast<std::int64_t>(task) % count;
          const std::int64_t grp = first + slot, bi = grp / p.hkv, hk = grp % p.hkv;
          char* base = panel(slot);
          float* dqp = reinterpret_cast<float*>(base + sh.dqp) +
                       ch * g * nqt * static_cast<std::int64_t>(sh.dp) * kT;
          for (std::int64_t kt = ch; kt < nkt; kt += chunks)
            key_tile(p, sh, ws[static_cast<std::size_t>(worker)], vw, base, dqp, kt == ch, bi, hk,
                     kt * kT, accumulate);
        });

    const std::int64_t per_tile = count * g;
    cx.pool.parallel_for(
        static_cast<std::size_t>(per_tile * nqt), [&](std::size_t task, int worker) {
          const auto t = static_cast<std::int64_t>(task);
          const std::int64_t qt = nqt - 1 - t / per_tile;
          const std::int64_t slot = (t % per_tile) / g, hi_in = t % g;
          const std::int64_t grp = first + slot, bi = grp / p.hkv, hk = grp % p.hkv;
          reduce_dq(p, sh, ws[static_cast<std::size_t>(worker)], vw, panel(slot), bi,
                    hk * g + hi_in, hi_in, qt, accumulate);
        });
  }
  return true;
}

#else

bool backward(const BlockProblem&, const Context&, const Tensor&, const Tensor&, const Tensor&,
              const Tensor&, const Tensor&, const Tensor&, Tensor&, Tensor&, Tensor&, bool) {
  return false;
}

#endif

}  // namespace usp::cpu::amx
