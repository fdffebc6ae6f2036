// Backward pass, FlashAttention-2 style: P = exp(scale·QKᵀ − lse) is recomputed per tile and
// dS = P∘(dP − D) with D = rowsum(dout∘out). For each batch of (batch, kv head) groups:
//   pack:   K and V (transposed per tile, and K row-major), Q and dout rows of the group's heads,
//           lse in base 2 and D per row, into fp32 panels;
//   pass 1: one task per (group, key tile) owns dk/dv of that tile and loops over every query
//           tile of every head sharing the kv head;
//   pass 2: one task per (group, head, query tile) owns dq of that tile and loops over key tiles.
// Every output element is written by exactly one task in a fixed order: no atomics, no races,
// the same bits for any thread count.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernel/cpu/cpu_kernel.hpp"
#include "util/rows.hpp"

namespace usp::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kLog2e = 1.4426950408889634f;

// Offsets (in floats) of one group's panels.
struct Layout {
  std::int64_t nqt, nkt, g, sq_pad;
  std::size_t kt, vt, k, q, dout, lse2, D, total;
  Layout(const Problem& p) {
    nqt = p.q_tiles();
    nkt = p.k_tiles();
    g = p.group();
    sq_pad = nqt * kBr;
    const auto d = static_cast<std::size_t>(p.d), dp = static_cast<std::size_t>(p.dpad);
    const auto key_tiles = static_cast<std::size_t>(nkt);
    const auto rows = static_cast<std::size_t>(g * sq_pad);
    kt = 0;                         // [nkt][d][kBc]
    vt = kt + key_tiles * d * kBc;  // [nkt][d][kBc]
    k = vt + key_tiles * d * kBc;   // [nkt·kBc][dp]
    q = k + key_tiles * kBc * dp;   // [g][sq_pad][dp]
    dout = q + rows * dp;           // [g][sq_pad][dp]
    lse2 = dout + rows * dp;        // [g][sq_pad]
    D = lse2 + rows;                // [g][sq_pad]
    total = (D + rows + 15) / 16 * 16;
  }
};

// Scores of `rows` query rows (q, dout: packed rows, lse2/D: their stats) against the key tile
// (kt, vt: transposed, n valid of np columns): P lands in w.s, dS in w.dp.
void probs_and_grads(const Problem& p, const TileOps& ops, const Tiles& w, const float* q,
                     const float* dout, const float* lse2, const float* D, std::int64_t i0,
                     int rows, const float* kt, const float* vt, std::int64_t j0, int n, int np) {
  const int d = static_cast<int>(p.d), dp = p.dpad;
  const float c = p.scale * kLog2e;
  ops.gemm(rows, np, d, q, dp, kt, kBc, w.s, kBc, false);
  if (n < np || p.tile_needs_mask(i0, j0 + n)) apply_mask(p, i0, rows, j0, n, np, w.s, kBc);
  ops.gemm(rows, np, d, dout, dp, vt, kBc, w.dp, kBc, false);
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

void store_grad_row(const float* src, float* dst, int d, float factor, bool accumulate) {
  if (accumulate) {
    for (int c = 0; c < d; ++c) dst[c] += factor * src[c];
  } else {
    for (int c = 0; c < d; ++c) dst[c] = factor * src[c];
  }
}

}  // namespace

PanelPlan backward_panels(const Problem& p) {
  const Layout L(p);
  return PanelPlan{L.total, std::max(L.nkt, L.g * L.nqt)};
}

