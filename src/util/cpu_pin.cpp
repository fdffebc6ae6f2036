#include "util/cpu_pin.hpp"

#include <cstring>

#if defined(__linux__)
#include <sched.h>
#endif

namespace usp::detail {

#if defined(__linux__)

static_assert(sizeof(cpu_set_t) <= sizeof(CpuMask), "CpuMask must hold a cpu_set_t");

namespace {

bool get_mask(CpuMask& m) {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return false;
  m.fill(0);
  std::memcpy(m.data(), &set, sizeof set);
  return true;
}

bool set_mask(const CpuMask& m) {
  cpu_set_t set;
  std::memcpy(&set, m.data(), sizeof set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

bool pin_to(int cpu) {
  if (cpu < 0 || cpu >= CPU_SETSIZE) return false;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  return sched_setaffinity(0, sizeof set, &set) == 0;
}

// A worker's pin: the CPU it is pinned to (-1: none) and the set it had before.
thread_local int t_worker_cpu = -1;
thread_local CpuMask t_worker_home{};

}  // namespace

std::vector<int> allowed_cpus() {
  std::vector<int> cpus;
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof set, &set) != 0) return cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return cpus;
}

ScopedPin::ScopedPin(int cpu) {
  if (cpu < 0 || !get_mask(saved_)) return;
  pinned_ = pin_to(cpu);
}

ScopedPin::~ScopedPin() {
  if (pinned_) set_mask(saved_);
}

void place_worker(int cpu) {
  if (cpu == t_worker_cpu) return;
  if (cpu < 0) {
    set_mask(t_worker_home);
    t_worker_cpu = -1;
    return;
  }
  if (t_worker_cpu < 0 && !get_mask(t_worker_home)) return;
  if (pin_to(cpu)) {
    t_worker_cpu = cpu;
  } else if (t_worker_cpu >= 0) {
    set_mask(t_worker_home);
    t_worker_cpu = -1;
  }
}

#else

std::vector<int> allowed_cpus() {
  return {};
}
ScopedPin::ScopedPin(int) {}
ScopedPin::~ScopedPin() = default;
void place_worker(int) {}

#endif

}  // namespace usp::detail
