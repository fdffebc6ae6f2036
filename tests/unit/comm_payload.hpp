// Deterministic pseudo-random message bytes for communicator tests: every rank can predict any
// other rank's data for (seed, a, b) without communicating. Shared by the local and MPI suites.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

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
