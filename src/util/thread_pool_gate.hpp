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
//
// While ranks run as threads of this process (run_local with more than one rank), the gate also
// gives each slot a CPU of its own and pins the thread that takes it there for the call: the OS
// otherwise leaves two slot holders queued on one core for tens of milliseconds at a time while
// another core idles (measured: 1.85 instead of 1.98 busy cores of 2 for 8 ranks).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

#include "util/cpu_pin.hpp"

namespace usp::detail {

// The slot-seconds one pool has used; read and written by the gate under its lock only.
struct GateAccount {
  double used = 0;
};

// When slot holders are pinned to CPUs: never, while local ranks run (the default), or always.
enum class PinMode { never, with_local_ranks, always };

class ThreadPoolGate {
 public:
  // slots <= 0: no limit (acquire never waits). Slots are pinned to the first `slots` of `cpus`
  // (as pin says) only when there are at least as many CPUs as slots.
  explicit ThreadPoolGate(int slots, PinMode pin = PinMode::never,
                          std::vector<int> cpus = allowed_cpus());
  ThreadPoolGate(const ThreadPoolGate&) = delete;
  ThreadPoolGate& operator=(const ThreadPoolGate&) = delete;

  // 0 when unlimited.
  int slots() const { return slots_; }

  // Takes min(want, slots()) slots (want >= 1), waiting until they are free and it is this
  // caller's turn (least used account first, then arrival); returns how many were taken (want
  // itself when unlimited). account may be null (counted as having used the least).
  // When cpus is given and slots are pinned now, it receives one distinct CPU per slot taken
  // (else it is left empty); hand it back to release.
  int acquire(int want, GateAccount* account = nullptr, std::vector<int>* cpus = nullptr);
  // Returns the slots (and their CPUs) and charges taken × seconds to the account.
  void release(int taken, GateAccount* account = nullptr, double seconds = 0,
               const std::vector<int>* cpus = nullptr);
  // Callers blocked in acquire right now.
  int waiting();
  // Whether a slot taken now would come with a CPU.
  bool pinning();

  // Marks, for its lifetime, that ranks run as threads of this process (PinMode::with_local_ranks).
  class LocalRanks {
   public:
    explicit LocalRanks(ThreadPoolGate& gate);
    ~LocalRanks();
    LocalRanks(const LocalRanks&) = delete;
    LocalRanks& operator=(const LocalRanks&) = delete;

   private:
    ThreadPoolGate& gate_;
  };

  // The gate every pool shares by default: USP_CPU_SLOTS slots when that variable is set (0 = no
  // limit), otherwise the hardware concurrency; slots pinned as USP_CPU_PIN says.
  static ThreadPoolGate& process();

 private:
  struct Waiter {
    double key;  // the account's use when it queued, at least floor_
    std::uint64_t ticket;
  };
  bool first(const Waiter& w) const;
  bool pinning_locked() const;
  void claim_cpus(int n, std::vector<int>& cpus);
  std::size_t place_of(int cpu) const;  // the index of cpu in cpus_

  const int slots_;
  const PinMode pin_;
  std::vector<int> cpus_;        // the CPU of each pinnable place; empty: never pinned
  std::vector<char> cpu_taken_;  // per place of cpus_
  int local_ranks_ = 0;          // LocalRanks alive
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
inline constexpr const char* kCpuPinEnv = "USP_CPU_PIN";
// The pin mode of the process gate for the value of USP_CPU_PIN: null or empty
// with_local_ranks, "0" never, "1" always; throws usp::Error naming the variable otherwise.
PinMode parse_cpu_pin(const char* value);

// Holds slots for a scope and charges the time held to the account. When the slots come with
// CPUs, the calling thread (worker 0) is pinned to the first for the scope; cpu(w) is worker w's.
class GateSlots {
 public:
  GateSlots(ThreadPoolGate* gate, int want, GateAccount* account = nullptr)
      : gate_(gate),
        account_(account),
        taken_(gate != nullptr ? gate->acquire(want, account, &cpus_) : want),
        start_(std::chrono::steady_clock::now()),
        pin_(cpus_.empty() ? -1 : cpus_[0]) {}
  ~GateSlots() {
    if (gate_ == nullptr) return;
    const std::chrono::duration<double> held = std::chrono::steady_clock::now() - start_;
    gate_->release(taken_, account_, held.count(), &cpus_);
  }
  GateSlots(const GateSlots&) = delete;
  GateSlots& operator=(const GateSlots&) = delete;
  int taken() const { return taken_; }
  // The CPU of worker w's slot; -1 when the slots came without CPUs.
  int cpu(int worker) const {
    return worker >= 0 && static_cast<std::size_t>(worker) < cpus_.size()
               ? cpus_[static_cast<std::size_t>(worker)]
               : -1;
  }

 private:
  ThreadPoolGate* gate_;
  GateAccount* account_;
  std::vector<int> cpus_;  // declared before taken_: acquire fills it
  int taken_;
  std::chrono::steady_clock::time_point start_;
  ScopedPin pin_;
};

}  // namespace usp::detail
