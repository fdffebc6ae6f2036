#include <algorithm>
#include <cstring>
#include <limits>

#include "kernel/cpu/cpu_kernel.hpp"
#include "usp/error.hpp"

namespace usp::cpu {

int tile_rows(std::int64_t rows, int most) {
  return static_cast<int>(
      std::min<std::int64_t>(most, pad_vec(static_cast<int>(std::min<std::int64_t>(rows, most)))));
}

int task_rows(Pass pass, std::int64_t sq) {
  return tile_rows(sq, pass == Pass::forward ? kFwdTiles * kBr : kBr);
}

std::size_t tile_floats(Pass pass, int dpad, int R, int K) {
  const auto dp = static_cast<std::size_t>(dpad), r = static_cast<std::size_t>(R),
             k = static_cast<std::size_t>(K), keys = static_cast<std::size_t>(kBc);
  if (pass == Pass::forward) return 2 * r * dp + std::min(r, keys) * keys + 2 * r + dp;
  return 2 * k * dp + 2 * r * keys + dp;
}

Workspace::Workspace(Allocator& alloc, Pass pass, int workers, int dpad, int R, int K,
                     std::size_t panel_floats)
    : block_(alloc,
             (static_cast<std::size_t>(workers) * tile_floats(pass, dpad, R, K) + panel_floats) *
                 sizeof(float)) {
  // Every tile is a multiple of kVec floats (64 bytes) and the block is 64-byte aligned, so
  // every tile and the panels start on a 64-byte boundary.
  float* p = static_cast<float*>(block_.data());
  auto take = [&p](std::size_t n) {
    float* r = p;
    p += n;
    return r;
  };
  const auto dp = static_cast<std::size_t>(dpad), rows = static_cast<std::size_t>(R),
             keys = static_cast<std::size_t>(K);
  tiles_.resize(static_cast<std::size_t>(workers));
  for (Tiles& t : tiles_) {
    if (pass == Pass::forward) {
      t.q = take(rows * dp);
      t.acc = take(rows * dp);
      t.s = take(std::min<std::size_t>(rows, kBr) * kBc);
      t.row_m = take(rows);
      t.row_l = take(rows);
    } else {
      t.dk = take(keys * dp);
      t.dv = take(keys * dp);
      t.s = take(rows * kBc);
      t.dp = take(rows * kBc);
    }
    t.line = take(dp);
  }
  panels_ = p;
}

std::vector<GroupBatch> plan_batches(std::int64_t groups, std::int64_t tasks_per_group,
                                     std::size_t floats_per_group, int threads) {
  // Enough tasks to balance the pool (causal tiles differ in cost), panels within a budget. One
  // thread has nothing to balance: one group at a time keeps its panels smallest.
  constexpr std::size_t kPanelBudgetFloats = std::size_t{64} << 20 >> 2;  // 64 MiB
  const std::int64_t want_tasks = threads > 1 ? 8 * static_cast<std::int64_t>(threads) : 1;
  std::vector<GroupBatch> out;
  std::int64_t g = 0;
  while (g < groups) {
    GroupBatch b{g, 1};
    while (g + b.count < groups && b.count * tasks_per_group < want_tasks &&
           static_cast<std::size_t>(b.count + 1) * floats_per_group <= kPanelBudgetFloats)
      ++b.count;
    out.push_back(b);
    g += b.count;
  }
  return out;
}

std::int64_t largest_batch(const std::vector<GroupBatch>& batches) {
  std::int64_t most = 0;
  for (const GroupBatch& b : batches) most = std::max(most, b.count);
  return most;
}

std::size_t workspace_floats(Pass pass, const Problem& p, int threads) {
  const PanelPlan pp = pass == Pass::forward ? forward_panels(p) : backward_panels(p);
  const auto most =
      largest_batch(plan_batches(p.b * p.hkv, pp.tasks_per_group, pp.per_group, threads));
  return static_cast<std::size_t>(threads) *
             tile_floats(pass, p.dpad, task_rows(pass, p.sq),
                         tile_rows(p.sk, pass == Pass::forward ? kBc : kBwdTiles * kBc)) +
         static_cast<std::size_t>(most) * pp.per_group;
}

View::View(const Tensor& t)
    : base(static_cast<char*>(t.data())),
      s0(t.stride(0) * static_cast<std::int64_t>(dtype_size(t.dtype()))),
      s1(t.dim() > 1 ? t.stride(1) * static_cast<std::int64_t>(dtype_size(t.dtype())) : 0),
      s2(t.dim() > 2 ? t.stride(2) * static_cast<std::int64_t>(dtype_size(t.dtype())) : 0),
      dtype(t.dtype()) {}

std::int64_t Problem::key_end(std::int64_t i1) const {
  switch (mask) {
    case MaskMode::none:
      return sk;
    case MaskMode::causal:
      return std::min(sk, i1);
    case MaskMode::causal_strict:
      return std::min(sk, i1 - 1);
  }
  return sk;
}

std::int64_t Problem::first_query(std::int64_t j0) const {
  switch (mask) {
    case MaskMode::none:
      return 0;
    case MaskMode::causal:
      return j0;
    case MaskMode::causal_strict:
      return j0 + 1;
  }
  return 0;
}

std::int64_t Problem::first_query_tile(std::int64_t j0, int tile_rows) const {
  return std::min(sq - 1, first_query(j0)) / tile_rows;
}

bool Problem::tile_needs_mask(std::int64_t i0, std::int64_t j1) const {
  switch (mask) {
    case MaskMode::none:
      return false;
    case MaskMode::causal:
      return j1 - 1 > i0;
    case MaskMode::causal_strict:
      return j1 - 1 >= i0;
  }
  return true;
}

Problem make_problem(const Tensor& q, const Tensor& k, MaskMode mask, float scale) {
  Problem p{};
  p.b = q.size(0);
  p.sq = q.size(1);
  p.h = q.size(2);
  p.d = q.size(3);
  p.sk = k.size(1);
  p.hkv = k.size(2);
  p.dpad = pad_vec(static_cast<int>(p.d));
  p.mask = mask;
  p.scale = scale;
  return p;
}

void pack_rows(const TileOps& ops, const View& t, std::int64_t b, std::int64_t r0, int n,
               std::int64_t head, int d, float* dst, int ld, int n_pad) {
  for (int r = 0; r < n; ++r) {
    float* row = dst + static_cast<long>(r) * ld;
    ops.load_row(t.at(b, r0 + r, head), t.dtype, row, d);
    std::fill(row + d, row + ld, 0.0f);
  }
  for (int r = n; r < n_pad; ++r)
    std::fill(dst + static_cast<long>(r) * ld, dst + static_cast<long>(r + 1) * ld, 0.0f);
}

void pack_cols(const TileOps& ops, const View& t, std::int64_t b, std::int64_t r0, int n,
               std::int64_t head, int d, float* dst, int ld, int n_pad, float* line) {
  for (int r = 0; r < n; ++r) {
    ops.load_row(t.at(b, r0 + r, head), t.dtype, line, d);
    for (int c = 0; c < d; ++c) dst[static_cast<long>(c) * ld + r] = line[c];
  }
  if (n < n_pad)
    for (int c = 0; c < d; ++c)
      std::fill(dst + static_cast<long>(c) * ld + n, dst + static_cast<long>(c) * ld + n_pad, 0.0f);
}

void apply_mask(const Problem& p, std::int64_t i0, int rows, std::int64_t j0, int n_valid,
                int n_pad, float* s, int ld) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int r = 0; r < rows; ++r) {
    float* row = s + static_cast<long>(r) * ld;
    int end = n_valid;  // keys [0, end) of the tile visible to this row
    if (p.mask != MaskMode::none) {
      const std::int64_t i = i0 + r;
      const std::int64_t last = p.mask == MaskMode::causal ? i : i - 1;  // last visible key
      end = static_cast<int>(std::clamp<std::int64_t>(last - j0 + 1, 0, n_valid));
    }
    std::fill(row + end, row + n_pad, kNegInf);
  }
}

}  // namespace usp::cpu
