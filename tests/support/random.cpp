#include "support/random.hpp"

namespace usp::test {

std::uint32_t fresh_seed() {
  static std::random_device rd;
  return rd();
}

Tensor random_tensor(const Tensor::Dims& shape, DType t, std::mt19937& rng, float amp) {
  Tensor f = Tensor::empty(shape, DType::f32);
  std::uniform_real_distribution<float> u(-amp, amp);
  float* p = f.data_as<float>();
  for (std::int64_t i = 0; i < f.numel(); ++i) p[i] = u(rng);
  return t == DType::f32 ? f : to_dtype(f, t);
}

Tensor random_normal(const Tensor::Dims& shape, DType t, std::mt19937& rng) {
  Tensor x = Tensor::empty(shape, DType::f32);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  float* p = x.data_as<float>();
  for (std::int64_t i = 0; i < x.numel(); ++i) p[i] = dist(rng);
  round_through(p, static_cast<std::size_t>(x.numel()), t);
  return x;
}

Tensor random_bits(const Tensor::Dims& shape, DType t, std::mt19937& rng) {
  Tensor x = Tensor::empty(shape, t);
  auto* p = static_cast<unsigned char*>(x.data());
  for (std::size_t i = 0; i < x.nbytes(); ++i) p[i] = static_cast<unsigned char>(rng() & 0xff);
  return x;
}

Tensor filled(const Tensor::Dims& shape, float value) {
  Tensor f = Tensor::empty(shape, DType::f32);
  float* p = f.data_as<float>();
  for (std::int64_t i = 0; i < f.numel(); ++i) p[i] = value;
  return f;
}

}  // namespace usp::test
