// The rule by which usp-bench's default run picks its lengths from the measured rate (a pure
// function: rate, budget and rows in, lengths out).
#include <gtest/gtest.h>

#include <vector>

#include "../../tools/usp-bench/lengths.cpp"

namespace usp::bench {
namespace {

RowConfig row(RingType t, int u, int r, bool fwd, std::int64_t multiple) {
  RowConfig c;
  c.ring_type = t;
  c.ulysses = u;
  c.ring = r;
  c.fwd_only = fwd;
  c.seq_len = multiple;
  return c;
}

// The default run's 15 distinct rows, seq_len = which of L, 2L, 4L.
std::vector<RowConfig> default_rows() {
  std::vector<RowConfig> rows;
  for (std::int64_t m : {1, 2, 4}) {
    for (RingType t : {RingType::basic, RingType::stripe, RingType::zigzag})
      rows.push_back(row(t, 2, 4, true, m));
    rows.push_back(row(RingType::zigzag, 4, 2, true, m));
    rows.push_back(row(RingType::zigzag, 2, 4, false, m));
  }
  return rows;
}

// The seed's formula for the default problem (fp16, causal, b 2, h 16, d 128), × 3 iterations.
double seed_flops(const RowConfig& c) {
  const double s = static_cast<double>(c.seq_len);
  return 3 * 4.0 * 2 * s * s * 16 * 128 / 2 * (c.fwd_only ? 1.0 : 3.5);
}

bool always(const RowConfig&) {
  return true;
}

double run_flops_at(const std::vector<RowConfig>& rows, std::int64_t base) {
  double f = 0;
  for (RowConfig c : rows) {
    c.seq_len *= base;
    f += seed_flops(c);
  }
  return f;
}

TEST(BenchLengths, TheLongestLengthsWhosePredictionFitsTheBudget) {
  const auto rows = default_rows();
  const LengthRule rule;  // 40 s, 512 ≤ L, 4L ≤ 8192
  // A rate at which 1024, 2048, 4096 take 39 s: 2048, 4096, 8192 take 4 × as long.
  const double rate = run_flops_at(rows, 1024) / 39.0;
  const LengthChoice ch = choose_lengths(rate, rule, rows, seed_flops, always);
  EXPECT_EQ(ch.lengths, (std::vector<std::int64_t>{1024, 2048, 4096}));
  EXPECT_EQ(ch.limit, LengthChoice::Limit::budget);
  EXPECT_EQ(ch.granularity, 16);  // zigzag over 8 ranks: 2·u·r
  EXPECT_DOUBLE_EQ(ch.flops, run_flops_at(rows, 1024));
  EXPECT_NEAR(ch.predicted_s, 39.0, 1e-9);
  EXPECT_NEAR(ch.next_s, 4 * 39.0, 1e-9);
  EXPECT_DOUBLE_EQ(ch.rate, rate);
  EXPECT_EQ(ch.rule.budget_s, 40.0);

  // Just over the budget at 1024: one step shorter.
  const LengthChoice slower =
      choose_lengths(run_flops_at(rows, 1024) / 41.0, rule, rows, seed_flops, always);
  EXPECT_EQ(slower.lengths, (std::vector<std::int64_t>{512, 1024, 2048}));
  EXPECT_EQ(slower.limit, LengthChoice::Limit::budget);
  EXPECT_NEAR(slower.predicted_s, 41.0 / 4, 1e-9);
}

TEST(BenchLengths, FasterRatesNeverChooseShorterLengths) {
  const auto rows = default_rows();
  const LengthRule rule;
  std::int64_t last = 0;
  std::vector<std::int64_t> seen;
  for (double rate = 1e9; rate <= 1e14; rate *= 1.5) {
    const LengthChoice ch = choose_lengths(rate, rule, rows, seed_flops, always);
    ASSERT_EQ(ch.lengths.size(), 3u);
    EXPECT_GE(ch.lengths[0], last) << rate;
    if (ch.lengths[0] != last) seen.push_back(ch.lengths[0]);
    last = ch.lengths[0];
    // Within the budget unless already at the shortest lengths.
    if (ch.limit != LengthChoice::Limit::shortest) {
      EXPECT_LE(ch.predicted_s, rule.budget_s);
    }
  }
  EXPECT_EQ(seen, (std::vector<std::int64_t>{512, 1024, 2048}));
}

TEST(BenchLengths, BoundsAreRespected) {
  const auto rows = default_rows();
  const LengthRule rule;
  const LengthChoice fast = choose_lengths(1e18, rule, rows, seed_flops, always);
  EXPECT_EQ(fast.lengths, (std::vector<std::int64_t>{2048, 4096, 8192}));
  EXPECT_EQ(fast.limit, LengthChoice::Limit::longest);
  EXPECT_EQ(fast.next_s, 0.0);

  // Too slow for even the shortest lengths: those, saying so.
  const LengthChoice slow = choose_lengths(1e6, rule, rows, seed_flops, always);
  EXPECT_EQ(slow.lengths, (std::vector<std::int64_t>{512, 1024, 2048}));
  EXPECT_EQ(slow.limit, LengthChoice::Limit::shortest);
  EXPECT_GT(slow.predicted_s, rule.budget_s);

  // No rate measured: the shortest.
  EXPECT_EQ(choose_lengths(0.0, rule, rows, seed_flops, always).limit,
            LengthChoice::Limit::shortest);

  // Another rule: a shorter budget and tighter bounds.
  LengthRule tight;
  tight.budget_s = 10;
  tight.shortest = 256;
  tight.longest = 2048;
  const LengthChoice t = choose_lengths(1e18, tight, rows, seed_flops, always);
  EXPECT_EQ(t.lengths, (std::vector<std::int64_t>{512, 1024, 2048}));
  const LengthChoice t_slow = choose_lengths(1e6, tight, rows, seed_flops, always);
  EXPECT_EQ(t_slow.lengths, (std::vector<std::int64_t>{256, 512, 1024}));
  // At the rate that puts 1024, 2048, 4096 at 39 s, 10 s allows 512, 1024, 2048 (9.75 s).
  const LengthChoice t_mid =
      choose_lengths(run_flops_at(rows, 1024) / 39.0, tight, rows, seed_flops, always);
  EXPECT_EQ(t_mid.lengths, (std::vector<std::int64_t>{512, 1024, 2048}));
  EXPECT_EQ(t_mid.limit, LengthChoice::Limit::longest);
}

TEST(BenchLengths, NeverAboveWhatFitsInMemory) {
  const auto rows = default_rows();
  const LengthRule rule;
  auto up_to = [](std::int64_t n) { return [n](const RowConfig& c) { return c.seq_len <= n; }; };
  const LengthChoice four = choose_lengths(1e18, rule, rows, seed_flops, up_to(4096));
  EXPECT_EQ(four.lengths, (std::vector<std::int64_t>{1024, 2048, 4096}));
  EXPECT_EQ(four.limit, LengthChoice::Limit::memory);
  const LengthChoice two = choose_lengths(1e18, rule, rows, seed_flops, up_to(2048));
  EXPECT_EQ(two.lengths, (std::vector<std::int64_t>{512, 1024, 2048}));
  EXPECT_EQ(two.limit, LengthChoice::Limit::memory);
  // Only the backward rows are large: memory is asked about every row.
  auto fwd_small = [](const RowConfig& c) { return c.fwd_only || c.seq_len <= 2048; };
  EXPECT_EQ(choose_lengths(1e18, rule, rows, seed_flops, fwd_small).lengths,
            (std::vector<std::int64_t>{512, 1024, 2048}));
}

TEST(BenchLengths, EveryLengthSplitsOverEveryRowsLayout) {
  const LengthRule rule;
  // zigzag 3x1 needs multiples of 6: L = 6 · 2^7 = 768, the first such L ≥ 512.
  const std::vector<RowConfig> three = {row(RingType::zigzag, 3, 1, true, 1),
                                        row(RingType::zigzag, 3, 1, true, 2),
                                        row(RingType::zigzag, 3, 1, true, 4)};
  EXPECT_EQ(length_granularity(three), 6);
  const LengthChoice slow = choose_lengths(1e6, rule, three, seed_flops, always);
  EXPECT_EQ(slow.lengths, (std::vector<std::int64_t>{768, 1536, 3072}));
  const LengthChoice fast = choose_lengths(1e18, rule, three, seed_flops, always);
  EXPECT_EQ(fast.lengths, (std::vector<std::int64_t>{1536, 3072, 6144}));
  for (std::int64_t l : fast.lengths) EXPECT_EQ(l % 6, 0) << l;

  // The least common multiple over the rows: basic 4x2 (8) with stripe 1x3 (3) and zigzag 1x1 (2).
  const std::vector<RowConfig> mixed = {row(RingType::basic, 4, 2, true, 1),
                                        row(RingType::stripe, 1, 3, true, 2),
                                        row(RingType::zigzag, 1, 1, false, 4)};
  EXPECT_EQ(length_granularity(mixed), 24);
  for (double rate : {1e6, 1e10, 1e12, 1e18}) {
    const LengthChoice ch = choose_lengths(rate, rule, mixed, seed_flops, always);
    for (std::int64_t l : ch.lengths) EXPECT_EQ(l % 24, 0) << rate << ": " << l;
    EXPECT_EQ(ch.lengths[1], 2 * ch.lengths[0]);
    EXPECT_EQ(ch.lengths[2], 4 * ch.lengths[0]);
    EXPECT_GE(ch.lengths[0], rule.shortest);
    EXPECT_LE(ch.lengths[2], rule.longest);
  }

  // A granularity above the longest length: the smallest multiple anyway.
  const std::vector<RowConfig> huge = {row(RingType::zigzag, 64, 64, true, 1)};
  EXPECT_EQ(shortest_base(rule, length_granularity(huge)), 8192);
  EXPECT_EQ(choose_lengths(1e18, rule, huge, seed_flops, always).lengths[0], 8192);
  EXPECT_EQ(shortest_base(rule, 16), 512);
  EXPECT_EQ(shortest_base(rule, 1000), 1000);
}

}  // namespace
}  // namespace usp::bench
