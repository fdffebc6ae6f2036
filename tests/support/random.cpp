#include "support/random.hpp"

#include <algorithm>

namespace usp::test {

std::uint32_t fresh_seed() {
  static std::random_device rd;
  return rd();
}

namespace {
// An fp32 tensor whose elements are successive values of `next()`.
template <class Next>
Tensor f32_of(const Tensor::Dims& shape, Next&& next) {
  Tensor f = Tensor::empty(shape, DType::f32);
  float* p = f.data_as<float>();
  std::generate(p, p + f.numel(), next);
  return f;
}
}  // namespace

Tensor random_tensor(const Tensor::Dims& shape, DType t, std::mt19937& rng, float amp) {
  std::uniform_real_distribution<float> u(-amp, amp);
  Tensor f = f32_of(shape, [&] { return u(rng); });
  return t == DType::f32 ? f : to_dtype(f, t);
}

Tensor random_normal(const Tensor::Dims& shape, DType t, std::mt19937& rng) {
  std::normal_distribution<float> dist(0.0f, 1.0f);
  Tensor f = f32_of(shape, [&] { return dist(rng); });
  return t == DType::f32 ? f : to_dtype(f, t);
}

Tensor random_bits(const Tensor::Dims& shape, DType t, std::mt19937& rng) {
  Tensor x = Tensor::empty(shape, t);
  auto* p = static_cast<unsigned char*>(x.data());
  for (std::size_t i = 0; i < x.nbytes(); ++i) p[i] = static_cast<unsigned char>(rng() & 0xff);
  return x;
}

Tensor filled(const Tensor::Dims& shape, float value) {
  return f32_of(shape, [value] { return value; });
}

}  // namespace usp::test
