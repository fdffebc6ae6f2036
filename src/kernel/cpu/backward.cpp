// Backward pass, FlashAttention-2 style: P = exp(scale·QKᵀ − lse) is recomputed per tile and
// dS = P∘(dP − D) with D = rowsum(dout∘out). For each batch of (batch, kv head) groups:
//   pack:   K and V (transposed per tile, and K row-major), Q and dout rows of the group's heads,
//           lse in base 2 and D per row, into fp32 panels;
//   main:   one task per (group, chunk of key tiles). It walks its key tiles kBwdTiles at a time,
//           keeping their dk/dv accumulators, and for every query tile that sees them computes
//           S, dP (two GEMMs), dv += Pᵀ·dout, dk += dSᵀ·q and dq_chunk += dS·k (three more): five
//           tile GEMMs per tile pair. dk/dv of a key tile are written by the task that owns it;
//           dq goes to the chunk's own fp32 partial sum;
//   reduce: one task per (group, head, query tile) adds the chunks' partial sums in chunk order.
// The chunks are fixed by the problem, not by the thread count, and every sum runs in a fixed
// order: no atomics, no races, the same bits for any thread count.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernel/cpu/group_batch.hpp"
#include "kernel/cpu/pack.hpp"
#include "kernel/cpu/passes.hpp"
#include "kernel/cpu/workspace.hpp"
#include "util/rows.hpp"

namespace usp::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kLog2e = 1.4426950408889634f;

// Offsets (in floats) of one group's panels, and the chunks of key tiles.
struct Layout {
  std::int64_t nqt, nkt, g, sq_pad, chunks;
  std::size_t kt, vt, k, q, dout, lse2, D, dq, dq_chunk, total;
  Layout(const BlockProblem& p) {
    nqt = p.q_tiles();
    nkt = p.k_tiles();
    g = p.group();
    sq_pad = nqt * kBr;
    chunks = std::clamp<std::int64_t>(nkt / kBwdChunkTiles,
                                      std::min<std::int64_t>(nkt, kBwdMinChunks), kBwdChunks);
    const auto d = static_cast<std::size_t>(p.d), dp = static_cast<std::size_t>(p.dpad);
    const auto key_tiles = static_cast<std::size_t>(nkt);
    const auto rows = static_cast<std::size_t>(g * sq_pad);
    kt = 0;                          // [nkt][d][kBc]
    vt = kt + key_tiles * d * kBc;   // [nkt][d][kBc]
    k = vt + key_tiles * d * kBc;    // [nkt·kBc][dp]
    q = k + key_tiles * kBc * dp;    // [g][sq_pad][dp]
    dout = q + rows * dp;            // [g][sq_pad][dp]
    lse2 = dout + rows * dp;         // [g][sq_pad]
    D = lse2 + rows;                 // [g][sq_pad]
    dq = (D + rows + 15) / 16 * 16;  // [chunks][g][sq_pad][dp]
    dq_chunk = rows * dp;
    total = dq + static_cast<std::size_t>(chunks) * dq_chunk;
  }
};

// First query tile that sees key tile kt.
std::int64_t first_qtile(const BlockProblem& p, std::int64_t kt) {
  return p.first_query_tile(kt * kBc, kBr);
}

// Key tiles [start[c], start[c + 1]) form chunk c; the chunks get about equal numbers of visible
// (query tile, key tile) pairs, so causal chunks near the end hold more key tiles.
std::vector<std::int64_t> chunk_starts(const BlockProblem& p, const Layout& L) {
  std::vector<std::int64_t> work(static_cast<std::size_t>(L.nkt) + 1, 0);
  for (std::int64_t kt = 0; kt < L.nkt; ++kt)
    work[static_cast<std::size_t>(kt) + 1] =
        work[static_cast<std::size_t>(kt)] + std::max<std::int64_t>(1, L.nqt - first_qtile(p, kt));
  const std::int64_t total = work.back();
  std::vector<std::int64_t> start(static_cast<std::size_t>(L.chunks) + 1, L.nkt);
  start[0] = 0;
  std::int64_t kt = 0;
  for (std::int64_t c = 1; c < L.chunks; ++c) {
    // The first key tile whose preceding work reaches c/chunks of the total, leaving at least
    // one key tile to each chunk (chunks <= nkt).
    while (kt < L.nkt && work[static_cast<std::size_t>(kt)] * L.chunks < c * total) ++kt;
    kt = std::clamp(kt, start[static_cast<std::size_t>(c) - 1] + 1, L.nkt - (L.chunks - c));
    start[static_cast<std::size_t>(c)] = kt;
  }
  return start;
}

