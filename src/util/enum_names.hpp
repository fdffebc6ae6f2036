// The names of the small enums (DType, Device, MaskMode, RingType, Placement, CpuPath): one table
// per enum, indexed by the enumerator's value (each enum counts 0, 1, 2, ...).
#pragma once

#include <array>
#include <cstddef>

namespace usp::detail {

// names[i] names the enumerator of value i; any other value is "unknown".
template <class E, std::size_t N>
constexpr const char* enum_name(E e, const std::array<const char*, N>& names) {
  const auto i = static_cast<std::size_t>(e);
  return i < N ? names[i] : "unknown";
}

}  // namespace usp::detail
