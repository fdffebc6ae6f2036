// Ulysses: the head split (pure) and pure-Ulysses attention (ring degree 1) against the float64
// reference, including grouped-query attention with fewer kv heads than ranks.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <tuple>

#include "support/errors.hpp"
#include "support/matrix.hpp"
#include "ulysses/head_split.hpp"

namespace usp::test {
namespace {

using detail::HeadSplit;

TEST(UlyssesHeadSplit, QueryHeadsSplitEvenly) {
  const HeadSplit s = HeadSplit::even(12, 4);
  EXPECT_EQ(s.per_rank(), 3);
  EXPECT_FALSE(s.replicated());
  for (int j = 0; j < 4; ++j) {
    for (int m = 0; m < 3; ++m) EXPECT_EQ(s.global(j, m), 3 * j + m);
    ASSERT_EQ(s.runs(j).size(), 1u);
    EXPECT_EQ(s.runs(j)[0].head, 3 * j);
    EXPECT_EQ(s.runs(j)[0].count, 3);
  }
}

TEST(UlyssesHeadSplit, KvHeadsServeTheirQueryHeads) {
  // For every (h, hkv, u) with u | h and hkv | h: each local query head's local kv slot (the
  // kernel's GQA rule on the local heads) must be the global kv head of that query head.
  for (std::int64_t h : {1, 2, 4, 6, 8, 12, 16}) {
    for (std::int64_t hkv = 1; hkv <= h; ++hkv) {
      if (h % hkv != 0) continue;
      for (int u = 1; u <= 16; ++u) {
        if (h % u != 0) continue;
        const HeadSplit q = HeadSplit::even(h, u);
        const HeadSplit kv = HeadSplit::kv_for_queries(h, hkv, u);
        ASSERT_EQ(q.per_rank() % kv.per_rank(), 0) << h << " " << hkv << " " << u;
        const std::int64_t group = q.per_rank() / kv.per_rank();
        for (int j = 0; j < u; ++j) {
          for (std::int64_t i = 0; i < q.per_rank(); ++i) {
            EXPECT_EQ(kv.global(j, i / group), q.global(j, i) / (h / hkv))
                << "h=" << h << " hkv=" << hkv << " u=" << u << " rank " << j << " head " << i;
          }
        }
        if (hkv % u == 0) {
          EXPECT_EQ(kv.per_rank(), hkv / u);
          EXPECT_FALSE(kv.replicated());
        }
        if (hkv < u) {
          EXPECT_TRUE(kv.replicated());
        }
      }
    }
  }
}

TEST(UlyssesHeadSplit, ErrorsNameTheRule) {
  EXPECT_EQ(test::error_message([] { HeadSplit::even(12, 8); }),
            "nheads 12 is not divisible by ulysses degree 8 (each ulysses rank computes nheads / "
            "ulysses heads)");
  EXPECT_NE(test::error_message([] { HeadSplit::kv_for_queries(8, 3, 2); }).find("kv heads 3"),
            std::string::npos);
}

class UlyssesAttention : public ::testing::TestWithParam<UspCase> {};

TEST_P(UlyssesAttention, ForwardAndBackwardMatchReference) {
  expect_within_bounds(GetParam(), run_and_compare(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(UlyssesMatrix, UlyssesAttention,
                         ::testing::ValuesIn(matrix({{2, 1}, {4, 1}, {8, 1}})),
                         [](const auto& info) { return param_name(info.param); });

TEST(UlyssesAttention, GroupedQueryHeadsFewerThanRanks) {
  // hkv < u: kv heads are replicated to the ranks that need them and their gradients summed.
  for (auto [h, hkv, u, r] :
       {std::tuple{8, 2, 4, 1}, std::tuple{8, 1, 8, 1}, std::tuple{8, 2, 4, 2},
        std::tuple{6, 2, 3, 1}, std::tuple{12, 4, 6, 1}}) {
    for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
      UspCase p;
      p.type = RingType::zigzag;
      p.ulysses = u;
      p.ring = r;
      p.h = h;
      p.hkv = hkv;
      p.dtype = dt;
      p.s = 2 * u * r * 5;
      p.seed = static_cast<std::uint32_t>(h * 100 + hkv * 10 + u);
      expect_within_bounds(p, run_and_compare(p));
    }
  }
}

TEST(UlyssesAttention, GroupedQueryHeadsSplitEvenly) {
  // hkv % u == 0: kv heads split like the query heads, nothing replicated.
  UspCase p;
  p.ulysses = 2;
  p.h = 8;
  p.hkv = 2;
  p.s = 80;
  expect_within_bounds(p, run_and_compare(p));
}

}  // namespace
}  // namespace usp::test
