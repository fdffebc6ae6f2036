// A process-wide limit on the threads that run thread-pool tasks at once.
//
// When ranks are threads of one process (the local backend), every rank has its own kernel pool,
// and ranks × threads per rank can exceed the cores (8 ranks on 2 cores need at least 8 threads).
// Left to the OS, the runnable threads time-slice and evict each other's cache-resident tiles.
// The gate hands out "running slots" instead: a parallel_for takes as many slots as it will use
// (at most its pool's size), runs with that many workers, and returns them. Callers that find too
// few free slots queue; the one whose pool has used the fewest slot-seconds goes first (arrival
// order among equals), so ranks whose kernel calls are short are not starved by ranks whose calls
// are long, and the ranks of a ring progress evenly. A caller returning after a pause (waiting
// for a message) is queued no further ahead than the caller served last, like a scheduler's
// virtual time.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

namespace usp::detail {

// The slot-seconds one pool has used; read and written by the gate under its lock only.
struct GateAccount {
  double used = 0;
};

class ThreadPoolGate {
 public:
  // slots <= 0: no limit (acquire never waits).
  explicit ThreadPoolGate(int slots);
  ThreadPoolGate(const ThreadPoolGate&) = delete;
  ThreadPoolGate& operator=(const ThreadPoolGate&) = delete;

  // 0 when unlimited.
  int slots() const { return slots_; }

  // Takes min(want, slots()) slots (want >= 1), waiting until they are free and it is this
  // caller's turn (least used account first, then arrival); returns how many were taken (want
  // itself when unlimited). account may be null (counted as having used the least).
  int acquire(int want, GateAccount* account = nullptr);
  // Returns the slots and charges taken × seconds to the account.
  void release(int taken, GateAccount* account = nullptr, double seconds = 0);
  // Callers blocked in acquire right now.
  int waiting();

  // The gate every pool shares by default: USP_CPU_SLOTS slots when that variable is set (0 = no
  // limit), otherwise the hardware concurrency.
  static ThreadPoolGate& process();

 private:
  struct Waiter {
    double key;  // the account's use when it queued, at least floor_
    std::uint64_t ticket;
  };
  bool first(const Waiter& w) const;

  const int slots_;
  std::mutex m_;
  std::condition_variable cv_;
  int free_ = 0;
  std::uint64_t next_ticket_ = 0;
  std::vector<Waiter> waiters_;
  double floor_ = 0;  // the key of the caller served last (never decreases)
};

inline constexpr const char* kCpuSlotsEnv = "USP_CPU_SLOTS";
inline constexpr int kMaxCpuSlots = 1 << 16;
// The slots of the process gate for the value of USP_CPU_SLOTS (null or empty: the hardware
// concurrency); throws usp::Error naming the variable for anything but a number in range.
int parse_cpu_slots(const char* value);

// Holds slots for a scope and charges the time held to the account.
class GateSlots {
 public:
  GateSlots(ThreadPoolGate* gate, int want, GateAccount* account = nullptr)
      : gate_(gate),
        account_(account),
        taken_(gate != nullptr ? gate->acquire(want, account) : want),
        start_(std::chrono::steady_clock::now()) {}
  ~GateSlots() {
    if (gate_ == nullptr) return;
    const std::chrono::duration<double> held = std::chrono::steady_clock::now() - start_;
    gate_->release(taken_, account_, held.count());
  }
  GateSlots(const GateSlots&) = delete;
  GateSlots& operator=(const GateSlots&) = delete;
  int taken() const { return taken_; }

 private:
  ThreadPoolGate* gate_;
  GateAccount* account_;
  int taken_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace usp::detail
