// The progress line on stderr: row i of N, the configuration, elapsed and estimated time left.
#pragma once

#include <chrono>
#include <string>
#include <vector>

namespace usp::bench {

class Progress {
 public:
  // costs: relative cost of each step (e.g. FLOPs × iterations), for the time-left estimate.
  Progress(bool enabled, bool terminal, std::vector<double> costs);
  void start(std::size_t step, const std::string& what);  // step is 0-based
  void finish();                                          // clears the line on a terminal

 private:
  bool enabled_, terminal_;
  std::vector<double> costs_;
  double total_ = 0;
  std::chrono::steady_clock::time_point t0_;
};

}  // namespace usp::bench
