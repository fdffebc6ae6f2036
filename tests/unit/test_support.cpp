// The test support library itself: each helper must be able to fail.
#include <gtest/gtest-spi.h>
#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

#include "kernel/reference/reference.hpp"
#include "support/support.hpp"
#include "usp/error.hpp"

namespace usp::test {
namespace {

TEST(TestSupport, WithinTakesTheSmallerOfCapAndRelativeBound) {
  EXPECT_TRUE(within(1e-6, 1e-7, {1e-5}));
  EXPECT_FALSE(within(1e-5, 1e-7, {1e-4}));  // above 16 × naive + floor, below the cap
  EXPECT_FALSE(within(2e-2, 1e-2, {1e-2}));  // below 16 × naive, above the cap
  EXPECT_TRUE(within(3e-6, 0.0, {1e-2, 16, 4e-6}));
  EXPECT_FALSE(within(5e-6, 0.0, {1e-2, 16, 4e-6}));
}

TEST(TestSupport, NaiveAttentionErrorGrowsWithTheDtype) {
  std::mt19937 rng(fresh_seed());
  for (MaskMode mask : kMasks) {
    const KernelCase c{.sq = 40, .sk = 40, .h = 2, .hkv = 1, .d = 32, .mask = mask};
    const Inputs f32 = make_inputs(c, rng);
    const Inputs bf16{to_dtype(f32.q, DType::bf16), to_dtype(f32.k, DType::bf16),
                      to_dtype(f32.v, DType::bf16), to_dtype(f32.dout, DType::bf16), f32.scale};
    for (const Inputs* in : {&f32, &bf16}) {
      const auto ref = reference::forward(in->q, in->k, in->v, mask, in->scale);
      const auto naive = naive_forward(in->q, in->k, in->v, mask, in->scale);
      const double err = relative_error(naive.out, ref.out);
      if (in == &f32) {
        EXPECT_LT(err, 1e-6) << mask_name(mask);
      } else {
        EXPECT_GT(err, 1e-4) << mask_name(mask);  // scores, P and out rounded to bf16
        EXPECT_LT(err, 3e-2) << mask_name(mask);
      }
      const auto g = reference::backward(in->q, in->k, in->v, in->dout, mask, in->scale);
      const auto ng = naive_backward(in->q, in->k, in->v, in->dout, mask, in->scale);
      const double floor = 1e-2 * norm(g.dv);
      EXPECT_LT(grad_error(ng.dq, g.dq, floor), in == &f32 ? 1e-5 : 5e-2);
      EXPECT_LT(grad_error(ng.dv, g.dv, floor), in == &f32 ? 1e-5 : 5e-2);
    }
  }
}

// Scales every element of an fp32 tensor by (1 + rel).
void perturb(Tensor& t, double rel) {
  float* p = t.data_as<float>();
  for (std::int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<float>(p[i] * (1 + rel));
}

// An fp32 result off by a relative 8e-6 passed the old fixed bound of 1e-5; against 16 × the
// naive fp32 attention's error (~1e-7) it fails. Likewise a gradient off by 8e-5 (old bound 1e-4).
TEST(TestSupport, KernelChecksCatchWhatTheFixedBoundsMissed) {
  auto kernel = make_cpu_kernel(1);
  USP_TEST_RNG(rng);
  const KernelCase c{.sq = 64, .sk = 64, .h = 2, .d = 32};
  const Inputs in = make_inputs(c, rng);
  Forward f = run_forward(*kernel, in, MaskMode::none);
  Grads g = run_backward(*kernel, in, f, MaskMode::none);
  expect_forward_matches(in, MaskMode::none, f, 1e-5, 1e-5);
  expect_backward_matches(in, MaskMode::none, g, {1e-4, 1e-4, 1e-4});
  perturb(f.out, 8e-6);
  EXPECT_NONFATAL_FAILURE(expect_forward_matches(in, MaskMode::none, f, 1e-5, 1e-5),
                          "naive same-dtype error");
  perturb(g.dv, 8e-5);
  EXPECT_NONFATAL_FAILURE(expect_backward_matches(in, MaskMode::none, g, {1e-4, 1e-4, 1e-4}),
                          "naive same-dtype error");
}

TEST(TestSupport, ThrowsErrorChecksKindWordsAndThatItThrows) {
  const auto fail = [] { throw Error(ErrorKind::invalid_argument, "h 6, hkv 4: bad"); };
  EXPECT_TRUE(throws_error(fail, ErrorKind::invalid_argument, {"h 6", "hkv 4"}));
  EXPECT_FALSE(throws_error(fail, ErrorKind::internal, {"h 6"}));
  EXPECT_FALSE(throws_error(fail, ErrorKind::invalid_argument, {"h 7"}));
  EXPECT_FALSE(throws_error([] {}, ErrorKind::invalid_argument, {}));
  EXPECT_EQ(error_message(fail), "h 6, hkv 4: bad");
  EXPECT_EQ(error_message([] {}), kNoError);
}

TEST(TestSupport, ScopedCpuPathRestoresTheOldValue) {
  const char* before = std::getenv("USP_CPU_PATH");
  const std::string saved = before != nullptr ? before : "";
  {
    const ScopedEnv outer("USP_CPU_PATH", "avx2");
    {
      const ScopedCpuPath inner("generic");
      EXPECT_STREQ(std::getenv("USP_CPU_PATH"), "generic");
      const ScopedCpuPath none(nullptr);
      EXPECT_EQ(std::getenv("USP_CPU_PATH"), nullptr);
    }
    EXPECT_STREQ(std::getenv("USP_CPU_PATH"), "avx2");
  }
  if (before != nullptr)
    EXPECT_EQ(std::getenv("USP_CPU_PATH"), saved);
  else
    EXPECT_EQ(std::getenv("USP_CPU_PATH"), nullptr);
}

TEST(TestSupport, RandomTensorsAreFreshAndNeverZero) {
  std::mt19937 rng(fresh_seed());
  const Tensor a = random_tensor({4, 64}, DType::f32, rng),
               b = random_tensor({4, 64}, DType::f32, rng);
  EXPECT_NE(to_doubles(a), to_doubles(b));
  EXPECT_GT(norm(to_doubles(a)), 0.0);
  const Tensor n = random_normal({4, 64}, DType::bf16, rng);
  EXPECT_EQ(n.dtype(), DType::bf16);
  EXPECT_GT(norm(to_doubles(n)), 0.0);
  EXPECT_NE(to_doubles(random_bits({64}, DType::f16, rng)), std::vector<double>(64, 0.0));
}

}  // namespace
}  // namespace usp::test
