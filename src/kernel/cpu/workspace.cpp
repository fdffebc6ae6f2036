// The scratch memory of one call: tile sizes, the workspace's layout and its total (workspace.hpp).
#include "kernel/cpu/workspace.hpp"

#include <algorithm>

#include "kernel/cpu/group_batch.hpp"

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

std::size_t workspace_floats(Pass pass, const BlockProblem& p, int threads) {
  const PanelPlan pp = pass == Pass::forward ? forward_panels(p) : backward_panels(p);
  const auto most =
      largest_batch(plan_batches(p.b * p.hkv, pp.tasks_per_group, pp.per_group, threads));
  return static_cast<std::size_t>(threads) *
             tile_floats(pass, p.dpad, task_rows(pass, p.sq),
                         tile_rows(p.sk, pass == Pass::forward ? kBc : kBwdTiles * kBc)) +
         static_cast<std::size_t>(most) * pp.per_group;
}

}  // namespace usp::cpu
