#include "progress.hpp"

#include <cstdio>

namespace usp::bench {
namespace {

std::string duration(double s) {
  char buf[32];
  if (s < 60)
    std::snprintf(buf, sizeof buf, "%.0fs", s);
  else
    std::snprintf(buf, sizeof buf, "%dm%02ds", static_cast<int>(s) / 60, static_cast<int>(s) % 60);
  return buf;
}

}  // namespace

Progress::Progress(bool enabled, bool terminal, std::vector<double> costs)
    : enabled_(enabled),
      terminal_(terminal),
      costs_(std::move(costs)),
      t0_(std::chrono::steady_clock::now()) {
  for (double c : costs_) total_ += c;
}

void Progress::start(std::size_t step, const std::string& what) {
  if (!enabled_) return;
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - t0_).count();
  double done = 0;
  for (std::size_t i = 0; i < step && i < costs_.size(); ++i) done += costs_[i];
  std::string left = "?";
  if (done > 0 && total_ > 0) {
    left = "~";
    left += duration(elapsed * (total_ - done) / done);
  }
  std::fprintf(stderr, "%susp-bench: %zu/%zu %s | elapsed %s | left %s%s",
               terminal_ ? "\r\033[K" : "", step + 1, costs_.size(), what.c_str(),
               duration(elapsed).c_str(), left.c_str(), terminal_ ? "" : "\n");
  std::fflush(stderr);
}

void Progress::finish() {
  if (enabled_ && terminal_) {
    std::fprintf(stderr, "\r\033[K");
    std::fflush(stderr);
  }
}

}  // namespace usp::bench
