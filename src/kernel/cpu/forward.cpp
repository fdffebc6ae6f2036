// Forward pass: one task per (batch, head, query tile); keys stream through in tiles with an
// online softmax (running max m and sum l per row, rescaling the accumulator when m grows).
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernel/cpu/cpu_kernel.hpp"
#include "util/rows.hpp"

namespace usp::cpu {

void run_forward(const Problem& p, const TileOps& ops, detail::ThreadPool& pool,
                 std::vector<std::unique_ptr<Scratch>>& scratch, const Tensor& q, const Tensor& k,
                 const Tensor& v, Tensor& out, Tensor& lse) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  constexpr float kLog2e = 1.4426950408889634f;
  constexpr float kLn2 = 0.6931471805599453f;
  const View vq(q), vk(k), vv(v), vo(out), vl(lse);
  const std::int64_t nqt = p.q_tiles();
  const std::int64_t bh = p.b * p.h;
  const float c = p.scale * kLog2e;  // scores in base-2 units
  const int d = static_cast<int>(p.d), dp = p.dpad;

  pool.parallel_for(static_cast<std::size_t>(bh * nqt), [&](std::size_t task, int worker) {
    Scratch& w = *scratch[static_cast<std::size_t>(worker)];
    const auto t = static_cast<std::int64_t>(task);
    const std::int64_t qt = nqt - 1 - t / bh;  // the longest tiles (causal) first
    const std::int64_t bi = (t % bh) / p.h, hi = t % p.h, hk = hi / p.group();
    const std::int64_t i0 = qt * kBr;
    const int rows = static_cast<int>(std::min<std::int64_t>(kBr, p.sq - i0));

    pack_rows(ops, vq, bi, i0, rows, hi, d, w.q, dp, rows);
    std::fill(w.row_m, w.row_m + rows, kNegInf);
    std::fill(w.row_l, w.row_l + rows, 0.0f);
    std::fill(w.acc, w.acc + static_cast<long>(rows) * dp, 0.0f);

    const std::int64_t kend = p.key_end(i0 + rows);
    for (std::int64_t j0 = 0; j0 < kend; j0 += kBc) {
      const int n = static_cast<int>(std::min<std::int64_t>(kBc, p.sk - j0));
      const int np = pad_vec(n);
      pack_cols(ops, vk, bi, j0, n, hk, d, w.kt, kBc, np, w.line);
      pack_rows(ops, vv, bi, j0, n, hk, d, w.kv, dp, np);
      ops.gemm(rows, np, d, w.q, dp, w.kt, kBc, w.s, kBc, false);
      if (n < np || p.tile_needs_mask(i0, j0 + n)) apply_mask(p, i0, rows, j0, n, np, w.s, kBc);
      for (int r = 0; r < rows; ++r) {
        float* srow = w.s + static_cast<long>(r) * kBc;
        const float mx = ops.row_max(srow, np);
        if (mx == kNegInf) {  // nothing visible to this row in this tile
          std::fill(srow, srow + np, 0.0f);
          continue;
        }
        const float m_new = std::max(w.row_m[r], c * mx);
        const float alpha = std::exp2(w.row_m[r] - m_new);  // 0 on the first visible tile
        w.row_l[r] = w.row_l[r] * alpha + ops.exp2_row(srow, np, c, m_new);
        if (alpha != 1.0f) ops.scale_row(w.acc + static_cast<long>(r) * dp, dp, alpha);
        w.row_m[r] = m_new;
      }
      ops.gemm(rows, dp, np, w.s, kBc, w.kv, dp, w.acc, dp, true);
    }

    for (int r = 0; r < rows; ++r) {
      float* o = w.acc + static_cast<long>(r) * dp;
      float* lse_out = static_cast<float*>(vl.at(bi, hi, i0 + r));
      const float l = w.row_l[r];
      if (l == 0.0f) {  // no visible key
        std::fill(o, o + d, 0.0f);
        *lse_out = kNegInf;
      } else {
        ops.scale_row(o, dp, 1.0f / l);
        *lse_out = (w.row_m[r] + std::log2(l)) * kLn2;
      }
      detail::store_row(o, vo.at(bi, i0 + r, hi), vo.dtype, 1, d);
    }
  });
}

}  // namespace usp::cpu
