#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "kernel/reference/reference.hpp"
#include "support/support.hpp"
#include "usp/kernel.hpp"

namespace usp {
namespace {

TEST(ReferenceForward, TwoKeysByHand) {
  float q[1] = {1}, k[2] = {0, 1}, v[2] = {1, 3};
  Tensor tq = Tensor::wrap(q, {1, 1, 1, 1}, DType::f32);
  Tensor tk = Tensor::wrap(k, {1, 2, 1, 1}, DType::f32);
  Tensor tv = Tensor::wrap(v, {1, 2, 1, 1}, DType::f32);
  const auto r = reference::forward(tq, tk, tv, MaskMode::none, 1.0);
  const double e = std::exp(1.0);
  EXPECT_NEAR(r.out[0], (1 + 3 * e) / (1 + e), 1e-15);
  EXPECT_NEAR(r.lse[0], std::log(1 + e), 1e-15);
}

TEST(ReferenceForward, MasksAndGqa) {
  std::mt19937 rng(test::fresh_seed());
  Tensor q = test::random_tensor({1, 3, 4, 8}, DType::f32, rng);
  Tensor k = test::random_tensor({1, 3, 2, 8}, DType::f32, rng);
  Tensor v = test::random_tensor({1, 3, 2, 8}, DType::f32, rng);
  const auto vd = to_doubles(v);
  const auto c = reference::forward(q, k, v, MaskMode::causal, 0.3);
  const auto s = reference::forward(q, k, v, MaskMode::causal_strict, 0.3);
  for (int h = 0; h < 4; ++h) {
    const int hk = h / 2;  // heads 0, 1 use kv head 0; heads 2, 3 use kv head 1
    EXPECT_EQ(s.lse[static_cast<std::size_t>(h * 3)], -std::numeric_limits<double>::infinity());
    for (int x = 0; x < 8; ++x) {
      // causal row 0 sees key 0 only; strict row 1 sees key 0 only; strict row 0 sees nothing.
      EXPECT_NEAR(c.out[static_cast<std::size_t>((0 * 4 + h) * 8 + x)],
                  vd[static_cast<std::size_t>(hk * 8 + x)], 1e-15);
      EXPECT_NEAR(s.out[static_cast<std::size_t>((1 * 4 + h) * 8 + x)],
                  vd[static_cast<std::size_t>(hk * 8 + x)], 1e-15);
      EXPECT_EQ(s.out[static_cast<std::size_t>((0 * 4 + h) * 8 + x)], 0.0);
    }
  }
}

// The analytic gradients equal central finite differences of L = Σ dout ∘ out. Inputs are
// multiples of 1/64 and the step is 2^-10, so perturbed fp32 inputs are exact.
TEST(ReferenceBackward, MatchesFiniteDifferences) {
  std::mt19937 rng(test::fresh_seed());
  std::uniform_int_distribution<int> u(-64, 64);
  auto dyadic = [&](const Tensor::Dims& shape) {
    Tensor t = Tensor::empty(shape, DType::f32);
    for (std::int64_t i = 0; i < t.numel(); ++i)
      t.data_as<float>()[i] = static_cast<float>(u(rng)) / 64.0f;
    return t;
  };
  for (MaskMode mask : test::kMasks) {
    SCOPED_TRACE(mask_name(mask));
    Tensor q = dyadic({1, 4, 2, 3}), k = dyadic({1, 4, 1, 3}), v = dyadic({1, 4, 1, 3});
    Tensor dout = dyadic({1, 4, 2, 3});
    const double scale = 0.7;
    const auto g = reference::backward(q, k, v, dout, mask, scale);
    const auto dd = to_doubles(dout);
    auto loss = [&] {
      const auto r = reference::forward(q, k, v, mask, scale);
      double l = 0;
      for (std::size_t i = 0; i < dd.size(); ++i) l += dd[i] * r.out[i];
      return l;
    };
    const float step = 1.0f / 1024;
    auto check = [&](Tensor& t, const std::vector<double>& grad) {
      for (std::int64_t i = 0; i < t.numel(); ++i) {
        float& x = t.data_as<float>()[i];
        const float x0 = x;
        x = x0 + step;
        const double lp = loss();
        x = x0 - step;
        const double lm = loss();
        x = x0;
        const double fd = (lp - lm) / (2.0 * step);
        EXPECT_NEAR(grad[static_cast<std::size_t>(i)], fd, 1e-5) << "element " << i;
      }
    };
    check(q, g.dq);
    check(k, g.dk);
    check(v, g.dv);
  }
}

}  // namespace
}  // namespace usp
