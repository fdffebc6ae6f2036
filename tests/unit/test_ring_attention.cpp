// Pure ring attention (ulysses degree 1) against the float64 reference on the global problem.
#include <gtest/gtest.h>

#include "support/matrix.hpp"

namespace usp::test {
namespace {

class RingAttention : public ::testing::TestWithParam<UspCase> {};

TEST_P(RingAttention, ForwardAndBackwardMatchReference) {
  const UspCase& p = GetParam();
  expect_within_bounds(p, run_and_compare(p));
}

INSTANTIATE_TEST_SUITE_P(RingMatrix, RingAttention,
                         ::testing::ValuesIn(matrix({{1, 2}, {1, 4}, {1, 8}})),
                         [](const auto& info) { return param_name(info.param); });

TEST(RingAttention, NonPowerOfTwoLengthsAndOddBlocks) {
  // Ring-local blocks of 15 and 25 rows (basic, stripe) and 10 rows (zigzag halves of 5).
  for (RingType t : {RingType::basic, RingType::stripe}) {
    for (auto [s, r] : {std::pair{60, 4}, std::pair{75, 3}}) {
      UspCase p;
      p.type = t;
      p.ring = r;
      p.s = s;
      p.h = 2;
      p.hkv = 1;
      expect_within_bounds(p, run_and_compare(p));
    }
  }
  UspCase z;
  z.type = RingType::zigzag;
  z.ring = 6;
  z.s = 60;
  z.h = 3;
  z.hkv = 3;
  z.d = 8;
  expect_within_bounds(z, run_and_compare(z));
}

TEST(RingAttention, RecordsComputeCommunicationAndBytes) {
  UspCase p;
  p.ring = 4;
  p.s = 64;
  const Inputs in = make_inputs(p);
  const Results res = run_usp(p, in);
  EXPECT_GT(res.timings.compute_s, 0.0);
  EXPECT_GE(res.timings.comm_total_s, res.timings.comm_wait_s);
  // Forward: 3 K/V hops; backward: 3 K/V hops (bf16/fp32 inputs) and 4 dK/dV hops (fp32).
  const std::int64_t kv_bytes = 2 * p.b * (p.s / p.ring) * p.hkv * p.d * 4;
  EXPECT_EQ(res.timings.bytes_sent, 3 * kv_bytes + 3 * kv_bytes + 4 * kv_bytes);
}

}  // namespace
}  // namespace usp::test
