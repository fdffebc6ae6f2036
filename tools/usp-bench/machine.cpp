#include "machine.hpp"

#include <sched.h>

#include <algorithm>
#include <fstream>
#include <thread>

namespace usp::bench {

Machine detect_machine() {
  Machine m;
  m.cpu_model = "unknown CPU";
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("model name", 0) == 0) {
      const auto colon = line.find(':');
      if (colon != std::string::npos) {
        auto v = line.substr(colon + 1);
        const auto first = v.find_first_not_of(" \t");
        if (first != std::string::npos) m.cpu_model = v.substr(first);
      }
      break;
    }
  }
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0) {
    m.cores = CPU_COUNT(&set);
  } else {
    m.cores = static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  }
  return m;
}

}  // namespace usp::bench
