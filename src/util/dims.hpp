// Text of a tensor shape for error messages: "[2, 3, 4]".
#pragma once

#include <cstddef>
#include <sstream>
#include <string>

#include "usp/tensor.hpp"

namespace usp::detail {

inline std::string dims_str(const Tensor::Dims& s) {
  std::ostringstream os;
  os << '[';
  for (std::size_t i = 0; i < s.size(); ++i) os << (i ? ", " : "") << s[i];
  os << ']';
  return os.str();
}

}  // namespace usp::detail
