// usp-plan's feasibility rules against usp-bench's: the same configurations accepted and refused,
// with the same messages, and the same memory bound.
#include <gtest/gtest.h>

#include "enumerate.hpp"
#include "machine.hpp"
#include "machine_model.hpp"
#include "memory_estimate.hpp"
#include "plan.hpp"

namespace usp::plan {
namespace {

// usp-bench's verdict on a row: "" or its error.
std::string bench_refusal(const BenchProblem& p, int world, const bench::RowConfig& row) {
  bench::Options o;
  o.problem = p;
  o.world = world;
  try {
    bench::validate_row(o, row);
  } catch (const bench::UsageError& e) {
    return e.what();
  }
  return "";
}

MachineModel unlimited() {
  MachineModel m = seed_machine();
  m.memory_bytes = 0;
  return m;
}

TEST(PlanFeasibility, AgreesWithUspBenchOnEveryRowItCanRun) {
  const std::vector<BenchProblem> problems = {
      {.batch = 1, .nheads = 16, .kv_heads = 16}, {.batch = 1, .nheads = 12, .kv_heads = 4},
      {.batch = 1, .nheads = 16, .kv_heads = 2},  {.batch = 1, .nheads = 6, .kv_heads = 3},
      {.batch = 1, .nheads = 8, .kv_heads = 3},   {.batch = 1, .nheads = 24, .kv_heads = 6}};
  int compared = 0, refused = 0;
  for (const BenchProblem& p : problems)
    for (int world : {4, 6, 8, 12})
      for (std::int64_t s : {48, 64, 96, 100, 128, 4096, 4100})
        for (int u = 1; u <= 12; ++u)
          for (int r = 1; r <= 12; ++r)
            for (Strategy t : {Strategy::basic, Strategy::stripe, Strategy::zigzag})
              for (bool fwd : {true, false}) {
                const PlanConfig c{t, s, u, r, fwd, Placement::ulysses_inner, 0};
                const auto row = bench_row(c);
                ASSERT_TRUE(row.has_value());
                const std::string ours = refusal(unlimited(), p, world, c);
                EXPECT_EQ(ours, bench_refusal(p, world, *row))
                    << c.describe() << " world " << world;
                ++compared;
                refused += !ours.empty();
              }
  EXPECT_GT(refused, compared / 4);  // both outcomes are exercised
  EXPECT_LT(refused, compared);
}

TEST(PlanFeasibility, MemoryBoundIsUspBenchs) {
  // CPU ranks: usp-bench refuses a row when the estimate per rank (kernel scratch included) ×
  // the ranks exceeds the memory; the planner with that much memory refuses exactly then.
  const BenchProblem p{};
  bench::Machine host;
  host.cores = 2;
  MachineModel m = unlimited();
  m.cores = 2;
  bench::Options o;
  o.problem = p;
  for (Strategy t : {Strategy::basic, Strategy::zigzag})
    for (auto [u, r] : {std::pair{2, 4}, std::pair{8, 1}, std::pair{1, 8}})
      for (bool fwd : {true, false}) {
        const PlanConfig c{t, 65536, u, r, fwd, Placement::ulysses_inner, 0};
        const bench::RowConfig row = *bench_row(c);
        const std::uint64_t need =
            bench::memory_need(o, host, row, bench::threads_per_rank(o, row, host)).bytes;
        m.memory_bytes = need;
        EXPECT_EQ(refusal(m, p, 8, c), "") << c.describe();
        m.memory_bytes = need - 1;
        EXPECT_NE(refusal(m, p, 8, c).find("not enough memory for " + c.describe()),
                  std::string::npos);
      }
  // Devices: the bound is per rank.
  MachineModel gpu = unlimited();
  const PlanConfig big{Strategy::zigzag, 1 << 22, 2, 4, false, Placement::ulysses_inner, 0};
  gpu.memory_bytes = rank_memory(gpu, p, big);
  EXPECT_EQ(refusal(gpu, p, 8, big), "");
  gpu.memory_bytes -= 1;
  EXPECT_NE(refusal(gpu, p, 8, big).find(" per rank but the machine has "), std::string::npos);
}

TEST(PlanFeasibility, AllgatherAndDoubleRingRules) {
  const MachineModel m = unlimited();
  const BenchProblem p{};
  auto why = [&](Strategy t, std::int64_t s, int u, int r, int dr) {
    return refusal(m, p, u * r, {t, s, u, r, true, Placement::ulysses_inner, dr});
  };
  EXPECT_EQ(why(Strategy::allgather, 4104, 2, 4, 0),
            "--seq-len: 4104 cannot be split by allgather over 2x4 (allgather needs seq_len "
            "divisible by 2·u·r = 16)");
  EXPECT_EQ(why(Strategy::allgather, 4096, 2, 4, 0), "");
  EXPECT_EQ(why(Strategy::zigzag, 4096, 1, 8, 4), "");
  EXPECT_EQ(why(Strategy::basic, 4096, 1, 8, 2), "");
  EXPECT_EQ(why(Strategy::zigzag, 4096, 1, 8, 3),
            "--double-ring: 3 cannot run zigzag over 1x8 (the inner ring size must divide the "
            "ring degree 8)");
  EXPECT_EQ(why(Strategy::zigzag, 4096, 1, 8, 8), "");  // one inner ring: the single ring
  EXPECT_EQ(why(Strategy::allgather, 4096, 1, 8, 4),
            "--double-ring: 4 cannot run allgather over 1x8 (allgather gathers K/V in one step and "
            "has no inner ring)");
}

TEST(PlanFeasibility, WhatUspBenchCannotRunYet) {
  EXPECT_EQ(bench_gap({Strategy::allgather, 64, 2, 4, true, Placement::ulysses_inner, 0}), "");
  const auto dr = bench_row({Strategy::zigzag, 64, 1, 8, true, Placement::ulysses_inner, 4});
  ASSERT_TRUE(dr.has_value());
  EXPECT_EQ(dr->double_ring, 4);
  EXPECT_EQ(
      bench_row({Strategy::allgather, 64, 2, 4, true, Placement::ulysses_inner, 0})->ring_type,
      RingType::allgather);
  EXPECT_EQ(bench_gap({Strategy::zigzag, 64, 2, 4, true, Placement::ring_inner, 0}),
            "usp-bench places ranks ulysses_inner only");
  const auto row = bench_row({Strategy::stripe, 64, 2, 4, false, Placement::ulysses_inner, 0});
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->ring_type, RingType::stripe);
  EXPECT_EQ(row->describe(), "stripe s=64 2x4 fwd+bwd");
}

TEST(PlanFeasibility, EnumerationOfAWorld) {
  MachineModel m = unlimited();
  Space s;
  s.world = 8;
  s.seq_lens = {4096};
  const std::vector<Candidate> all = rank_space(m, BenchProblem{}, s);
  // (u, r) ∈ 1×8, 2×4, 4×2, 8×1; r > 1: 4 ring types, r = 1 one; double rings 2 and 4 of r = 8
  // and 2 of r = 4 for the three ring types without allgather; one node: ulysses_inner only.
  EXPECT_EQ(all.size(), 3u * 4 + 1 + 3 * 2 + 3 * 1);
  for (std::size_t i = 1; i < all.size(); ++i)
    EXPECT_LE(all[i - 1].prediction.latency_ms, all[i].prediction.latency_ms * 1.001);
  // A tie goes to the smaller memory: zigzag 1×8 before its double rings, which cost the same on
  // one node but hold two more K/V blocks.
  auto at = [&](const PlanConfig& c) {
    return std::find_if(all.begin(), all.end(), [&](const Candidate& x) { return x.config == c; }) -
           all.begin();
  };
  EXPECT_LT(at({Strategy::zigzag, 4096, 1, 8, true, Placement::ulysses_inner, 0}),
            at({Strategy::zigzag, 4096, 1, 8, true, Placement::ulysses_inner, 4}));
  // Two nodes: ring_inner for 2×4 and 4×2 too.
  m.ranks_per_node = 4;
  EXPECT_EQ(rank_space(m, BenchProblem{}, s).size(), all.size() + 2 * 4 + 3 * 1);
}

}  // namespace
}  // namespace usp::plan
