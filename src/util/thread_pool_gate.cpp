#include "util/thread_pool_gate.hpp"

#include <algorithm>
#include <cstdlib>
#include <string>
#include <thread>

#include "usp/error.hpp"

namespace usp::detail {

namespace {
// The place this thread's last slot was pinned to: taken again when free, so that a rank's calls
// keep finding their data in the same core's caches.
thread_local int t_last_place = -1;
}  // namespace

ThreadPoolGate::ThreadPoolGate(int slots, PinMode pin, std::vector<int> cpus)
    : slots_(std::max(0, slots)), pin_(pin), free_(std::max(0, slots)) {
  if (pin_ != PinMode::never && slots_ > 0 && cpus.size() >= static_cast<std::size_t>(slots_)) {
    cpus.resize(static_cast<std::size_t>(slots_));
    cpus_ = std::move(cpus);
    cpu_taken_.assign(cpus_.size(), 0);
  }
}

bool ThreadPoolGate::pinning_locked() const {
  return !cpus_.empty() &&
         (pin_ == PinMode::always || (pin_ == PinMode::with_local_ranks && local_ranks_ > 0));
}

bool ThreadPoolGate::pinning() {
  std::lock_guard g(m_);
  return pinning_locked();
}

std::size_t ThreadPoolGate::place_of(int cpu) const {
  return static_cast<std::size_t>(std::find(cpus_.begin(), cpus_.end(), cpu) - cpus_.begin());
}

void ThreadPoolGate::claim_cpus(int n, std::vector<int>& cpus) {
  // Pinned holders hold at most slots_ places, so n free ones exist.
  auto take = [&](std::size_t place) {
    cpu_taken_[place] = 1;
    cpus.push_back(cpus_[place]);
  };
  const auto last = static_cast<std::size_t>(t_last_place);
  if (t_last_place >= 0 && last < cpus_.size() && !cpu_taken_[last]) take(last);
  for (std::size_t place = 0; place < cpus_.size() && cpus.size() < static_cast<std::size_t>(n);
       ++place)
    if (!cpu_taken_[place]) take(place);
  t_last_place = static_cast<int>(place_of(cpus.front()));
}

bool ThreadPoolGate::first(const Waiter& w) const {
  for (const Waiter& o : waiters_)
    if (o.key < w.key || (o.key == w.key && o.ticket < w.ticket)) return false;
  return true;
}

int ThreadPoolGate::acquire(int want, GateAccount* account, std::vector<int>* cpus) {
  want = std::max(1, want);
  if (cpus != nullptr) cpus->clear();
  if (slots_ == 0) return want;
  const int take = std::min(want, slots_);
  std::unique_lock lk(m_);
  const Waiter me{std::max(account != nullptr ? account->used : 0.0, floor_), next_ticket_++};
  waiters_.push_back(me);
  cv_.wait(lk, [&] { return free_ >= take && first(me); });
  waiters_.erase(std::find_if(waiters_.begin(), waiters_.end(),
                              [&](const Waiter& w) { return w.ticket == me.ticket; }));
  free_ -= take;
  if (cpus != nullptr && pinning_locked()) claim_cpus(take, *cpus);
  floor_ = std::max(floor_, me.key);
  if (account != nullptr) account->used = me.key;
  lk.unlock();
  cv_.notify_all();  // the next in line may fit in what is left
  return take;
}

void ThreadPoolGate::release(int taken, GateAccount* account, double seconds,
                             const std::vector<int>* cpus) {
  if (slots_ == 0) return;
  {
    std::lock_guard g(m_);
    free_ += taken;
    if (cpus != nullptr)
      for (int cpu : *cpus) cpu_taken_[place_of(cpu)] = 0;
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

PinMode parse_cpu_pin(const char* value) {
  if (value == nullptr || *value == '\0') return PinMode::with_local_ranks;
  const std::string v(value);
  if (v == "0") return PinMode::never;
  if (v == "1") return PinMode::always;
  USP_FAIL(invalid_argument, kCpuPinEnv, "='", v,
           "' must be 0 (never pin kernel threads to CPUs), 1 (always, while they hold a running "
           "slot) or unset (while ranks run as threads of this process)");
}

ThreadPoolGate::LocalRanks::LocalRanks(ThreadPoolGate& gate) : gate_(gate) {
  std::lock_guard g(gate_.m_);
  ++gate_.local_ranks_;
}

ThreadPoolGate::LocalRanks::~LocalRanks() {
  std::lock_guard g(gate_.m_);
  --gate_.local_ranks_;
}

ThreadPoolGate& ThreadPoolGate::process() {
  static ThreadPoolGate gate(parse_cpu_slots(std::getenv(kCpuSlotsEnv)),
                             parse_cpu_pin(std::getenv(kCpuPinEnv)));
  return gate;
}

}  // namespace usp::detail
