// usp-plan on the built-in seed machine: the targets against the seed's table (deterministic).
#include <gtest/gtest.h>

#include <cmath>

#include "fit.hpp"
#include "machine_model.hpp"
#include "output.hpp"

namespace usp::plan {
namespace {

TEST(PlanSeed, MedianWithin25PercentAndLongRowsWithin35) {
  const SeedScore s = score_seed(seed_machine());
  EXPECT_LE(s.median, 0.25);
  EXPECT_LE(s.worst_long, 0.35);
  std::vector<const bench::SeedRow*> seed;
  const std::vector<Candidate> rows = seed_candidates(seed_machine(), seed);
  ASSERT_EQ(rows.size(), 30u);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    ASSERT_EQ(rows[i].refused, "") << rows[i].config.describe();
    if (rows[i].config.seq_len < 32768) continue;
    EXPECT_NEAR(rows[i].prediction.latency_ms / seed[i]->latency_ms, 1.0, 0.35)
        << rows[i].config.describe();
  }
}

TEST(PlanSeed, OrderAt128000Kept) {
  const MachineModel m = seed_machine();
  const BenchProblem p = seed_problem();
  auto at = [&](Strategy t, int u, int r) {
    return predict(m, p, {t, 128000, u, r, true, Placement::ulysses_inner, 0}).latency_ms;
  };
  EXPECT_GT(at(Strategy::basic, 2, 4), at(Strategy::stripe, 2, 4));
  EXPECT_GT(at(Strategy::basic, 2, 4), at(Strategy::zigzag, 2, 4));
  EXPECT_LT(at(Strategy::zigzag, 4, 2), at(Strategy::zigzag, 2, 4));
  EXPECT_TRUE(score_seed(m).order_kept);
}

TEST(PlanSeed, FitDoesNotMoveAwayFromTheBuiltInMachine) {
  // The built-in parameters are the fit's result, rounded: a short refit from them finds nothing
  // notably better.
  const double built_in = score_seed(seed_machine()).objective();
  const double refit = score_seed(fit_seed(seed_machine(), 2000)).objective();
  EXPECT_LE(refit, built_in);
  EXPECT_GT(refit, built_in - 0.01);
}

TEST(PlanSeed, MachineFileRoundTrip) {
  const MachineModel m = seed_machine();
  const MachineModel back = parse_machine(machine_text(m), "seed.txt");
  EXPECT_EQ(back.description, m.description);
  EXPECT_EQ(back.ranks_per_node, 8);
  EXPECT_EQ(back.memory_bytes, std::uint64_t{24} << 30);
  const BenchProblem p = seed_problem();
  for (const bench::SeedRow& s : bench::seed_rows()) {
    const PlanConfig c = plan_config(s.config);
    EXPECT_NEAR(predict(back, p, c).latency_ms, predict(m, p, c).latency_ms,
                1e-4 * predict(m, p, c).latency_ms);
  }
}

}  // namespace
}  // namespace usp::plan
