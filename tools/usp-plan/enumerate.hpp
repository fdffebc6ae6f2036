// Which configurations exist for a world and problem, which are feasible (the rules usp-bench
// applies, and memory), and their ranking by predicted latency.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "model.hpp"
#include "options.hpp"

namespace usp::plan {

// "" when the configuration can run on `world` ranks of machine m, else why not, naming the
// flag and the rule as usp-bench does (degrees vs world, seq_len vs the layout, the double ring,
// heads and KV heads vs u, memory).
std::string refusal(const MachineModel& m, const BenchProblem& p, int world, const PlanConfig& c);

// The usp-bench row of c when usp-bench can run it: this is where allgather and the double ring
// are handed to usp-bench once RowConfig and RingType carry them.
std::optional<bench::RowConfig> bench_row(const PlanConfig& c);
// Why usp-bench cannot run c ("" when it can).
std::string bench_gap(const PlanConfig& c);

// What to consider; empty lists mean every value that applies.
struct Space {
  int world = 8;
  std::vector<std::int64_t> seq_lens;
  std::vector<bool> fwd_only = {true};
  std::vector<Strategy> types;
  std::vector<bench::Degrees> degrees;
  std::vector<Placement> placements;
  std::vector<int> double_rings;  // 0 = a single ring
};

struct Candidate {
  PlanConfig config;
  Prediction prediction;
  std::string refused;  // "" when feasible
};

// Every configuration of the space: (u, r) with u·r = world, each ring type (at r = 1, where
// they are the same computation, only the first unless --ring-type lists them); by default
// ring_inner only where it changes a link (u > 1, r > 1, world over more than one node) and each
// double ring INNER that divides r with 2 ≤ INNER < r (not allgather); listed placements and
// INNER values are taken as given where u > 1 and r > 1 (the refusal says what cannot run).
// Latencies within 0.1 % are ties, broken by the smaller peak memory, then enumeration order. Per
// (seq_len, fwd_only): the feasible ones by predicted latency (ties in enumeration order), then the
// refused ones.
std::vector<Candidate> rank_space(const MachineModel& m, const BenchProblem& p, const Space& s);

}  // namespace usp::plan
