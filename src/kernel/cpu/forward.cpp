// Forward pass. For each batch of (batch, kv head) groups: pack K (transposed per tile) and V
// into fp32 panels (in the call's workspace), then one task per (group, head of the group, block
// of kFwdTiles query tiles) streams the key tiles through an online softmax (running max m and sum
// l per row, rescaling the accumulator when m grows); each key tile serves the block's query tiles
// while it is in cache. No sq×sk matrix exists at any time.
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

// TileOps::softmax_step by rows, for tile ops without the fused version.
void softmax_step_rows(const TileOps& ops, float* s, int rows, int n, int lds, float c, float* m,
                       float* l, float* acc, int nacc, int ldacc) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int r = 0; r < rows; ++r) {
    float* srow = s + static_cast<long>(r) * lds;
    const float mx = ops.row_max(srow, n);
    if (mx == kNegInf) {  // nothing visible to this row in this tile
      std::fill(srow, srow + n, 0.0f);
      continue;
    }
    const float m_new = std::max(m[r], c * mx);
    const float alpha = std::exp2(m[r] - m_new);  // 0 on the first visible tile
    l[r] = l[r] * alpha + ops.exp2_row(srow, n, c, m_new);
    if (alpha != 1.0f) ops.scale_row(acc + static_cast<long>(r) * ldacc, nacc, alpha);
    m[r] = m_new;
  }
}

}  // namespace

PanelPlan forward_panels(const BlockProblem& p) {
  const auto nkt = static_cast<std::size_t>(p.k_tiles());
  const auto d = static_cast<std::size_t>(p.d), dp = static_cast<std::size_t>(p.dpad);
  const std::int64_t blocks = (p.q_tiles() + kFwdTiles - 1) / kFwdTiles;
  return PanelPlan{nkt * kBc * (d + dp), p.group() * blocks};
}

void start_forward_rows(const BlockProblem& p, float* acc, int dp, int d, float* m, float* l,
                        int rows, int rows_pad, const View& vo, const View& vl, std::int64_t bi,
                        std::int64_t hi, std::int64_t i0) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  constexpr float kLog2e = 1.4426950408889634f;
  std::fill(m, m + rows_pad, kNegInf);
  std::fill(l, l + rows_pad, 0.0f);
  std::fill(acc, acc + static_cast<long>(rows_pad) * dp, 0.0f);
  if (!p.fold) return;
  for (int r = 0; r < rows; ++r) {
    const float lse = *static_cast<const float*>(vl.at(bi, hi, i0 + r));
    if (lse == kNegInf) continue;
    m[r] = lse * kLog2e;
    l[r] = 1.0f;
    const auto* o = static_cast<const float*>(vo.at(bi, i0 + r, hi));
    std::copy(o, o + d, acc + static_cast<long>(r) * dp);
  }
}

void finish_forward_rows(float* acc, int dp, int d, const float* m, const float* l, int rows,
                         const View& vo, const View& vl, std::int64_t bi, std::int64_t hi,
                         std::int64_t i0) {
  constexpr float kLn2 = 0.6931471805599453f;
  for (int r = 0; r < rows; ++r) {
    float* o = acc + static_cast<long>(r) * dp;
    float* lse_out = static_cast<float*>(vl.at(bi, hi, i0 + r));
    if (l[r] == 0.0f) {  // no visible key
      std::fill(o, o + d, 0.0f);
      *lse_out = -std::numeric_limits<float>::infinity();
    } else {
      const float inv = 1.0f / l[r];
      for (int j = 0; j < d; ++j) o[j] *= inv;
      *lse_out = (m[r] + std::log2(l[r])) * kLn2;
    }
    detail::store_row(o, vo.at(bi, i0 + r, hi), vo.dtype, 1, d);
  }
}

