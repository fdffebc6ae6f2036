// --calibrate: this machine's rates, measured in a few seconds — the CPU kernel's rate against
// the block shape for the problem's head size and dtype (forward full and causal, backward), one
// thread's copy bandwidth and the local communicator's latency — as a machine for the model.
#pragma once

#include <ostream>

#include "model.hpp"

namespace usp::plan {

// Ranks as local threads sharing this machine's cores, its MemAvailable as the memory. A line
// per measurement goes to `log` (nullptr: none).
MachineModel calibrate_this_machine(const BenchProblem& p, std::ostream* log);

// The fit of the rate curve: 1/rate = (1 + half_tokens/m) / peak by least squares over points
// (m tokens, rate); half_tokens 0 and the best rate when the points do not give a positive peak.
struct CurveFit {
  double peak = 0, half_tokens = 0;
};
CurveFit fit_rate_curve(const std::vector<std::pair<double, double>>& points);

}  // namespace usp::plan
