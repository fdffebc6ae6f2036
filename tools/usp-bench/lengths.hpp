// How the default run picks its three lengths from this machine's measured rate: a pure function
// of the rate, the budget and the rows, so that a faster machine runs longer sequences and every
// run ends in about the same time.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "config.hpp"

namespace usp::bench {

struct LengthRule {
  double budget_s = 40.0;       // predicted compute of the whole run, at most
  std::int64_t shortest = 512;  // the shortest of the three lengths, at least
  std::int64_t longest = 8192;  // the longest, at most
};

// The lengths L, 2L, 4L the rule chose, and why.
struct LengthChoice {
  enum class Limit {
    budget,    // 2L would exceed the budget
    longest,   // 2L would make the longest length exceed the rule's
    memory,    // some row would not fit in memory at 2L
    shortest,  // even the shortest lengths the rule allows exceed the budget
  };
  std::vector<std::int64_t> lengths;  // L, 2L, 4L
  std::int64_t granularity = 1;  // L is this times a power of two (every row's layout splits it)
  double rate = 0;               // flop/s the prediction assumed
  double flops = 0;              // the whole run's, at these lengths
  double predicted_s = 0;        // flops / rate
  double next_s = 0;             // predicted at 2L, 4L, 8L (Limit::budget only; 0 otherwise)
  Limit limit = Limit::budget;
  LengthRule rule;
};

// Where the rate came from: single-threaded forward calls of the CPU kernel, `threads` of them
// computing at once, timed.
struct Calibration {
  std::int64_t batch = 2, seq_len = 512, heads = 16;  // with the run's head size, dtype and mask
  int threads = 1;                                    // kernels computing at once, one thread each
  int calls = 0;       // timed calls, all threads (after one untimed call each)
  double call_s = 0;   // the slowest thread's median call
  double flops = 0;    // one call's, by the seed's formula
  double rate = 0;     // flop/s: Σ over threads of flops / the thread's median call
  double total_s = 0;  // wall time of the whole calibration, data included
};

// The three lengths the ratios 1:2:4 of the rows' seq_len take, each a multiple of the
// granularity (the least common multiple over the rows of u·r, 2·u·r for zigzag) times a power of
// two: the longest L for which the whole run's flops at L, 2L, 4L, at `rate` flop/s, fit the
// budget, with L ≥ rule.shortest (rounded up to such a multiple), 4L ≤ rule.longest and every
// row fitting in memory. When even the smallest L exceeds the budget (or 4L the longest length)
// it takes that L anyway.
//   rows: the run's distinct rows with seq_len 1, 2 or 4 — which of L, 2L, 4L the row runs at.
//   flops(row): what the run computes for the row at its length (every iteration, repeat and
//               check of it), by the seed's formula.
//   fits(row): whether the row fits in this machine's memory at its length.
LengthChoice choose_lengths(double rate, const LengthRule& rule, const std::vector<RowConfig>& rows,
                            const std::function<double(const RowConfig&)>& flops,
                            const std::function<bool(const RowConfig&)>& fits);

// The smallest L the rule allows: granularity × the least power of two reaching rule.shortest.
std::int64_t shortest_base(const LengthRule& rule, std::int64_t granularity);

// The least common multiple over the rows of what their layouts need seq_len to be divisible by.
std::int64_t length_granularity(const std::vector<RowConfig>& rows);

}  // namespace usp::bench
