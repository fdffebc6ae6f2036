// How the built-in seed machine's free parameters were chosen: a deterministic random search
// against the seed's 30 rows (usp-plan --fit-seed prints the result).
#pragma once

#include "model.hpp"

namespace usp::plan {

struct SeedScore {
  double median = 0;      // median over the 30 rows of |predicted / seed − 1|
  double worst_long = 0;  // the largest on rows of ≥ 32768 tokens
  double mean = 0;
  bool order_kept = false;  // at 128000: basic slowest at 2×4, zigzag 4×2 faster than 2×4
  double objective() const;
};

SeedScore score_seed(const MachineModel& m);

// Starting from `start`, `iterations` steps of a random search (fixed seed) over the kernel's
// peak, half_tokens, causal_eff, bwd_eff, call_us, the p2p and a2a bandwidths and latencies and
// the overlap, each within physical bounds; returns the best machine found.
MachineModel fit_seed(const MachineModel& start, int iterations);

}  // namespace usp::plan