// Scores of `rows` query rows (q, dout: packed rows, lse2/D: their stats) against the key tile
// (kt, vt: transposed, n valid of np columns): P lands in w.s, dS in w.dp. Returns whether the
// tile is masked (P and dS are then exactly 0 at its hidden pairs).
bool probs_and_grads(const BlockProblem& p, const TileOps& ops, const Tiles& w, const float* q,
                     const float* dout, const float* lse2, const float* D, std::int64_t i0,
                     int rows, const float* kt, const float* vt, std::int64_t j0, int n, int np) {
  const int d = static_cast<int>(p.d), dp = p.dpad;
  const float c = p.scale * kLog2e;
  ops.gemm(rows, np, d, q, dp, kt, kBc, w.s, kBc, false);
  const bool masked = n < np || p.tile_needs_mask(i0, i0 + rows, j0, j0 + n);
  if (masked) apply_mask(p, i0, rows, j0, n, np, w.s, kBc);
  ops.gemm(rows, np, d, dout, dp, vt, kBc, w.dp, kBc, false);
  if (ops.probs_grads != nullptr) {
    ops.probs_grads(w.s, w.dp, rows, np, kBc, c, lse2, D);
  } else {
    for (int r = 0; r < rows; ++r) {
      float* srow = w.s + static_cast<long>(r) * kBc;
      if (lse2[r] == kNegInf) {  // the row sees no key at all: no gradient
        std::fill(srow, srow + np, 0.0f);
      } else {
        ops.exp2_row(srow, np, c, lse2[r]);
      }
      ops.ds_row(srow, w.dp + static_cast<long>(r) * kBc, np, D[r]);
    }
  }
  // A hidden key's P is 2^-inf = 0 and its dS 0·(dP − D) = 0 unless lse, D or dP is non-finite.
  if (masked) zero_masked(p, i0, rows, j0, n, np, w.s, w.dp, kBc);
  return masked;
}

// The rows [first, second) of the query tile at i0 (`rows` rows) that see key j: contiguous, as
// both ends of the rows' key ranges grow with the row.
std::pair<int, int> rows_seeing(const BlockProblem& p, std::int64_t i0, int rows, std::int64_t j) {
  int a = 0;
  while (a < rows && p.key_last(i0 + a) <= j) ++a;
  int b = a;
  while (b < rows && p.key_first(i0 + b) <= j) ++b;
  return {a, b};
}

void store_grad_row(const float* src, float* dst, int d, float factor, bool accumulate) {
  if (accumulate) {
    for (int c = 0; c < d; ++c) dst[c] += factor * src[c];
  } else {
    for (int c = 0; c < d; ++c) dst[c] = factor * src[c];
  }
}

}  // namespace

PanelPlan backward_panels(const BlockProblem& p) {
  const Layout L(p);
  return PanelPlan{L.total, L.chunks};
}

