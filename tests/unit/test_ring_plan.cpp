// The ring step plans, checked against the layouts alone (no communication): for every variant,
// ring size, rank and step, the (query, key) pairs a plan computes must be exactly the pairs of
// global tokens that causal attention lets see each other, each computed once.
#include <gtest/gtest.h>

#include <cstdint>
#include <vector>

#include "ring/plan.hpp"
#include "usp/error.hpp"
#include "usp/layout.hpp"

namespace usp::detail {
namespace {

bool mask_allows(MaskMode m, std::int64_t qi, std::int64_t kj) {
  switch (m) {
    case MaskMode::none:
      return true;
    case MaskMode::causal:
      return kj <= qi;
    case MaskMode::causal_strict:
      return kj < qi;
  }
  return false;
}

// How often the plan computes each (query row, key row) pair of an L × L step.
std::vector<int> coverage(const StepPlan& plan, std::int64_t len) {
  std::vector<int> count(static_cast<std::size_t>(len * len), 0);
  for (const BlockTask& t : plan) {
    EXPECT_GE(t.q_begin, 0);
    EXPECT_GE(t.k_begin, 0);
    EXPECT_LE(t.q_begin + t.q_len, len);
    EXPECT_LE(t.k_begin + t.k_len, len);
    if (t.mask != MaskMode::none) {
      EXPECT_EQ(t.q_len, t.k_len) << "causal masks need square blocks";
    }
    for (std::int64_t i = 0; i < t.q_len; ++i)
      for (std::int64_t j = 0; j < t.k_len; ++j)
        if (mask_allows(t.mask, i, j))
          ++count[static_cast<std::size_t>((t.q_begin + i) * len + t.k_begin + j)];
  }
  return count;
}

class RingPlanTest : public ::testing::TestWithParam<RingType> {};

TEST_P(RingPlanTest, CausalPlanMatchesGlobalTokenOrder) {
  const RingType type = GetParam();
  for (int p = 1; p <= 8; ++p) {
    for (std::int64_t len : {2, 6, 8}) {  // L rows per ring rank (even: zigzag halves)
      Layout layout;
      layout.type = type;
      layout.ring = p;
      layout.ulysses = 1;
      layout.seq_len = len * p;
      layout.validate();
      for (int r = 0; r < p; ++r) {
        for (int s = 0; s < p; ++s) {
          const int src = ring_source(p, r, s);
          const StepPlan plan = plan_step(type, p, r, s, /*causal=*/true, len);
          const std::vector<int> count = coverage(plan, len);
          for (std::int64_t i = 0; i < len; ++i) {
            for (std::int64_t j = 0; j < len; ++j) {
              const std::int64_t tq = layout.ring_global(r, i);
              const std::int64_t tk = layout.ring_global(src, j);
              const int want = tk <= tq ? 1 : 0;
              ASSERT_EQ(count[static_cast<std::size_t>(i * len + j)], want)
                  << ring_type_name(type) << " P=" << p << " L=" << len << " rank " << r << " step "
                  << s << " (source " << src << "): query " << i << " (token " << tq << ") key "
                  << j << " (token " << tk << ")";
            }
          }
        }
      }
    }
  }
}

TEST_P(RingPlanTest, NonCausalIsOneFullBlockEveryStep) {
  const RingType type = GetParam();
  for (int p = 1; p <= 8; ++p) {
    for (int r = 0; r < p; ++r) {
      for (int s = 0; s < p; ++s) {
        const StepPlan plan = plan_step(type, p, r, s, /*causal=*/false, 10);
        ASSERT_EQ(plan.size(), 1);
        EXPECT_EQ(plan[0].q_begin, 0);
        EXPECT_EQ(plan[0].q_len, 10);
        EXPECT_EQ(plan[0].k_begin, 0);
        EXPECT_EQ(plan[0].k_len, 10);
        EXPECT_EQ(plan[0].mask, MaskMode::none);
      }
    }
  }
}

INSTANTIATE_TEST_SUITE_P(AllVariants, RingPlanTest,
                         ::testing::Values(RingType::basic, RingType::stripe, RingType::zigzag),
                         [](const auto& info) { return std::string(ring_type_name(info.param)); });

TEST(RingPlan, SourceWalksTheRingBackwards) {
  for (int p = 1; p <= 8; ++p) {
    for (int r = 0; r < p; ++r) {
      std::vector<int> seen(static_cast<std::size_t>(p), 0);
      for (int s = 0; s < p; ++s) {
        const int src = ring_source(p, r, s);
        EXPECT_EQ(src, ((r - s) % p + p) % p);
        ++seen[static_cast<std::size_t>(src)];
      }
      for (int c : seen) EXPECT_EQ(c, 1);
      EXPECT_EQ(ring_source(p, r, 0), r);
    }
  }
}

TEST(RingPlan, ZigzagStepsAreBalanced) {
  // Causal zigzag: after the diagonal step every step is exactly L·L/2 (query, key) pairs.
  const std::int64_t len = 8;
  for (int p = 2; p <= 8; ++p) {
    for (int r = 0; r < p; ++r) {
      for (int s = 1; s < p; ++s) {
        const StepPlan plan = plan_step(RingType::zigzag, p, r, s, true, len);
        std::int64_t work = 0;
        for (const BlockTask& t : plan) work += t.q_len * t.k_len;
        EXPECT_EQ(work, len * len / 2) << "P=" << p << " rank " << r << " step " << s;
      }
    }
  }
}

TEST(RingPlan, BasicSkipsBlocksFromLaterRanks) {
  for (int p = 1; p <= 8; ++p)
    for (int r = 0; r < p; ++r)
      for (int s = 0; s < p; ++s)
        EXPECT_EQ(plan_step(RingType::basic, p, r, s, true, 4).empty(), s > r);
}

TEST(RingPlan, RejectsOutOfRangeArguments) {
  EXPECT_THROW(plan_step(RingType::basic, 0, 0, 0, true, 4), Error);
  EXPECT_THROW(plan_step(RingType::basic, 4, 4, 0, true, 4), Error);
  EXPECT_THROW(plan_step(RingType::basic, 4, 0, 4, true, 4), Error);
}

}  // namespace
}  // namespace usp::detail
