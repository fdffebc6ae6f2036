#include "util/thread_pool.hpp"

#include <algorithm>

namespace usp::detail {

namespace {
// The pool and worker index of the task this thread is running (null / -1 outside tasks).
thread_local const ThreadPool* t_pool = nullptr;
thread_local int t_worker = -1;
// The running slots a Hold on this thread took (0: none), and the Hold's slots.
thread_local int t_held = 0;
thread_local const GateSlots* t_held_slots = nullptr;
}  // namespace

ThreadPool::ThreadPool(int threads, ThreadPoolGate* gate) : gate_(gate) {
  if (threads <= 0) threads = static_cast<int>(std::thread::hardware_concurrency());
  size_ = threads < 1 ? 1 : threads;
  worker_cpus_.assign(static_cast<std::size_t>(size_), -1);
  threads_.reserve(static_cast<std::size_t>(size_ - 1));
  for (int w = 1; w < size_; ++w) threads_.emplace_back([this, w] { worker_loop(w); });
}

ThreadPool::~ThreadPool() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  for (auto& t : threads_) t.join();
}

void ThreadPool::run_tasks(int worker) {
  const ThreadPool* outer_pool = t_pool;
  const int outer = t_worker;
  t_pool = this;
  t_worker = worker;
  while (!failed_.load(std::memory_order_relaxed)) {
    const std::size_t i = next_.fetch_add(1, std::memory_order_relaxed);
    if (i >= n_) break;
    try {
      (*fn_)(i, worker);
    } catch (...) {
      std::lock_guard<std::mutex> lock(mutex_);
      if (!error_) error_ = std::current_exception();
      failed_.store(true, std::memory_order_relaxed);
    }
  }
  t_pool = outer_pool;
  t_worker = outer;
}

void ThreadPool::worker_loop(int worker) {
  std::uint64_t seen = 0;
  int cpu = -1;
  while (true) {
    {
      std::unique_lock<std::mutex> lock(mutex_);
      wake_.wait(lock, [&] { return stop_ || generation_ != seen; });
      if (stop_) return;
      seen = generation_;
      if (worker >= active_) continue;  // not needed this time: fewer slots than workers
      cpu = worker_cpus_[static_cast<std::size_t>(worker)];
    }
    place_worker(cpu);  // on its slot's CPU when the gate pins slots
    run_tasks(worker);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (--busy_ == 0) done_.notify_one();
    }
  }
}

void ThreadPool::parallel_for(std::size_t n, const std::function<void(std::size_t, int)>& fn) {
  if (n == 0) return;
  if (t_pool == this) {
    // Nested call from inside a task: run inline as the same worker.
    for (std::size_t i = 0; i < n; ++i) fn(i, t_worker);
    return;
  }
  // Slots are taken before the pool, so a caller never holds the pool while it waits for the
  // gate. A call from inside another pool's task takes none: its thread already runs on slots;
  // neither does a call inside a Hold, which took them for the whole operation.
  const int want = static_cast<int>(std::min<std::size_t>(n, static_cast<std::size_t>(size_)));
  const GateSlots slots(t_pool == nullptr && t_held == 0 ? gate_ : nullptr, want, &account_);
  std::lock_guard<std::mutex> run_lock(run_mutex_);
  const int active = std::min(t_held > 0 ? t_held : slots.taken(), want);
  const GateSlots& placed = t_held > 0 ? *t_held_slots : slots;
  if (active == 1) {
    const ThreadPool* outer_pool = t_pool;
    const int outer = t_worker;
    t_pool = this;
    t_worker = 0;
    try {
      for (std::size_t i = 0; i < n; ++i) fn(i, 0);
    } catch (...) {
      t_pool = outer_pool;
      t_worker = outer;
      throw;
    }
    t_pool = outer_pool;
    t_worker = outer;
    return;
  }
  {
    std::lock_guard<std::mutex> lock(mutex_);
    fn_ = &fn;
    n_ = n;
    next_.store(0, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    error_ = nullptr;
    active_ = active;
    busy_ = active - 1;
    for (int w = 1; w < active; ++w) worker_cpus_[static_cast<std::size_t>(w)] = placed.cpu(w);
    ++generation_;
  }
  wake_.notify_all();
  run_tasks(0);
  std::exception_ptr err;
  {
    std::unique_lock<std::mutex> lock(mutex_);
    done_.wait(lock, [&] { return busy_ == 0; });
    fn_ = nullptr;
    err = error_;
    error_ = nullptr;
  }
  if (err) std::rethrow_exception(err);
}

ThreadPool::Hold::Hold(ThreadPool& pool)
    : outer_(t_pool == nullptr && t_held == 0),
      slots_(outer_ ? pool.gate_ : nullptr, pool.size_, &pool.account_) {
  if (outer_) {
    t_held = slots_.taken();
    t_held_slots = &slots_;
  }
}

ThreadPool::Hold::~Hold() {
  if (outer_) {
    t_held = 0;
    t_held_slots = nullptr;
  }
}

}  // namespace usp::detail