void run_backward(const BlockProblem& p, const Context& cx, const Tensor& q, const Tensor& k,
                  const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& dout,
                  Tensor& dq, Tensor& dk, Tensor& dv, bool accumulate) {
  const TileOps& ops = cx.ops;
  const View vq(q), vk(k), vv(v), vo(out), vl(lse), vdo(dout), vdq(dq), vdk(dk), vdv(dv);
  const int d = static_cast<int>(p.d), dp = p.dpad;
  const Layout L(p);
  const std::int64_t nqt = L.nqt, nkt = L.nkt, g = L.g, chunks = L.chunks;
  const std::vector<std::int64_t> start = chunk_starts(p, L);
  const PanelPlan pp = backward_panels(p);
  const auto batches = plan_batches(p.b * p.hkv, pp.tasks_per_group, L.total, cx.pool.size());
  const std::int64_t most = largest_batch(batches);
  const Workspace ws(cx.scratch, Pass::backward, cx.pool.size(), dp,
                     task_rows(Pass::backward, p.sq), tile_rows(p.sk, kBwdTiles * kBc),
                     static_cast<std::size_t>(most) * L.total);
  float* const panels = ws.panels();
  auto panel = [&](std::int64_t slot) { return panels + static_cast<std::size_t>(slot) * L.total; };
  auto qrow = [&](std::int64_t hi_in, std::int64_t i) {
    return static_cast<std::size_t>(hi_in * L.sq_pad + i);
  };

  // Per pack task (below): whether its packed rows hold a NaN or an infinity (a key tile's K, a
  // query tile's q or dout). In a masked tile the products over such rows then run over the
  // visible pairs only, as hidden pairs are no terms of the sums (0 times NaN or inf is NaN).
  const std::int64_t pack_tasks = nkt + g * nqt;
  std::vector<unsigned char> bad(static_cast<std::size_t>(most * pack_tasks));

  for (const GroupBatch& bt : batches) {
    // Pack: tasks [0, nkt) per group are key tiles, [nkt, nkt + g·nqt) are query tiles.
    cx.pool.parallel_for(
        static_cast<std::size_t>(bt.count * pack_tasks), [&](std::size_t task, int worker) {
          const Tiles& w = ws.tiles(worker);
          const auto slot = static_cast<std::int64_t>(task) / pack_tasks;
          const auto t = static_cast<std::int64_t>(task) % pack_tasks;
          const std::int64_t grp = bt.first + slot, bi = grp / p.hkv, hk = grp % p.hkv;
          float* base = panel(slot);
          if (t < nkt) {
            const std::int64_t j0 = t * kBc;
            const int n = static_cast<int>(std::min<std::int64_t>(kBc, p.sk - j0));
            const int np = pad_vec(n);
            const std::size_t tile = static_cast<std::size_t>(t) * d * kBc;
            pack_cols(ops, vk, bi, j0, n, hk, d, base + L.kt + tile, kBc, np, w.line);
            pack_cols(ops, vv, bi, j0, n, hk, d, base + L.vt + tile, kBc, np, w.line);
            float* krows = base + L.k + static_cast<std::size_t>(j0) * dp;
            pack_rows(ops, vk, bi, j0, n, hk, d, krows, dp, np);
            bad[task] = any_non_finite(krows, n, d, dp);
            return;
          }
          const std::int64_t hi_in = (t - nkt) / nqt, qt = (t - nkt) % nqt;
          const std::int64_t hi = hk * g + hi_in, i0 = qt * kBr;
          const int rows = static_cast<int>(std::min<std::int64_t>(kBr, p.sq - i0));
          float* qp = base + L.q + qrow(hi_in, i0) * dp;
          float* dop = base + L.dout + qrow(hi_in, i0) * dp;
          pack_rows(ops, vq, bi, i0, rows, hi, d, qp, dp, rows);
          pack_rows(ops, vdo, bi, i0, rows, hi, d, dop, dp, rows);
          bad[task] = any_non_finite(qp, rows, d, dp) || any_non_finite(dop, rows, d, dp);
          for (int r = 0; r < rows; ++r) {
            const float l = *static_cast<const float*>(vl.at(bi, hi, i0 + r));
            base[L.lse2 + qrow(hi_in, i0 + r)] = l == kNegInf ? kNegInf : l * kLog2e;
            ops.load_row(vo.at(bi, i0 + r, hi), vo.dtype, w.line, d);
            const float* dor = dop + static_cast<long>(r) * dp;
            double s = 0;
            for (int c = 0; c < d; ++c) s += static_cast<double>(w.line[c]) * dor[c];
            base[L.D + qrow(hi_in, i0 + r)] = static_cast<float>(s);
          }
        });

    // Main: one task per (chunk, group); the chunks hold about equal work.
    cx.pool.parallel_for(
        static_cast<std::size_t>(bt.count * chunks), [&](std::size_t task, int worker) {
          const Tiles& w = ws.tiles(worker);
          const auto c = static_cast<std::int64_t>(task) / bt.count;
          const auto slot = static_cast<std::int64_t>(task) % bt.count;
          const std::int64_t grp = bt.first + slot, bi = grp / p.hkv, hk = grp % p.hkv;
          const float* base = panel(slot);
          float* const dq_part = panel(slot) + L.dq + static_cast<std::size_t>(c) * L.dq_chunk;
          const std::int64_t kt_a = start[static_cast<std::size_t>(c)],
                             kt_b = start[static_cast<std::size_t>(c) + 1];
          if (kt_a >= kt_b) return;
          // The rows this chunk adds to start at its first key tile's first query tile. The first
          // product a row tile gets writes its partial, later ones add to it; a row tile that
          // gets none (a key range hidden from it, e.g. causal_strict's last key) is zeroed.
          const std::int64_t qt_first = first_qtile(p, kt_a);
          std::vector<char> written(static_cast<std::size_t>(g * nqt), 0);

          for (std::int64_t kb = kt_a; kb < kt_b; kb += kBwdTiles) {
            const int nk = static_cast<int>(std::min<std::int64_t>(kBwdTiles, kt_b - kb));
            const std::int64_t jb = kb * kBc;  // first key of the block
            const int keys = static_cast<int>(std::min<std::int64_t>(nk * kBc, p.sk - jb));
            std::fill(w.dk, w.dk + static_cast<long>(keys) * dp, 0.0f);
            std::fill(w.dv, w.dv + static_cast<long>(keys) * dp, 0.0f);
            const std::int64_t qt0 = first_qtile(p, kb);
            const std::int64_t qend = p.end_query(jb + keys);  // no later row sees these keys
            for (std::int64_t hi_in = 0; hi_in < g; ++hi_in) {
              for (std::int64_t qt = qt0; qt < nqt && qt * kBr < qend; ++qt) {
                const std::int64_t i0 = qt * kBr;
                const int rows = static_cast<int>(std::min<std::int64_t>(kBr, p.sq - i0));
                const std::int64_t kend = p.key_end(i0 + rows);
                const std::size_t r0 = qrow(hi_in, i0);
                const float* qp = base + L.q + r0 * dp;
                const float* dop = base + L.dout + r0 * dp;
                float* dqp = dq_part + r0 * dp;
                for (int jt = 0; jt < nk; ++jt) {
                  const std::int64_t kt = kb + jt, j0 = kt * kBc;
                  if (j0 >= kend) break;  // this and later key tiles are hidden from the rows
                  const int n = static_cast<int>(std::min<std::int64_t>(kBc, p.sk - j0));
                  if (p.tile_empty(i0, i0 + rows, j0, j0 + n)) continue;  // no visible pair
                  const int np = pad_vec(n);
                  const std::size_t tile = static_cast<std::size_t>(kt) * d * kBc;
                  const bool masked =
                      probs_and_grads(p, ops, w, qp, dop, base + L.lse2 + r0, base + L.D + r0, i0,
                                      rows, base + L.kt + tile, base + L.vt + tile, j0, n, np);
                  float* dvt = w.dv + static_cast<long>(jt) * kBc * dp;
                  float* dkt = w.dk + static_cast<long>(jt) * kBc * dp;
                  const float* kp = base + L.k + static_cast<std::size_t>(j0) * dp;
                  char& seen = written[static_cast<std::size_t>(hi_in * nqt + qt)];
                  const std::size_t task0 = static_cast<std::size_t>(slot * pack_tasks);
                  if (masked && bad[task0 + static_cast<std::size_t>(nkt + hi_in * nqt + qt)]) {
                    for (int j = 0; j < n; ++j) {  // each key over the rows that see it
                      const auto [a, b] = rows_seeing(p, i0, rows, j0 + j);
                      if (b == a) continue;
                      const long off = static_cast<long>(a) * kBc + j;
                      const long rd = static_cast<long>(a) * dp, cd = static_cast<long>(j) * dp;
                      ops.gemm_tn(1, dp, b - a, w.s + off, kBc, dop + rd, dp, dvt + cd, dp, true);
                      ops.gemm_tn(1, dp, b - a, w.dp + off, kBc, qp + rd, dp, dkt + cd, dp, true);
                    }
                  } else {
                    ops.gemm_tn(n, dp, rows, w.s, kBc, dop, dp, dvt, dp, true);  // dv += Pᵀ·dout
                    ops.gemm_tn(n, dp, rows, w.dp, kBc, qp, dp, dkt, dp, true);  // dk += dSᵀ·q
                  }
                  if (masked && bad[task0 + static_cast<std::size_t>(kt)]) {
                    for (int r = 0; r < rows; ++r) {  // each row over the keys it sees
                      const auto [a, b] = visible_columns(p, i0 + r, j0, n);
                      float* dqr = dqp + static_cast<long>(r) * dp;
                      if (b > a)
                        ops.gemm(1, dp, b - a, w.dp + static_cast<long>(r) * kBc + a, kBc,
                                 kp + static_cast<long>(a) * dp, dp, dqr, dp, seen != 0);
                      else if (seen == 0)
                        std::fill(dqr, dqr + dp, 0.0f);
                    }
                  } else {
                    ops.gemm(rows, dp, np, w.dp, kBc, kp, dp, dqp, dp, seen != 0);  // dq (+)= dS·k
                  }
                  seen = 1;
                }
              }
            }
            for (int j = 0; j < keys; ++j) {
              store_grad_row(w.dk + static_cast<long>(j) * dp,
                             static_cast<float*>(vdk.at(bi, jb + j, hk)), d, p.scale, accumulate);
              store_grad_row(w.dv + static_cast<long>(j) * dp,
                             static_cast<float*>(vdv.at(bi, jb + j, hk)), d, 1.0f, accumulate);
            }
          }
          for (std::int64_t hi_in = 0; hi_in < g; ++hi_in)
            for (std::int64_t qt = qt_first; qt < nqt; ++qt)
              if (written[static_cast<std::size_t>(hi_in * nqt + qt)] == 0)
                std::fill(dq_part + qrow(hi_in, qt * kBr) * dp,
                          dq_part + qrow(hi_in, std::min((qt + 1) * kBr, L.sq_pad)) * dp, 0.0f);
        });

    // Reduce: dq of each (group, head, query tile) is the sum of the chunks that reach it.
    const std::int64_t per_group = g * nqt;
    cx.pool.parallel_for(static_cast<std::size_t>(bt.count * per_group), [&](std::size_t task,
                                                                             int worker) {
      const Tiles& w = ws.tiles(worker);
      const auto slot = static_cast<std::int64_t>(task) / per_group;
      const auto t = static_cast<std::int64_t>(task) % per_group;
      const std::int64_t hi_in = t / nqt, qt = t % nqt;
      const std::int64_t grp = bt.first + slot, bi = grp / p.hkv, hk = grp % p.hkv;
      const std::int64_t hi = hk * g + hi_in, i0 = qt * kBr;
      const int rows = static_cast<int>(std::min<std::int64_t>(kBr, p.sq - i0));
      const float* dq_parts = panel(slot) + L.dq + qrow(hi_in, i0) * dp;
      for (int r = 0; r < rows; ++r) {
        std::fill(w.line, w.line + dp, 0.0f);
        for (std::int64_t c = 0; c < chunks; ++c) {
          const std::int64_t kt_a = start[static_cast<std::size_t>(c)];
          if (kt_a >= start[static_cast<std::size_t>(c) + 1] || first_qtile(p, kt_a) > qt)
            continue;  // the chunk adds nothing to these rows
          const float* src = dq_parts + static_cast<std::size_t>(c) * L.dq_chunk +
                             static_cast<std::size_t>(r) * dp;
          for (int x = 0; x < d; ++x) w.line[x] += src[x];
        }
        store_grad_row(w.line, static_cast<float*>(vdq.at(bi, i0 + r, hi)), d, p.scale, accumulate);
      }
    });
  }
}

}  // namespace usp::cpu