void run_backward(const Problem& p, const Context& cx, const Tensor& q, const Tensor& k,
                  const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& dout,
                  Tensor& dq, Tensor& dk, Tensor& dv, bool accumulate) {
  const TileOps& ops = cx.ops;
  const View vq(q), vk(k), vv(v), vo(out), vl(lse), vdo(dout), vdq(dq), vdk(dk), vdv(dv);
  const int d = static_cast<int>(p.d), dp = p.dpad;
  const Layout L(p);
  const std::int64_t nqt = L.nqt, nkt = L.nkt, g = L.g;
  const PanelPlan pp = backward_panels(p);
  const auto batches = plan_batches(p.b * p.hkv, pp.tasks_per_group, L.total, cx.pool.size());
  const std::int64_t most = largest_batch(batches);
  const Workspace ws(cx.scratch, Pass::backward, cx.pool.size(), dp, tile_rows(p.sq, kBr),
                     tile_rows(p.sk, kBc), static_cast<std::size_t>(most) * L.total);
  float* const panels = ws.panels();
  auto panel = [&](std::int64_t slot) { return panels + static_cast<std::size_t>(slot) * L.total; };
  auto qrow = [&](std::int64_t hi_in, std::int64_t i) {
    return static_cast<std::size_t>(hi_in * L.sq_pad + i);
  };

  for (const GroupBatch& bt : batches) {
    // Pack: tasks [0, nkt) per group are key tiles, [nkt, nkt + g·nqt) are query tiles.
    const std::int64_t pack_tasks = nkt + g * nqt;
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
            pack_rows(ops, vk, bi, j0, n, hk, d, base + L.k + static_cast<std::size_t>(j0) * dp, dp,
                      np);
            return;
          }
          const std::int64_t hi_in = (t - nkt) / nqt, qt = (t - nkt) % nqt;
          const std::int64_t hi = hk * g + hi_in, i0 = qt * kBr;
          const int rows = static_cast<int>(std::min<std::int64_t>(kBr, p.sq - i0));
          float* qp = base + L.q + qrow(hi_in, i0) * dp;
          float* dop = base + L.dout + qrow(hi_in, i0) * dp;
          pack_rows(ops, vq, bi, i0, rows, hi, d, qp, dp, rows);
          pack_rows(ops, vdo, bi, i0, rows, hi, d, dop, dp, rows);
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

    // Pass 1: dk and dv, one task per (group, key tile); the first key tiles see the most
    // queries under causal masks and go first.
    cx.pool.parallel_for(
        static_cast<std::size_t>(bt.count * nkt), [&](std::size_t task, int worker) {
          const Tiles& w = ws.tiles(worker);
          const auto kt = static_cast<std::int64_t>(task) / bt.count;
          const auto slot = static_cast<std::int64_t>(task) % bt.count;
          const std::int64_t grp = bt.first + slot, bi = grp / p.hkv, hk = grp % p.hkv;
          const float* base = panel(slot);
          const std::int64_t j0 = kt * kBc;
          const int n = static_cast<int>(std::min<std::int64_t>(kBc, p.sk - j0));
          const int np = pad_vec(n);
          const float* ktile = base + L.kt + static_cast<std::size_t>(kt) * d * kBc;
          const float* vtile = base + L.vt + static_cast<std::size_t>(kt) * d * kBc;
          std::fill(w.dk, w.dk + static_cast<long>(n) * dp, 0.0f);
          std::fill(w.dv, w.dv + static_cast<long>(n) * dp, 0.0f);
          const std::int64_t qt0 = std::min(p.sq - 1, p.first_query(j0)) / kBr;
          for (std::int64_t hi_in = 0; hi_in < g; ++hi_in) {
            for (std::int64_t qt = qt0; qt < nqt; ++qt) {
              const std::int64_t i0 = qt * kBr;
              const int rows = static_cast<int>(std::min<std::int64_t>(kBr, p.sq - i0));
              const std::size_t r0 = qrow(hi_in, i0);
              const float* qp = base + L.q + r0 * dp;
              const float* dop = base + L.dout + r0 * dp;
              probs_and_grads(p, ops, w, qp, dop, base + L.lse2 + r0, base + L.D + r0, i0, rows,
                              ktile, vtile, j0, n, np);
              ops.gemm_tn(n, dp, rows, w.s, kBc, dop, dp, w.dv, dp, true);  // dv += Pᵀ·dout
              ops.gemm_tn(n, dp, rows, w.dp, kBc, qp, dp, w.dk, dp, true);  // dk += dSᵀ·q
            }
          }
          for (int j = 0; j < n; ++j) {
            store_grad_row(w.dk + static_cast<long>(j) * dp,
                           static_cast<float*>(vdk.at(bi, j0 + j, hk)), d, p.scale, accumulate);
            store_grad_row(w.dv + static_cast<long>(j) * dp,
                           static_cast<float*>(vdv.at(bi, j0 + j, hk)), d, 1.0f, accumulate);
          }
        });

    // Pass 2: dq, one task per (group, head, query tile), the longest tiles first.
    const std::int64_t per_tile = bt.count * g;
    cx.pool.parallel_for(
        static_cast<std::size_t>(per_tile * nqt), [&](std::size_t task, int worker) {
          const Tiles& w = ws.tiles(worker);
          const auto t = static_cast<std::int64_t>(task);
          const std::int64_t qt = nqt - 1 - t / per_tile;
          const std::int64_t slot = (t % per_tile) / g, hi_in = t % g;
          const std::int64_t grp = bt.first + slot, bi = grp / p.hkv, hk = grp % p.hkv;
          const std::int64_t hi = hk * g + hi_in;
          const float* base = panel(slot);
          const std::int64_t i0 = qt * kBr;
          const int rows = static_cast<int>(std::min<std::int64_t>(kBr, p.sq - i0));
          const std::size_t r0 = qrow(hi_in, i0);
          std::fill(w.acc, w.acc + static_cast<long>(rows) * dp, 0.0f);
          const std::int64_t kend = p.key_end(i0 + rows);
          for (std::int64_t j0 = 0; j0 < kend; j0 += kBc) {
            const int n = static_cast<int>(std::min<std::int64_t>(kBc, p.sk - j0));
            const int np = pad_vec(n);
            const std::size_t tile = static_cast<std::size_t>(j0 / kBc) * d * kBc;
            probs_and_grads(p, ops, w, base + L.q + r0 * dp, base + L.dout + r0 * dp,
                            base + L.lse2 + r0, base + L.D + r0, i0, rows, base + L.kt + tile,
                            base + L.vt + tile, j0, n, np);
            ops.gemm(rows, dp, np, w.dp, kBc, base + L.k + static_cast<std::size_t>(j0) * dp, dp,
                     w.acc, dp, true);
          }
          for (int r = 0; r < rows; ++r)
            store_grad_row(w.acc + static_cast<long>(r) * dp,
                           static_cast<float*>(vdq.at(bi, i0 + r, hi)), d, p.scale, accumulate);
        });
  }
}

}  // namespace usp::cpu
