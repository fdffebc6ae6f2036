#include "usp/usp.hpp"

namespace usp {
const char* version() {
  return "0.1.0";
}
}  // namespace usp
