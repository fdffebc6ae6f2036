// all_finite and first_non_finite (core/finite.hpp) over each storage type, contiguous and sliced.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>

#include "core/finite.hpp"
#include "support/random.hpp"

namespace usp::test {
namespace {

TEST(Finite, FindsEachNonFiniteKindInEveryDtypeAndView) {
  USP_TEST_RNG(rng);
  const float inf = std::numeric_limits<float>::infinity();
  for (DType t : {DType::f32, DType::bf16, DType::f16})
    for (float bad : {std::numeric_limits<float>::quiet_NaN(), inf, -inf}) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " " + std::to_string(bad));
      Tensor x = random_normal({2, 9, 3, 5}, DType::f32, rng);
      const Tensor clean = to_dtype(x, t);
      EXPECT_TRUE(detail::all_finite(clean));
      EXPECT_EQ(detail::first_non_finite(clean), -1);
      const auto s = static_cast<std::int64_t>(rng() % 9), c = static_cast<std::int64_t>(rng() % 5);
      *static_cast<float*>(x.ptr({1, s, 2, c})) = bad;
      const Tensor y = to_dtype(x, t);
      EXPECT_FALSE(detail::all_finite(y));
      EXPECT_EQ(detail::first_non_finite(y), ((1 * 9 + s) * 3 + 2) * 5 + c);
      // A slice along the sequence that holds the value, and one that does not.
      EXPECT_FALSE(detail::all_finite(y.slice(1, s, 1)));
      if (s > 0) {
        EXPECT_TRUE(detail::all_finite(y.slice(1, 0, s)));
      }
    }
  // The largest finite values are finite.
  Tensor big = Tensor::empty({1, 4}, DType::f32);
  for (int i = 0; i < 4; ++i)
    static_cast<float*>(big.data())[i] = i % 2 ? 65504.0f : -std::numeric_limits<float>::max();
  EXPECT_TRUE(detail::all_finite(big));
  EXPECT_TRUE(detail::all_finite(to_dtype(big.slice(1, 1, 1), DType::f16)));
}

}  // namespace
}  // namespace usp::test
