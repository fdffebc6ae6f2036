// --check: the ranking's best configurations run on this machine (local-thread ranks, through
// usp-bench's row runner) and printed next to their predictions.
#pragma once

#include <ostream>
#include <vector>

#include "cli.hpp"

namespace usp::plan {

// Runs the best `o.top` feasible configurations of each (seq_len, fwd_only) group; those
// usp-bench cannot run yet (bench_gap) are listed as not run. Returns the exit code (0, or 1
// when a run failed).
int run_check(const PlanOptions& o, const MachineModel& m, const std::vector<Candidate>& ranked,
              std::ostream& os);

}  // namespace usp::plan
