// A process-wide limit on the threads that run thread-pool tasks at once.
//
// When ranks are threads of one process (the local backend), every rank has its own kernel pool,
// and ranks × threads per rank can exceed the cores (8 ranks on 2 cores need at least 8 threads).
// Left to the OS, the runnable threads time-slice and evict each other's cache-resident tiles.
// The gate hands out "running slots" instead: a parallel_for takes as many slots as it will use
// (at most its pool's size), runs with that many workers, and returns them; callers that find too
// few free slots wait their turn in arrival order, so the ranks of a ring progress evenly.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <mutex>

namespace usp::detail {

class ThreadPoolGate {
 public:
  // slots <= 0: no limit (acquire never waits).
  explicit ThreadPoolGate(int slots);
  ThreadPoolGate(const ThreadPoolGate&) = delete;
  ThreadPoolGate& operator=(const ThreadPoolGate&) = delete;

  // 0 when unlimited.
  int slots() const { return slots_; }

  // Takes min(want, slots()) slots (want >= 1), waiting until they are free and every earlier
  // caller has been served; returns how many were taken (want itself when unlimited).
  int acquire(int want);
  void release(int taken);
  // Callers blocked in acquire right now.
  int waiting();

  // The gate every pool shares by default: USP_CPU_SLOTS slots when that variable is set (0 = no
  // limit), otherwise the hardware concurrency.
  static ThreadPoolGate& process();

 private:
  const int slots_;
  std::mutex m_;
  std::condition_variable cv_;
  int free_ = 0;
  std::uint64_t next_ticket_ = 0;  // handed to each caller of acquire
  std::uint64_t serving_ = 0;      // the ticket whose turn it is
};

inline constexpr const char* kCpuSlotsEnv = "USP_CPU_SLOTS";
inline constexpr int kMaxCpuSlots = 1 << 16;
// The slots of the process gate for the value of USP_CPU_SLOTS (null or empty: the hardware
// concurrency); throws usp::Error naming the variable for anything but a number in range.
int parse_cpu_slots(const char* value);

// Holds slots for a scope.
class GateSlots {
 public:
  GateSlots(ThreadPoolGate* gate, int want)
      : gate_(gate), taken_(gate != nullptr ? gate->acquire(want) : want) {}
  ~GateSlots() {
    if (gate_ != nullptr) gate_->release(taken_);
  }
  GateSlots(const GateSlots&) = delete;
  GateSlots& operator=(const GateSlots&) = delete;
  int taken() const { return taken_; }

 private:
  ThreadPoolGate* gate_;
  int taken_;
};

}  // namespace usp::detail
