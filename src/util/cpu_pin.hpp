// Pinning a thread to one CPU for a while and giving it back the CPUs it had (Linux; elsewhere
// nothing is pinned and allowed_cpus() is empty).
//
// The thread-pool gate pins the threads that hold its running slots each to a CPU of its own
// while ranks of one process share few cores: left to the OS, two slot holders can sit on one
// core's run queue for tens of milliseconds while the other core idles.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace usp::detail {

// The CPUs the calling thread may run on, in increasing order (empty where unknown).
std::vector<int> allowed_cpus();

// The CPU set of a thread, as saved by ScopedPin (room for 1024 CPUs, as glibc's cpu_set_t).
using CpuMask = std::array<std::uint64_t, 16>;

// Pins the calling thread to `cpu` (cpu < 0: leaves it alone) and, when destroyed, gives it back
// the set it had. Pinning failures (a CPU outside the thread's cgroup, say) leave it unpinned.
class ScopedPin {
 public:
  explicit ScopedPin(int cpu);
  ~ScopedPin();
  ScopedPin(const ScopedPin&) = delete;
  ScopedPin& operator=(const ScopedPin&) = delete;

 private:
  bool pinned_ = false;
  CpuMask saved_{};
};

// For a pool's own worker threads, between tasks: pins the calling thread to `cpu`, or (cpu < 0)
// gives it back the set it had before the first pin. Cheap when nothing changes.
void place_worker(int cpu);

}  // namespace usp::detail
