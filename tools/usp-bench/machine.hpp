// What the benchmark ran on.
#pragma once

#include <string>

namespace usp::bench {

struct Machine {
  std::string cpu_model;  // "model name" of /proc/cpuinfo, or "unknown CPU"
  int cores = 1;          // logical CPUs this process may use
  // Backends with one process per rank: the job's processes on this host (they share its cores
  // and memory). 0 when the ranks are threads of this process.
  int host_ranks = 0;
  std::string gpu;  // the GPU of the GPU backends ("NVIDIA H100 ... (sm_90, 79.1 GiB)")
};

Machine detect_machine();

}  // namespace usp::bench
