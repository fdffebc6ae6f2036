// A small persistent thread pool: parallel_for(n, fn) runs fn(task, worker) for task in [0, n)
// with tasks handed out dynamically. The calling thread works as worker 0, so a pool of one
// thread runs everything inline. Calls from several threads are serialized; a parallel_for issued
// from inside a task runs inline as the calling worker.
//
// Every pool shares a gate (thread_pool_gate.hpp) that bounds the threads running tasks at once
// across the process: a parallel_for issued outside any task first takes up to size() running
// slots and uses only as many workers as it got, so many pools (one per rank thread) on few cores
// take turns instead of time-slicing each other, the pool that has used the gate least first.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "util/thread_pool_gate.hpp"

namespace usp::detail {

class ThreadPool {
 public:
  // threads <= 0: hardware concurrency. gate: the running-slot limit to honour (nullptr: none).
  explicit ThreadPool(int threads, ThreadPoolGate* gate = &ThreadPoolGate::process());
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return size_; }

  // Runs fn(task, worker) for every task in [0, n); worker is in [0, size()) (in [0, slots
  // taken) when the gate limits it). Blocks until all tasks are done. The first exception a task
  // throws is rethrown here (remaining tasks are skipped).
  void parallel_for(std::size_t n, const std::function<void(std::size_t, int)>& fn);

  // Takes the pool's running slots once for a scope (an operation of several parallel_for
  // phases): the parallel_for calls inside it, from the same thread, use those slots instead of
  // returning them to the gate and queueing again between phases, so a rank's kernel call runs
  // through without other ranks' phases interleaved. While a thread holds slots, its parallel_for
  // calls on any pool take none (as calls from inside a task); nested holds and holds from inside
  // a task take nothing more.
  class Hold {
   public:
    explicit Hold(ThreadPool& pool);
    ~Hold();
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    bool outer_;  // this hold took the slots
    GateSlots slots_;
  };

 private:
  void worker_loop(int worker);
  void run_tasks(int worker);

  int size_;
  ThreadPoolGate* gate_;
  GateAccount account_;  // this pool's use of the gate (the gate guards it)
  std::vector<std::thread> threads_;
  std::mutex run_mutex_;  // serializes parallel_for calls

  std::mutex mutex_;
  std::condition_variable wake_;
  std::condition_variable done_;
  std::uint64_t generation_ = 0;
  bool stop_ = false;
  int busy_ = 0;                  // helper threads still working on the current generation
  int active_ = 0;                // workers [0, active_) run the current generation
  std::vector<int> worker_cpus_;  // per worker, the CPU of its slot this generation (-1: none)

  const std::function<void(std::size_t, int)>* fn_ = nullptr;
  std::size_t n_ = 0;
  std::atomic<std::size_t> next_{0};
  std::atomic<bool> failed_{false};
  std::exception_ptr error_;  // guarded by mutex_
};

}  // namespace usp::detail
