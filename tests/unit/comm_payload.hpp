// Helpers of the communicator tests (local, MPI, conformance): deterministic pseudo-random message
// bytes, which every rank can predict for any other rank's (seed, a, b) without communicating, and
// the usp::Error a call must throw.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <vector>

#include "support/errors.hpp"  // expect_error
#include "usp/error.hpp"

namespace usp::test {

inline std::uint8_t payload(std::uint32_t seed, int a, int b, std::size_t i) {
  std::uint64_t x = seed * 0x9E3779B97F4A7C15ull ^ (static_cast<std::uint64_t>(a) << 40) ^
                    (static_cast<std::uint64_t>(b) << 20) ^ i;
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdull;
  x ^= x >> 33;
  return static_cast<std::uint8_t>(x);
}

inline std::vector<std::uint8_t> make_payload(std::uint32_t seed, int a, int b, std::size_t n) {
  std::vector<std::uint8_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = payload(seed, a, b, i);
  return v;
}

}  // namespace usp::test
