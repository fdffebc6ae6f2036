// The exactness matrix: every ring type × the given (ulysses, ring) meshes × causal/non-causal ×
// fp32/bf16/fp16, forward and backward, each against the float64 reference.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "support/cases.hpp"
#include "support/distributed.hpp"

namespace usp::test {

inline std::vector<UspCase> matrix(const std::vector<std::pair<int, int>>& meshes) {
  std::vector<UspCase> out;
  std::uint32_t seed = 100;
  for (const auto& [u, r] : meshes) {
    for (RingType t : kRingTypes) {
      for (bool causal : {true, false}) {
        for (DType dt : {DType::f32, DType::bf16, DType::f16}) {
          UspCase p;
          p.type = t;
          p.ulysses = u;
          p.ring = r;
          p.causal = causal;
          p.dtype = dt;
          p.s = 96;  // divisible by 2·u·r for every mesh up to 8 ranks, not a power of two
          p.h = 8;
          p.hkv = 4;
          p.d = 16;
          p.b = (seed % 2) ? 1 : 2;
          p.seed = seed++;
          out.push_back(p);
        }
      }
    }
  }
  return out;
}

inline std::string param_name(const UspCase& p) {
  return detail::concat(ring_type_name(p.type), "_u", p.ulysses, "_r", p.ring,
                        p.causal ? "_causal_" : "_full_", dtype_name(p.dtype));
}

}  // namespace usp::test
