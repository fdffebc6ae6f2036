// What the benchmark ran on.
#pragma once

#include <string>

namespace usp::bench {

struct Machine {
  std::string cpu_model;  // "model name" of /proc/cpuinfo, or "unknown CPU"
  int cores = 1;          // logical CPUs this process may use
};

Machine detect_machine();

}  // namespace usp::bench
