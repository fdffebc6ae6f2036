// The seed's rows embedded in usp-bench (for --compare-seed) against the seed's own arithmetic.
#include <gtest/gtest.h>

#include <set>
#include <tuple>

#include "../../tools/usp-bench/config.cpp"
#include "../../tools/usp-bench/seed_table.cpp"

namespace usp::bench {
namespace {

TEST(BenchSeed, ThirtyDistinctRowsConsistentWithTheFormula) {
  const BenchProblem seed;  // defaults are the seed's problem: fp16, causal, b 2, h 16, d 128
  ASSERT_EQ(seed_rows().size(), 30u);
  std::set<std::tuple<int, std::int64_t, int, int, bool>> keys;
  for (const SeedRow& r : seed_rows()) {
    const RowConfig& c = r.config;
    keys.emplace(static_cast<int>(c.ring_type), c.seq_len, c.ulysses, c.ring, c.fwd_only);
    EXPECT_EQ(c.world(), 8);
    EXPECT_NEAR(r.throughput * r.latency_ms, 1000.0, 0.5) << c.describe();
    EXPECT_NEAR(tflops(row_flops(seed, c), r.latency_ms), r.tflops, 0.1)
        << c.describe();  // the seed rounds or truncates
  }
  EXPECT_EQ(keys.size(), 30u);
}

TEST(BenchSeed, LookupOnlyForTheSeedProblem) {
  BenchProblem p;
  RowConfig c;
  c.ring_type = RingType::zigzag;
  c.seq_len = 128000;
  c.ulysses = 4;
  c.ring = 2;
  c.fwd_only = true;
  const auto row = find_seed_row(p, c);
  ASSERT_TRUE(row.has_value());
  EXPECT_DOUBLE_EQ(row->latency_ms, 274.807);
  EXPECT_DOUBLE_EQ(row->tflops, 488.4);
  c.seq_len = 2048;
  EXPECT_FALSE(find_seed_row(p, c).has_value());
  c.seq_len = 4096;
  EXPECT_TRUE(find_seed_row(p, c).has_value());
  p.head_size = 16;  // the seed's heading says 16, its numbers say 128
  EXPECT_FALSE(find_seed_row(p, c).has_value());
  p.head_size = 128;
  p.dtype = DType::bf16;
  EXPECT_FALSE(find_seed_row(p, c).has_value());
}

}  // namespace
}  // namespace usp::bench
