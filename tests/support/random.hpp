// Fresh random inputs for the tests: every call draws new values (never zeros) from a generator
// seeded by fresh_seed(), whose seed the test prints on failure (USP_TEST_RNG).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <string>

#include "usp/dtype.hpp"
#include "usp/tensor.hpp"

namespace usp::test {

// A fresh seed per call (from std::random_device).
std::uint32_t fresh_seed();

// Declares `std::mt19937 name` seeded by a fresh seed and traces that seed in every failure below.
#define USP_TEST_RNG(name)                                     \
  const std::uint32_t name##_seed = ::usp::test::fresh_seed(); \
  SCOPED_TRACE("seed=" + std::to_string(name##_seed));         \
  std::mt19937 name(name##_seed)

// Uniform values in [-amp, amp), stored as dtype t.
Tensor random_tensor(const Tensor::Dims& shape, DType t, std::mt19937& rng, float amp = 1.0f);

// Standard normal values stored as dtype t.
Tensor random_normal(const Tensor::Dims& shape, DType t, std::mt19937& rng);

// Random bit patterns in every byte (NaNs included: for tests that compare bytes).
Tensor random_bits(const Tensor::Dims& shape, DType t, std::mt19937& rng);

// An fp32 tensor holding `value` everywhere.
Tensor filled(const Tensor::Dims& shape, float value);

}  // namespace usp::test
