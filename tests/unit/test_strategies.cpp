// The strategies beside the single ring: all-gather KV (ring type allgather) and the double ring
// (UspConfig::double_ring), against the float64 reference on the global problem, and their
// configuration errors.
#include <gtest/gtest.h>

#include <string>
#include <tuple>
#include <vector>

#include "ring/plan.hpp"
#include "support/cases.hpp"
#include "support/errors.hpp"
#include "support/matrix.hpp"
#include "usp/backend.hpp"

namespace usp::test {
namespace {

// The exactness matrix's cases of the ring types that pass K/V around, fp32 and bf16, on
// (u, r) meshes with inner rings of `inner` ranks.
std::vector<UspCase> double_ring_cases() {
  std::vector<UspCase> out;
  const std::vector<std::tuple<int, int, int>> meshes = {
      {1, 4, 2}, {1, 4, 1}, {2, 4, 2}, {1, 8, 2}, {1, 8, 4}, {1, 6, 3}, {1, 6, 2}, {2, 2, 1}};
  for (const auto& [u, r, inner] : meshes)
    for (UspCase p : matrix({{u, r}})) {
      if (p.type == RingType::allgather || p.dtype == DType::f16) continue;
      p.double_ring = inner;
      out.push_back(p);
    }
  return out;
}

class DoubleRing : public ::testing::TestWithParam<UspCase> {};

TEST_P(DoubleRing, ForwardAndBackwardMatchReference) {
  const UspCase& p = GetParam();
  expect_within_bounds(p, run_and_compare(p));
}

INSTANTIATE_TEST_SUITE_P(Strategies, DoubleRing, ::testing::ValuesIn(double_ring_cases()),
                         [](const auto& info) {
                           return param_name(info.param) + "_dr" +
                                  std::to_string(info.param.double_ring);
                         });

TEST(DoubleRing, InnerEqualToTheRingIsTheSingleRing) {
  // double_ring = ring is one inner ring of every rank: the single ring, bit for bit.
  for (RingType t : kPassingRingTypes) {
    UspCase p{.type = t, .ring = 4, .h = 4, .hkv = 2, .seed = 41};
    const Inputs in = make_inputs(p);
    const Results single = run_usp(p, in);
    p.double_ring = 4;
    const Results same = run_usp(p, in);
    EXPECT_EQ(to_doubles(same.out), to_doubles(single.out)) << p.name();
    EXPECT_EQ(to_doubles(same.lse), to_doubles(single.lse)) << p.name();
    EXPECT_EQ(to_doubles(same.dk), to_doubles(single.dk)) << p.name();
    EXPECT_EQ(to_doubles(same.dq), to_doubles(single.dq)) << p.name();
  }
}

TEST(DoubleRing, GqaWithFewerKvHeadsThanUlysses) {
  for (RingType t : kPassingRingTypes) {
    UspCase p{.type = t, .ulysses = 4, .ring = 2, .s = 64, .h = 8, .hkv = 2, .seed = 43};
    p.double_ring = 1;
    expect_within_bounds(p, run_and_compare(p));
  }
}

TEST(AllGather, ForwardIsTheZigzagRingBitForBit) {
  // Same layout, same blocks, folded in the same order: the same bits as the zigzag ring.
  for (bool causal : {true, false}) {
    for (auto [u, r] : {std::pair{1, 4}, std::pair{2, 4}, std::pair{1, 3}}) {
      UspCase p{.type = RingType::zigzag,
                .ulysses = u,
                .ring = r,
                .causal = causal,
                .s = 48,
                .h = 4,
                .hkv = 2,
                .seed = 47};
      const Inputs in = make_inputs(p);
      const Results ring = run_usp(p, in);
      p.type = RingType::allgather;
      const Results gathered = run_usp(p, in);
      EXPECT_EQ(to_doubles(gathered.out), to_doubles(ring.out)) << p.name();
      EXPECT_EQ(to_doubles(gathered.lse), to_doubles(ring.lse)) << p.name();
      EXPECT_EQ(to_doubles(gathered.dq), to_doubles(ring.dq)) << p.name();
      expect_within_bounds(p, errors_vs_reference(p, in, gathered));
    }
  }
}

TEST(AllGather, GqaWithFewerKvHeadsThanUlyssesAndAnOddRing) {
  for (bool causal : {true, false}) {
    UspCase p{.type = RingType::allgather,
              .ulysses = 4,
              .ring = 2,
              .causal = causal,
              .s = 64,
              .h = 8,
              .hkv = 2,
              .seed = 53};
    expect_within_bounds(p, run_and_compare(p));
    p.ulysses = 2;
    p.ring = 3;
    p.s = 72;
    expect_within_bounds(p, run_and_compare(p));
  }
}

TEST(AllGather, PlanIsTheZigzagRule) {
  for (int p = 1; p <= 5; ++p)
    for (int r = 0; r < p; ++r)
      for (int src = 0; src < p; ++src)
        for (bool causal : {true, false}) {
          const detail::StepPlan a = detail::plan_blocks(RingType::allgather, p, r, src, causal, 8);
          const detail::StepPlan z = detail::plan_blocks(RingType::zigzag, p, r, src, causal, 8);
          ASSERT_EQ(a.size(), z.size());
          for (int i = 0; i < a.size(); ++i) {
            EXPECT_EQ(a[i].q_begin, z[i].q_begin);
            EXPECT_EQ(a[i].q_len, z[i].q_len);
            EXPECT_EQ(a[i].k_begin, z[i].k_begin);
            EXPECT_EQ(a[i].k_len, z[i].k_len);
            EXPECT_EQ(a[i].mask, z[i].mask);
          }
        }
}

// The message of constructing an Attention with these options on `ranks` local ranks.
std::string construction_error(int ranks, const AttentionOptions& o) {
  std::string message;
  run_local(ranks, [&](Communicator& comm) {
    try {
      Attention att(comm, o);
    } catch (const Error& e) {
      if (comm.rank() == 0) message = e.what();
    }
  });
  return message;
}

TEST(Strategies, DoubleRingArgumentsAreNamed) {
  EXPECT_TRUE(contains_all(construction_error(4, {.ring = 4, .double_ring = 3, .threads = 1}),
                           {"double_ring 3 must be 0 (the single ring) or divide ring 4"}));
  EXPECT_TRUE(contains_all(construction_error(4, {.ring = 4, .double_ring = -1, .threads = 1}),
                           {"double_ring -1 must be 0"}));
  EXPECT_TRUE(contains_all(
      construction_error(
          4, {.ring = 4, .ring_type = RingType::allgather, .double_ring = 2, .threads = 1}),
      {"double_ring 2 needs a ring that passes K/V around (basic, stripe, zigzag)"}));
  // The same value on every rank is required like every other field.
  std::string message;
  run_local(2, [&](Communicator& comm) {
    try {
      Attention att(comm, {.ring = 2, .double_ring = comm.rank() == 0 ? 0 : 2, .threads = 1});
    } catch (const Error& e) {
      if (comm.rank() == 0) message = e.what();
    }
  });
  EXPECT_TRUE(contains_all(message, {"configuration mismatch", "double_ring"}));
}

TEST(Strategies, AllGatherNeedsTwoChunksPerRank) {
  const Layout l{.type = RingType::allgather, .seq_len = 12, .ulysses = 2, .ring = 2};
  USP_EXPECT_ERROR(l.validate(), invalid_argument,
                   "seq_len 12 is not divisible by 2·ulysses·ring = 8",
                   "allgather needs two chunks per ring rank");
  EXPECT_EQ(parse_ring_type("allgather"), RingType::allgather);
  EXPECT_STREQ(ring_type_name(RingType::allgather), "allgather");
}

}  // namespace
}  // namespace usp::test
