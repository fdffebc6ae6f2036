// Turns the options into the list of distinct rows to measure, validating every row before any
// runs (so an impossible request fails with one line and nothing half-printed).
#pragma once

#include <cstddef>
#include <vector>

#include "machine.hpp"
#include "options.hpp"

namespace usp::bench {

struct Plan {
  std::vector<RowConfig> rows;                     // distinct rows, in first-seen order
  std::vector<std::vector<std::size_t>> sections;  // per section: indices into rows
  std::vector<int> threads;                        // kernel threads per rank, per row
};

// Throws UsageError for an impossible row (degrees vs world, a length the layout cannot split,
// heads the Ulysses degree cannot split, not enough memory) or an unwritable output path.
Plan make_plan(const Options& o, const Machine& m);

// Kernel threads per rank: --threads, else max(1, cores / ranks on this host).
int threads_per_rank(const Options& o, const RowConfig& c, const Machine& m);

}  // namespace usp::bench