void run_forward(const BlockProblem& p, const Context& cx, const Tensor& q, const Tensor& k,
                 const Tensor& v, Tensor& out, Tensor& lse) {
  constexpr float kLog2e = 1.4426950408889634f;
  const TileOps& ops = cx.ops;
  const View vq(q), vk(k), vv(v), vo(out), vl(lse);
  const std::int64_t nkt = p.k_tiles(), g = p.group();
  const std::int64_t nqb = (p.q_tiles() + kFwdTiles - 1) / kFwdTiles;  // query blocks
  const float c = p.scale * kLog2e;                                    // scores in base-2 units
  const int d = static_cast<int>(p.d), dp = p.dpad;

  // Panels of one group: K tiles transposed [nkt][d][kBc], then V rows [nkt·kBc][dp].
  const auto kt_floats = static_cast<std::size_t>(nkt) * static_cast<std::size_t>(d) * kBc;
  const PanelPlan pp = forward_panels(p);
  const std::size_t per_group = pp.per_group;
  const auto batches = plan_batches(p.b * p.hkv, pp.tasks_per_group, per_group, cx.pool.size());
  const std::int64_t most = largest_batch(batches);
  const Workspace ws(cx.scratch, Pass::forward, cx.pool.size(), dp, task_rows(Pass::forward, p.sq),
                     tile_rows(p.sk, kBc), static_cast<std::size_t>(most) * per_group);
  float* const panels = ws.panels();
  // Per (slot, key tile): whether its V rows hold a NaN or an infinity. A masked tile's P·V then
  // runs per row over its visible keys only, so that a hidden key's non-finite value stays out of
  // the rows that do not see it (P's exact 0 times NaN or inf would be NaN).
  std::vector<unsigned char> v_bad(static_cast<std::size_t>(most * nkt));

  for (const GroupBatch& bt : batches) {
    cx.pool.parallel_for(
        static_cast<std::size_t>(bt.count * nkt), [&](std::size_t task, int worker) {
          const Tiles& w = ws.tiles(worker);
          const auto slot = static_cast<std::int64_t>(task) / nkt,
                     kt = static_cast<std::int64_t>(task) % nkt;
          const std::int64_t grp = bt.first + slot, bi = grp / p.hkv, hk = grp % p.hkv;
          const std::int64_t j0 = kt * kBc;
          const int n = static_cast<int>(std::min<std::int64_t>(kBc, p.sk - j0));
          float* base = panels + static_cast<std::size_t>(slot) * per_group;
          pack_cols(ops, vk, bi, j0, n, hk, d, base + static_cast<std::size_t>(kt) * d * kBc, kBc,
                    pad_vec(n), w.line);
          float* vrows = base + kt_floats + static_cast<std::size_t>(j0) * dp;
          pack_rows(ops, vv, bi, j0, n, hk, d, vrows, dp, pad_vec(n));
          v_bad[static_cast<std::size_t>(task)] = any_non_finite(vrows, n, d, dp);
        });

    const std::int64_t per_block = bt.count * g;  // tasks per query-block index
    cx.pool.parallel_for(
        static_cast<std::size_t>(per_block * nqb), [&](std::size_t task, int worker) {
          const Tiles& w = ws.tiles(worker);
          const auto t = static_cast<std::int64_t>(task);
          const std::int64_t qb = nqb - 1 - t / per_block;  // the longest blocks (causal) first
          const std::int64_t slot = (t % per_block) / g;
          const std::int64_t grp = bt.first + slot, bi = grp / p.hkv, hk = grp % p.hkv;
          const std::int64_t hi = hk * g + t % g;
          const float* kt_panel = panels + static_cast<std::size_t>(slot) * per_group;
          const float* v_panel = kt_panel + kt_floats;
          const std::int64_t b0 = qb * kFwdTiles * kBr;  // first row of the block
          const int rows = static_cast<int>(std::min<std::int64_t>(kFwdTiles * kBr, p.sq - b0));
          const int ntiles = (rows + kBr - 1) / kBr;

          pack_rows(ops, vq, bi, b0, rows, hi, d, w.q, dp, rows);
          start_forward_rows(p, w.acc, dp, d, w.row_m, w.row_l, rows, rows, vo, vl, bi, hi, b0);

          // Every key tile is loaded once for the block's query tiles; each row still sees the
          // key tiles in increasing order, so the sums are those of one tile per task.
          const std::int64_t kend = p.key_end(b0 + rows);
          std::int64_t computed = 0;
          for (std::int64_t j0 = p.key_begin(b0) / kBc * kBc; j0 < kend; j0 += kBc) {
            const int n = static_cast<int>(std::min<std::int64_t>(kBc, p.sk - j0));
            const int np = pad_vec(n);
            const float* ktile = kt_panel + static_cast<std::size_t>(j0 / kBc) * d * kBc;
            const float* vtile = v_panel + static_cast<std::size_t>(j0) * dp;
            for (int qt = 0; qt < ntiles; ++qt) {
              const std::int64_t i0 = b0 + static_cast<std::int64_t>(qt) * kBr;
              const int tr = std::min(kBr, rows - qt * kBr);
              if (p.tile_empty(i0, i0 + tr, j0, j0 + n)) continue;  // no visible pair
              const long r0 = static_cast<long>(qt) * kBr;
              float* acc = w.acc + r0 * dp;
              float* row_m = w.row_m + r0;
              float* row_l = w.row_l + r0;
              ops.gemm(tr, np, d, w.q + r0 * dp, dp, ktile, kBc, w.s, kBc, false);
              ++computed;
              const bool masked = n < np || p.tile_needs_mask(i0, i0 + tr, j0, j0 + n);
              if (masked) apply_mask(p, i0, tr, j0, n, np, w.s, kBc);
              if (ops.softmax_step != nullptr)
                ops.softmax_step(w.s, tr, np, kBc, c, row_m, row_l, acc, dp, dp);
              else
                softmax_step_rows(ops, w.s, tr, np, kBc, c, row_m, row_l, acc, dp, dp);
              if (masked && v_bad[static_cast<std::size_t>(slot * nkt + j0 / kBc)]) {
                for (int r = 0; r < tr; ++r) {
                  const auto [b, e] = visible_columns(p, i0 + r, j0, n);
                  if (e > b)
                    ops.gemm(1, dp, e - b, w.s + static_cast<long>(r) * kBc + b, kBc,
                             vtile + static_cast<long>(b) * dp, dp, acc + static_cast<long>(r) * dp,
                             dp, true);
                }
              } else {
                ops.gemm(tr, dp, np, w.s, kBc, vtile, dp, acc, dp, true);
              }
            }
          }

          finish_forward_rows(w.acc, dp, d, w.row_m, w.row_l, rows, vo, vl, bi, hi, b0);
          if (cx.score_tiles != nullptr)
            cx.score_tiles->fetch_add(computed, std::memory_order_relaxed);
        });
  }
}

}  // namespace usp::cpu
