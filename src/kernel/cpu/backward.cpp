// Backward pass, FlashAttention-2 style: P = exp(scale·QKᵀ − lse) is recomputed per tile,
// dS = P∘(dP − D) with D = rowsum(dout∘out). Race-free and deterministic without atomics:
//   pass 1: one task per (batch, kv head, key tile) owns dk/dv of that tile and loops over all
//           query tiles of the heads sharing the kv head;
//   pass 2: one task per (batch, head, query tile) owns dq of that tile and loops over key tiles.
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernel/cpu/cpu_kernel.hpp"
#include "util/rows.hpp"

namespace usp::cpu {

namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();
constexpr float kLog2e = 1.4426950408889634f;

// Per-row constants of the backward: lse in base 2 and D.
struct RowStats {
  std::vector<float> lse2, D;  // [b, h, sq]
  std::size_t at(const Problem& p, std::int64_t bi, std::int64_t hi, std::int64_t i) const {
    return static_cast<std::size_t>((bi * p.h + hi) * p.sq + i);
  }
};

// S = Q·Kᵀ, masked, then P (in w.s) and dS (in w.dp) for `rows` query rows from i0 against keys
// [j0, j0 + n) packed in w.kt / w.vt.
void probs_and_grads(const Problem& p, const TileOps& ops, Scratch& w, const RowStats& st,
                     std::int64_t bi, std::int64_t hi, std::int64_t i0, int rows, std::int64_t j0,
                     int n, int np) {
  const int d = static_cast<int>(p.d), dp = p.dpad;
  const float c = p.scale * kLog2e;
  ops.gemm(rows, np, d, w.q, dp, w.kt, kBc, w.s, kBc, false);
  if (n < np || p.tile_needs_mask(i0, j0 + n)) apply_mask(p, i0, rows, j0, n, np, w.s, kBc);
  ops.gemm(rows, np, d, w.dout, dp, w.vt, kBc, w.dp, kBc, false);
  for (int r = 0; r < rows; ++r) {
    float* srow = w.s + static_cast<long>(r) * kBc;
    const std::size_t idx = st.at(p, bi, hi, i0 + r);
    const float l2 = st.lse2[idx];
    if (l2 == kNegInf) {  // the row sees no key at all: no gradient
      std::fill(srow, srow + np, 0.0f);
    } else {
      ops.exp2_row(srow, np, c, l2);
    }
    ops.ds_row(srow, w.dp + static_cast<long>(r) * kBc, np, st.D[idx]);
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

void run_backward(const Problem& p, const TileOps& ops, detail::ThreadPool& pool,
                  std::vector<std::unique_ptr<Scratch>>& scratch, const Tensor& q, const Tensor& k,
                  const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& dout,
                  Tensor& dq, Tensor& dk, Tensor& dv, bool accumulate) {
  const View vq(q), vk(k), vv(v), vo(out), vl(lse), vdo(dout), vdq(dq), vdk(dk), vdv(dv);
  const int d = static_cast<int>(p.d), dp = p.dpad;
  const std::int64_t nqt = p.q_tiles(), nkt = p.k_tiles();

  // Pass 0: lse in base 2 and D = rowsum(dout∘out), per (b, h, i).
  RowStats st;
  st.lse2.resize(static_cast<std::size_t>(p.b * p.h * p.sq));
  st.D.resize(st.lse2.size());
  pool.parallel_for(static_cast<std::size_t>(p.b * p.h), [&](std::size_t task, int worker) {
    Scratch& w = *scratch[static_cast<std::size_t>(worker)];
    const auto bi = static_cast<std::int64_t>(task) / p.h,
               hi = static_cast<std::int64_t>(task) % p.h;
    for (std::int64_t i = 0; i < p.sq; ++i) {
      const std::size_t idx = st.at(p, bi, hi, i);
      const float l = *static_cast<const float*>(vl.at(bi, hi, i));
      st.lse2[idx] = l == kNegInf ? kNegInf : l * kLog2e;
      ops.load_row(vo.at(bi, i, hi), vo.dtype, w.line, d);
      ops.load_row(vdo.at(bi, i, hi), vdo.dtype, w.acc, d);
      double s = 0;
      for (int c = 0; c < d; ++c) s += static_cast<double>(w.line[c]) * w.acc[c];
      st.D[idx] = static_cast<float>(s);
    }
  });

  // Pass 1: dk and dv, one task per (b, kv head, key tile).
  const std::int64_t bkv = p.b * p.hkv;
  pool.parallel_for(static_cast<std::size_t>(bkv * nkt), [&](std::size_t task, int worker) {
    Scratch& w = *scratch[static_cast<std::size_t>(worker)];
    const auto t = static_cast<std::int64_t>(task);
    const std::int64_t kt = t / bkv;  // under causal masks the first key tiles see the most queries
    const std::int64_t bi = (t % bkv) / p.hkv, hk = t % p.hkv;
    const std::int64_t j0 = kt * kBc;
    const int n = static_cast<int>(std::min<std::int64_t>(kBc, p.sk - j0));
    const int np = pad_vec(n);
    pack_cols(ops, vk, bi, j0, n, hk, d, w.kt, kBc, np, w.line);
    pack_cols(ops, vv, bi, j0, n, hk, d, w.vt, kBc, np, w.line);
    std::fill(w.dk, w.dk + static_cast<long>(n) * dp, 0.0f);
    std::fill(w.dv, w.dv + static_cast<long>(n) * dp, 0.0f);
    const std::int64_t qt0 = std::min(p.sq, p.first_query(j0)) / kBr;
    for (std::int64_t hi = hk * p.group(); hi < (hk + 1) * p.group(); ++hi) {
      for (std::int64_t qt = qt0; qt < nqt; ++qt) {
        const std::int64_t i0 = qt * kBr;
        const int rows = static_cast<int>(std::min<std::int64_t>(kBr, p.sq - i0));
        pack_rows(ops, vq, bi, i0, rows, hi, d, w.q, dp, rows);
        pack_rows(ops, vdo, bi, i0, rows, hi, d, w.dout, dp, rows);
        probs_and_grads(p, ops, w, st, bi, hi, i0, rows, j0, n, np);
        transpose(w.s, kBc, n, rows, w.t0, kBr);   // Pᵀ
        transpose(w.dp, kBc, n, rows, w.t1, kBr);  // dSᵀ
        ops.gemm(n, dp, rows, w.t0, kBr, w.dout, dp, w.dv, dp, true);
        ops.gemm(n, dp, rows, w.t1, kBr, w.q, dp, w.dk, dp, true);
      }
    }
    for (int j = 0; j < n; ++j) {
      store_grad_row(w.dk + static_cast<long>(j) * dp, static_cast<float*>(vdk.at(bi, j0 + j, hk)),
                     d, p.scale, accumulate);
      store_grad_row(w.dv + static_cast<long>(j) * dp, static_cast<float*>(vdv.at(bi, j0 + j, hk)),
                     d, 1.0f, accumulate);
    }
  });

  // Pass 2: dq, one task per (b, head, query tile).
  const std::int64_t bh = p.b * p.h;
  pool.parallel_for(static_cast<std::size_t>(bh * nqt), [&](std::size_t task, int worker) {
    Scratch& w = *scratch[static_cast<std::size_t>(worker)];
    const auto t = static_cast<std::int64_t>(task);
    const std::int64_t qt = nqt - 1 - t / bh;
    const std::int64_t bi = (t % bh) / p.h, hi = t % p.h, hk = hi / p.group();
    const std::int64_t i0 = qt * kBr;
    const int rows = static_cast<int>(std::min<std::int64_t>(kBr, p.sq - i0));
    pack_rows(ops, vq, bi, i0, rows, hi, d, w.q, dp, rows);
    pack_rows(ops, vdo, bi, i0, rows, hi, d, w.dout, dp, rows);
    std::fill(w.acc, w.acc + static_cast<long>(rows) * dp, 0.0f);
    const std::int64_t kend = p.key_end(i0 + rows);
    for (std::int64_t j0 = 0; j0 < kend; j0 += kBc) {
      const int n = static_cast<int>(std::min<std::int64_t>(kBc, p.sk - j0));
      const int np = pad_vec(n);
      pack_cols(ops, vk, bi, j0, n, hk, d, w.kt, kBc, np, w.line);
      pack_cols(ops, vv, bi, j0, n, hk, d, w.vt, kBc, np, w.line);
      pack_rows(ops, vk, bi, j0, n, hk, d, w.kv, dp, np);
      probs_and_grads(p, ops, w, st, bi, hi, i0, rows, j0, n, np);
      ops.gemm(rows, dp, np, w.dp, kBc, w.kv, dp, w.acc, dp, true);
    }
    for (int r = 0; r < rows; ++r)
      store_grad_row(w.acc + static_cast<long>(r) * dp, static_cast<float*>(vdq.at(bi, i0 + r, hi)),
                     d, p.scale, accumulate);
  });
}

}  // namespace usp::cpu
