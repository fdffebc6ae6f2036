// Turns the options into the list of distinct rows to measure, validating every row before any
// runs (so an impossible request fails with one line and nothing half-printed).
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "machine.hpp"
#include "options.hpp"

namespace usp::bench {

struct Plan {
  std::vector<RowConfig> rows;                     // distinct rows, in first-seen order
  std::vector<std::vector<std::size_t>> sections;  // per section: indices into rows
  std::vector<int> threads;                        // kernel threads per rank, per row
};

// Throws UsageError for a row the run cannot split: degrees vs the world, a length the layout
// cannot split, heads (or KV heads) the Ulysses degree cannot split, what the CUDA kernel refuses.
// Memory is checked separately (memory_need).
void validate_row(const Options& o, const RowConfig& c);

// Throws UsageError for an impossible row (degrees vs world, a length the layout cannot split,
// heads the Ulysses degree cannot split, not enough memory) or an unwritable output path.
Plan make_plan(const Options& o, const Machine& m);

// The host memory a row needs on this machine: the upper estimate per rank plus the CPU kernel's
// scratch, times the ranks sharing the memory, plus the single-rank reference with --check. All
// zero for the GPU backends (their tensors live on the device).
struct MemoryNeed {
  std::uint64_t bytes = 0;     // in all
  std::uint64_t per_rank = 0;  // of it per rank, kernel scratch included
  std::uint64_t scratch = 0;   // of that the kernel scratch
  int ranks = 0;               // ranks on this host
};
MemoryNeed memory_need(const Options& o, const Machine& m, const RowConfig& c, int threads);

// Kernel threads per rank: --threads, else max(1, cores / ranks on this host).
int threads_per_rank(const Options& o, const RowConfig& c, const Machine& m);

}  // namespace usp::bench
