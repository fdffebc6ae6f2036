// The scratch memory of one CPU kernel call: per-worker fp32 tiles and the packed K/V (backward
// also Q/dout) panels of a batch of groups, one block from the kernel's allocator.
//
// The size, which cpu_kernel_scratch_bytes() (usp/kernel.hpp) returns exactly: with T threads,
// dp = d rounded up to 16, nkt = ceil(sk / 64), nqt = ceil(sq / 64), nqb = ceil(nqt / 4),
// C = max(1, min(8, nkt)), g = h / hkv, groups = b·hkv, R = min(64, sq rounded up to 16),
// F = min(256, sq rounded up to 16) and B = min(256, sk rounded up to 16), the block is
// 4·(T·tile + n·panel) bytes where
//   forward:  tile = 2·F·dp + 64·min(F, 64) + 2·F + dp,  panel = 64·nkt·(d + dp),
//             n = min(groups, ceil(W / (g·nqb)), max(1, floor(2^24 / panel)));
//   backward: tile = 2·B·dp + 128·R + dp,
//             panel = 64·nkt·(2d + dp) + 64·g·nqt·(2·dp + 2) rounded up to a multiple of 16,
//                     plus C·64·g·nqt·dp (C partial sums of dq),
//             n = min(groups, ceil(W / C), max(1, floor(2^24 / panel))),
// with W = 8T tasks for T > 1 and W = 1 for one thread (n = 1).
// merge() takes T·dp floats and add() one row of floats for the duration of the call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernel/cpu/block_problem.hpp"
#include "usp/memory.hpp"

namespace usp::cpu {

// Which pass a workspace serves: the tiles each needs differ.
enum class Pass : std::uint8_t { forward, backward };

// Packed fp32 tiles of one worker, each 64-byte aligned, rows dpad floats wide (s and dp kBc
// wide). R = task_rows(pass, sq) query rows and K = min(kBwdTiles·kBc, pad_vec(sk)) keys (the
// backward's key block) at most. A pass sets only the tiles it uses (the others are null).
struct Tiles {
  float* q = nullptr;      // [R][dpad]  query rows (forward: kFwdTiles query tiles)
  float* s = nullptr;      // [min(R, kBr)][kBc]   scores, then probabilities
  float* dp = nullptr;     // [R][kBc]   dout·vᵀ, then score gradients (backward)
  float* acc = nullptr;    // [R][dpad]  output accumulator (forward)
  float* dk = nullptr;     // [K][dpad]  dk accumulator (backward)
  float* dv = nullptr;     // [K][dpad]  dv accumulator (backward)
  float* row_m = nullptr;  // [R] (forward)
  float* row_l = nullptr;  // [R] (forward)
  float* line = nullptr;   // [dpad]
};

// Tile rows a call needs: R (rows = sq) or K (rows = sk) above.
int tile_rows(std::int64_t rows, int most);
// Query rows one task of the pass owns: R above (forward kFwdTiles·kBr, backward kBr at most).
int task_rows(Pass pass, std::int64_t sq);

// Floats of one worker's tiles for the pass:
//   forward:  2·R·dpad + min(R, kBr)·kBc + 2·R + dpad
//   backward: 2·K·dpad + 2·R·kBc + dpad
std::size_t tile_floats(Pass pass, int dpad, int R, int K);

// `workers` sets of tiles, then `panel_floats` of packed panels. It lives for the call only, so
// between calls a rank holds nothing but its tensors, and during a call the allocator counts it.
class Workspace {
 public:
  Workspace(Allocator& alloc, Pass pass, int workers, int dpad, int R, int K,
            std::size_t panel_floats);
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  const Tiles& tiles(int worker) const { return tiles_[static_cast<std::size_t>(worker)]; }
  float* panels() const { return panels_; }

 private:
  Buffer block_;
  std::vector<Tiles> tiles_;
  float* panels_ = nullptr;
};

// Panel floats of one group and the tasks per group the batching balances, per pass (forward.cpp,
// backward.cpp), and the floats of a whole call's workspace on `threads` workers.
struct PanelPlan {
  std::size_t per_group;
  std::int64_t tasks_per_group;
};
PanelPlan forward_panels(const BlockProblem& p);
PanelPlan backward_panels(const BlockProblem& p);
std::size_t workspace_floats(Pass pass, const BlockProblem& p, int threads);

}  // namespace usp::cpu
