#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <vector>

#include "support/support.hpp"
#include "usp/error.hpp"
#include "usp/tensor.hpp"

namespace usp {
namespace {

using test::error_message;

Tensor iota(const Tensor::Dims& shape) {
  Tensor t = Tensor::empty(shape, DType::f32);
  for (std::int64_t i = 0; i < t.numel(); ++i) t.data_as<float>()[i] = static_cast<float>(i);
  return t;
}

TEST(TensorBasics, EmptyZerosWrap) {
  Tensor t = Tensor::empty({2, 3, 4, 5}, DType::bf16);
  EXPECT_TRUE(t.defined());
  EXPECT_EQ(t.dim(), 4);
  EXPECT_EQ(t.numel(), 120);
  EXPECT_EQ(t.nbytes(), 240u);
  EXPECT_EQ(t.strides(), (Tensor::Dims{60, 20, 5, 1}));
  EXPECT_TRUE(t.is_contiguous());
  EXPECT_EQ(t.device(), Device::host);
  EXPECT_EQ(reinterpret_cast<std::uintptr_t>(t.data()) % 64, 0u);

  Tensor z = Tensor::zeros({3, 7}, DType::f16);
  for (double x : to_doubles(z)) EXPECT_EQ(x, 0.0);

  float buf[6] = {1, 2, 3, 4, 5, 6};
  Tensor w = Tensor::wrap(buf, {2, 3}, DType::f32);
  EXPECT_EQ(w.data(), buf);
  EXPECT_EQ(*static_cast<float*>(w.ptr({1, 2})), 6.0f);
  EXPECT_EQ(w.ptr({1}), buf + 3);

  Tensor u;
  EXPECT_FALSE(u.defined());
  EXPECT_EQ(u.numel(), 0);
  EXPECT_EQ(u.describe(), "undefined tensor");
}

TEST(TensorBasics, Describe) {
  EXPECT_EQ(Tensor::empty({2, 128, 16, 64}, DType::f16).describe(), "[2, 128, 16, 64] fp16 host");
  EXPECT_EQ(Tensor::empty({3}, DType::f32).describe(), "[3] fp32 host");
}

TEST(TensorViews, SliceSharesStorage) {
  Tensor t = iota({2, 6, 3, 4});
  Tensor s = t.slice(1, 2, 3);
  EXPECT_EQ(s.shape(), (Tensor::Dims{2, 3, 3, 4}));
  EXPECT_EQ(s.strides(), t.strides());
  EXPECT_FALSE(s.is_contiguous());
  EXPECT_EQ(s.ptr({0, 0, 0, 0}), t.ptr({0, 2, 0, 0}));
  EXPECT_EQ(*static_cast<float*>(s.ptr({1, 2, 1, 3})), *static_cast<float*>(t.ptr({1, 4, 1, 3})));
  *static_cast<float*>(s.ptr({0, 0, 0, 0})) = -1;
  EXPECT_EQ(*static_cast<float*>(t.ptr({0, 2, 0, 0})), -1.0f);
  // A slice of the first dim of a contiguous tensor stays contiguous.
  EXPECT_TRUE(t.slice(0, 1, 1).is_contiguous());
  Tensor e = t.slice(1, 6, 0);
  EXPECT_EQ(e.numel(), 0);
}

TEST(TensorViews, SliceAndPtrBoundsAreChecked) {
  Tensor t = iota({2, 6, 3, 4});
  std::string m = error_message([&] { t.slice(1, 4, 3); });
  EXPECT_NE(m.find("range [4, 7) out of bounds for dim 1 of size 6"), std::string::npos) << m;
  m = error_message([&] { t.slice(4, 0, 1); });
  EXPECT_NE(m.find("dim 4 out of range"), std::string::npos) << m;
  m = error_message([&] { t.ptr({0, 6}); });
  EXPECT_NE(m.find("index 6 out of range for dim 1"), std::string::npos) << m;
  m = error_message([&] { Tensor::empty({1, 2, 3, 4, 5}, DType::f32); });
  EXPECT_NE(m.find("shape must have 1 to 4 dims"), std::string::npos) << m;
  m = error_message([&] { Tensor::empty({2, -1}, DType::f32); });
  EXPECT_NE(m.find("every dim must be >= 0"), std::string::npos) << m;
}

TEST(TensorViews, Reshape) {
  Tensor t = iota({2, 3, 4});
  Tensor r = t.reshape({6, 4});
  EXPECT_EQ(r.data(), t.data());
  EXPECT_EQ(*static_cast<float*>(r.ptr({5, 3})), 23.0f);
  std::string m = error_message([&] { t.reshape({5, 5}); });
  EXPECT_NE(m.find("has 25 elements, tensor has 24"), std::string::npos) << m;
  m = error_message([&] { t.slice(1, 1, 2).reshape({16}); });
  EXPECT_NE(m.find("is not contiguous"), std::string::npos) << m;
}

TEST(TensorCopy, ConvertsAndHandlesStrides) {
  Tensor src = iota({2, 5, 3, 4});
  Tensor view = src.slice(1, 1, 3).slice(2, 1, 2);  // [2, 3, 2, 4], strided
  Tensor h = to_dtype(view, DType::bf16);
  EXPECT_TRUE(h.is_contiguous());
  EXPECT_EQ(h.shape(), (Tensor::Dims{2, 3, 2, 4}));
  const auto a = to_doubles(view), b = to_doubles(h);
  ASSERT_EQ(a.size(), 48u);
  EXPECT_EQ(a, b);        // small integers are exact in bf16
  EXPECT_EQ(a[0], 16.0);  // element (0, 1, 1, 0) = 1·12 + 1·4
  // Into a strided destination.
  Tensor dst_big = Tensor::zeros({2, 5, 3, 4}, DType::f16);
  Tensor dst = dst_big.slice(1, 2, 3).slice(2, 0, 2);
  copy_into(h, dst);
  EXPECT_EQ(to_doubles(dst), a);
  EXPECT_EQ(*static_cast<std::uint16_t*>(dst_big.ptr({0, 0, 0, 0})), 0u);
  std::string m = error_message([&] {
    Tensor x = Tensor::empty({2, 3}, DType::f32);
    copy_into(h, x);
  });
  EXPECT_NE(m.find("dst shape [2, 3] must equal src shape [2, 3, 2, 4]"), std::string::npos) << m;
}

TEST(TensorCopy, RoundsToNearestEven) {
  Tensor f = Tensor::empty({3}, DType::f32);
  f.data_as<float>()[0] = 1.0f + std::ldexp(1.0f, -11);
  f.data_as<float>()[1] = 1.0f + 3 * std::ldexp(1.0f, -11);
  f.data_as<float>()[2] = std::numeric_limits<float>::quiet_NaN();
  const auto d = to_doubles(to_dtype(f, DType::f16));
  EXPECT_EQ(d[0], 1.0);
  EXPECT_EQ(d[1], 1.0 + std::ldexp(1.0, -9));
  EXPECT_TRUE(std::isnan(d[2]));
}

TEST(TensorError, RelativeError) {
  EXPECT_EQ(relative_error(std::vector<double>{1, 2}, std::vector<double>{1, 2}), 0.0);
  EXPECT_DOUBLE_EQ(relative_error(std::vector<double>{3, 4}, std::vector<double>{0, 0}),
                   std::numeric_limits<double>::infinity());
  EXPECT_DOUBLE_EQ(relative_error(std::vector<double>{0, 0}, std::vector<double>{0, 0}), 0.0);
  EXPECT_DOUBLE_EQ(
      relative_error(std::vector<double>{1.0, 2.0, 2.5}, std::vector<double>{1.0, 2.0, 2.0}),
      0.5 / 3.0);
  const double inf = std::numeric_limits<double>::infinity();
  EXPECT_EQ(relative_error(std::vector<double>{-inf, 1.0}, std::vector<double>{-inf, 1.0}), 0.0);
  EXPECT_EQ(relative_error(std::vector<double>{0.0, 1.0}, std::vector<double>{-inf, 1.0}), inf);
  Tensor a = iota({2, 2}), b = iota({2, 2});
  EXPECT_EQ(relative_error(a, b), 0.0);
  std::string m = error_message([] {
    relative_error(std::vector<double>{1}, std::vector<double>{1, 2});
  });
  EXPECT_NE(m.find("sizes differ"), std::string::npos) << m;
}

}  // namespace
}  // namespace usp
