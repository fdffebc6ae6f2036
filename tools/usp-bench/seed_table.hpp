// The seed's 30 distinct measured rows (8 × RTX 4090D, fp16, causal, bs 2, 16 heads, head size
// 128), for --compare-seed.
#pragma once

#include <optional>
#include <span>

#include "config.hpp"

namespace usp::bench {

struct SeedRow {
  RowConfig config;
  double throughput;  // iters/s
  double latency_ms;
  double peak_mb;
  double tflops;
};

std::span<const SeedRow> seed_rows();
// The seed's row for this configuration, if the problem is the seed's and the row exists.
std::optional<SeedRow> find_seed_row(const BenchProblem& p, const RowConfig& c);

}  // namespace usp::bench
