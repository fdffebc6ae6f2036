#include "util/thread_pool_gate.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include "usp/error.hpp"

namespace usp::detail {

ThreadPoolGate::ThreadPoolGate(int slots) : slots_(std::max(0, slots)), free_(std::max(0, slots)) {}

int ThreadPoolGate::acquire(int want) {
  want = std::max(1, want);
  if (slots_ == 0) return want;
  const int take = std::min(want, slots_);
  std::unique_lock lk(m_);
  const std::uint64_t ticket = next_ticket_++;
  cv_.wait(lk, [&] { return ticket == serving_ && free_ >= take; });
  free_ -= take;
  ++serving_;
  lk.unlock();
  cv_.notify_all();  // the next ticket may fit in what is left
  return take;
}

void ThreadPoolGate::release(int taken) {
  if (slots_ == 0) return;
  {
    std::lock_guard g(m_);
    free_ += taken;
  }
  cv_.notify_all();
}

int ThreadPoolGate::waiting() {
  std::lock_guard g(m_);
  return static_cast<int>(next_ticket_ - serving_);
}

int parse_cpu_slots(const char* value) {
  if (value == nullptr || *value == '\0')
    return std::max(1, static_cast<int>(std::thread::hardware_concurrency()));
  char* end = nullptr;
  const long v = std::strtol(value, &end, 10);
  USP_CHECK_ARG(end != value && *end == '\0' && v >= 0 && v <= kMaxCpuSlots, kCpuSlotsEnv, "='",
                value, "' must be a whole number in [0, ", kMaxCpuSlots,
                "] (the most kernel threads that compute at once; 0 = no limit)");
  return static_cast<int>(v);
}

ThreadPoolGate& ThreadPoolGate::process() {
  static ThreadPoolGate gate(parse_cpu_slots(std::getenv(kCpuSlotsEnv)));
  return gate;
}

}  // namespace usp::detail
