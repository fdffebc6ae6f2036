#include "util/thread_pool_gate.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include "usp/error.hpp"

namespace usp::detail {

ThreadPoolGate::ThreadPoolGate(int slots) : slots_(std::max(0, slots)), free_(std::max(0, slots)) {}

bool ThreadPoolGate::first(const Waiter& w) const {
  for (const Waiter& o : waiters_)
    if (o.key < w.key || (o.key == w.key && o.ticket < w.ticket)) return false;
  return true;
}

int ThreadPoolGate::acquire(int want, GateAccount* account) {
  want = std::max(1, want);
  if (slots_ == 0) return want;
  const int take = std::min(want, slots_);
  std::unique_lock lk(m_);
  const Waiter me{std::max(account != nullptr ? account->used : 0.0, floor_), next_ticket_++};
  waiters_.push_back(me);
  cv_.wait(lk, [&] { return free_ >= take && first(me); });
  waiters_.erase(std::find_if(waiters_.begin(), waiters_.end(),
                              [&](const Waiter& w) { return w.ticket == me.ticket; }));
  free_ -= take;
  floor_ = std::max(floor_, me.key);
  if (account != nullptr) account->used = me.key;
  lk.unlock();
  cv_.notify_all();  // the next in line may fit in what is left
  return take;
}

void ThreadPoolGate::release(int taken, GateAccount* account, double seconds) {
  if (slots_ == 0) return;
  {
    std::lock_guard g(m_);
    free_ += taken;
    if (account != nullptr) account->used += seconds * taken;
  }
  cv_.notify_all();
}

int ThreadPoolGate::waiting() {
  std::lock_guard g(m_);
  return static_cast<int>(waiters_.size());
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
