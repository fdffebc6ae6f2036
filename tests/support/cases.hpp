// The cases the tests share: dtype and mask lists, ring types, (ulysses, ring) meshes.
#pragma once

#include <array>
#include <cstdint>
#include <utility>

#include "usp/dtype.hpp"
#include "usp/kernel.hpp"
#include "usp/layout.hpp"

namespace usp::test {

inline constexpr std::array<DType, 3> kDtypes = {DType::f32, DType::bf16, DType::f16};
inline constexpr std::array<MaskMode, 3> kMasks = {MaskMode::none, MaskMode::causal,
                                                   MaskMode::causal_strict};
inline constexpr std::array<RingType, 4> kRingTypes = {RingType::basic, RingType::stripe,
                                                       RingType::zigzag, RingType::allgather};
// The ring types that pass K/V around the ring (the double ring applies to these).
inline constexpr std::array<RingType, 3> kPassingRingTypes = {RingType::basic, RingType::stripe,
                                                              RingType::zigzag};
// (ulysses, ring) meshes up to 8 ranks, with one that is not a power of two.
inline constexpr std::array<std::pair<int, int>, 11> kMeshes = {
    {{1, 1}, {1, 2}, {2, 1}, {1, 4}, {2, 2}, {4, 1}, {1, 8}, {2, 4}, {4, 2}, {8, 1}, {3, 2}}};

}  // namespace usp::test
