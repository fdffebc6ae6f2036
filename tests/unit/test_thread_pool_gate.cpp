// The process-wide running-slot gate of the kernel thread pools (util/thread_pool_gate.hpp).
#include "util/thread_pool_gate.hpp"

#include <gtest/gtest.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "usp/comm.hpp"
#include "usp/error.hpp"
#include "util/cpu_pin.hpp"
#include "util/thread_pool.hpp"

namespace {

using usp::detail::GateSlots;
using usp::detail::PinMode;
using usp::detail::ThreadPool;
using usp::detail::ThreadPoolGate;

// Tracks how many tasks run at once.
struct Concurrency {
  std::atomic<int> now{0}, most{0};
  void task() {
    const int n = now.fetch_add(1) + 1;
    int m = most.load();
    while (n > m && !most.compare_exchange_weak(m, n)) {
    }
    const auto until = std::chrono::steady_clock::now() + std::chrono::microseconds(200);
    while (std::chrono::steady_clock::now() < until) {
    }
    now.fetch_sub(1);
  }
};

void wait_for_waiters(ThreadPoolGate& gate, int n) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (gate.waiting() < n) {
    ASSERT_LT(std::chrono::steady_clock::now(), deadline) << "no caller queued at the gate";
    std::this_thread::yield();
  }
}

// With the gate's only slot held by the test, callers (name, account) queue one after the other;
// then the slot is released. Returns the names in the order the callers got through.
std::string serve_queued(
    ThreadPoolGate& gate,
    std::initializer_list<std::pair<char, usp::detail::GateAccount*>> callers) {
  std::mutex m;
  std::string order;
  std::vector<std::thread> threads;
  int queued = 0;
  for (const auto& [name, account] : callers) {
    threads.emplace_back([&, name = name, account = account] {
      const GateSlots s(&gate, 1, account);
      std::lock_guard g(m);
      order.push_back(name);
    });
    wait_for_waiters(gate, ++queued);
  }
  gate.release(1);
  for (std::thread& t : threads) t.join();
  return order;
}

// `account` takes the gate's only free slot and gives it back after `seconds` of use.
void use_slot(ThreadPoolGate& gate, usp::detail::GateAccount& account, double seconds) {
  ASSERT_EQ(gate.acquire(1, &account), 1);
  gate.release(1, &account, seconds);
}

TEST(UspThreadPoolGate, AcquireIsCappedAtTheSlots) {
  ThreadPoolGate gate(2);
  EXPECT_EQ(gate.slots(), 2);
  EXPECT_EQ(gate.acquire(5), 2);
  gate.release(2);
  EXPECT_EQ(gate.acquire(1), 1);
  EXPECT_EQ(gate.acquire(1), 1);
  gate.release(1);
  gate.release(1);
  ThreadPoolGate unlimited(0);
  EXPECT_EQ(unlimited.slots(), 0);
  EXPECT_EQ(unlimited.acquire(7), 7);
  unlimited.release(7);
}

TEST(UspThreadPoolGate, CallersAreServedInArrivalOrder) {
  ThreadPoolGate gate(1);
  ASSERT_EQ(gate.acquire(1), 1);  // the only slot: a and b queue behind it
  EXPECT_EQ(serve_queued(gate, {{'a', nullptr}, {'b', nullptr}}), "ab");
  EXPECT_EQ(gate.waiting(), 0);
}

TEST(UspThreadPoolGate, TheLeastUsedAccountGoesFirst) {
  ThreadPoolGate gate(1);
  usp::detail::GateAccount busy, idle;
  // busy has held a slot for 5 s; idle never has.
  use_slot(gate, busy, 5.0);
  EXPECT_DOUBLE_EQ(busy.used, 5.0);
  ASSERT_EQ(gate.acquire(1), 1);  // hold the only slot while both queue
  EXPECT_EQ(serve_queued(gate, {{'b', &busy}, {'i', &idle}}), "ib");  // busy queues first
  // Served after busy (key 5), idle's account was raised to that floor: no credit for idling.
  EXPECT_GE(busy.used, 5.0);
  EXPECT_GE(idle.used, 0.0);
  EXPECT_EQ(gate.waiting(), 0);
}

TEST(UspThreadPoolGate, ACallerBackFromAPauseQueuesNoFurtherAheadThanTheLastServed) {
  ThreadPoolGate gate(1);
  usp::detail::GateAccount a, late;
  use_slot(gate, a, 3.0);
  use_slot(gate, a, 1.0);                // served at key 3: the floor is now 3
  ASSERT_EQ(gate.acquire(1, &late), 1);  // late has used nothing: raised to the floor
  EXPECT_DOUBLE_EQ(late.used, 3.0);
  gate.release(1, &late, 0.5);
  EXPECT_DOUBLE_EQ(late.used, 3.5);
}

TEST(UspThreadPoolGate, PoolsSharingOneSlotNeverRunTwoTasksAtOnce) {
  for (int slots : {1, 2}) {
    ThreadPoolGate gate(slots);
    Concurrency c;
    std::atomic<int> done{0};
    std::vector<std::thread> callers;
    for (int r = 0; r < 3; ++r)
      callers.emplace_back([&] {
        ThreadPool pool(2, &gate);  // one pool per "rank", as with the local backend
        for (int round = 0; round < 5; ++round)
          pool.parallel_for(16, [&](std::size_t, int) {
            c.task();
            done.fetch_add(1);
          });
      });
    for (auto& t : callers) t.join();
    EXPECT_EQ(done.load(), 3 * 5 * 16) << "slots " << slots;
    EXPECT_LE(c.most.load(), slots) << "slots " << slots;
    EXPECT_GE(c.most.load(), 1);
  }
}

TEST(UspThreadPoolGate, APoolUsesOnlyTheWorkersItHasSlotsFor) {
  ThreadPoolGate gate(1);
  ThreadPool pool(3, &gate);
  EXPECT_EQ(pool.size(), 3);
  const auto caller = std::this_thread::get_id();
  std::atomic<int> elsewhere{0}, not_worker0{0}, n{0};
  pool.parallel_for(64, [&](std::size_t, int worker) {
    if (std::this_thread::get_id() != caller) elsewhere.fetch_add(1);
    if (worker != 0) not_worker0.fetch_add(1);
    n.fetch_add(1);
  });
  EXPECT_EQ(n.load(), 64);
  EXPECT_EQ(elsewhere.load(), 0);
  EXPECT_EQ(not_worker0.load(), 0);
  EXPECT_EQ(gate.acquire(1), 1);  // the slot came back
  gate.release(1);
}

TEST(UspThreadPoolGate, NestedCallIntoAnotherPoolTakesNoSlot) {
  ThreadPoolGate gate(1);
  ThreadPool outer(2, &gate), inner(2, &gate);
  std::atomic<int> n{0};
  outer.parallel_for(4, [&](std::size_t, int) {
    inner.parallel_for(3, [&](std::size_t, int) { n.fetch_add(1); });
  });
  EXPECT_EQ(n.load(), 12);
}

TEST(UspThreadPoolGate, AHoldKeepsItsSlotsAcrossPhases) {
  // One slot: phases inside a hold must not queue for it again (they would wait for themselves),
  // and another pool's call waits until the hold ends, not between the phases.
  ThreadPoolGate gate(1);
  ThreadPool mine(2, &gate), other(1, &gate);
  std::mutex m;
  std::vector<char> order;
  auto note = [&](char c) {
    std::lock_guard g(m);
    order.push_back(c);
  };
  std::thread rival;
  {
    const ThreadPool::Hold hold(mine);
    rival = std::thread([&] { other.parallel_for(1, [&](std::size_t, int) { note('o'); }); });
    wait_for_waiters(gate, 1);  // the rival queues behind the hold
    std::atomic<int> workers_seen{0};
    for (int phase = 0; phase < 3; ++phase) {
      mine.parallel_for(8, [&](std::size_t, int worker) {
        if (worker != 0) workers_seen.fetch_add(1);
      });
      note('m');
      EXPECT_EQ(gate.waiting(), 1) << "phase " << phase << ": the rival still waits";
    }
    EXPECT_EQ(workers_seen.load(), 0) << "one slot held: the caller alone runs the tasks";
    const ThreadPool::Hold nested(mine);  // takes nothing more
    mine.parallel_for(2, [&](std::size_t, int) {});
  }
  rival.join();
  ASSERT_EQ(order.size(), 4u);
  EXPECT_EQ(std::string(order.begin(), order.end()), "mmmo");
  EXPECT_EQ(gate.waiting(), 0);
  EXPECT_EQ(gate.acquire(1), 1);  // the slot came back
  gate.release(1);
}

// The CPUs the calling thread may run on.
std::vector<int> my_cpus() {
  cpu_set_t set;
  CPU_ZERO(&set);
  EXPECT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
  std::vector<int> cpus;
  for (int c = 0; c < CPU_SETSIZE; ++c)
    if (CPU_ISSET(c, &set)) cpus.push_back(c);
  return cpus;
}

TEST(UspThreadPoolGate, PinnedSlotsComeWithDistinctCpus) {
  // Made-up CPU numbers: the gate only hands them out (nothing is pinned here).
  ThreadPoolGate gate(2, PinMode::always, {5, 9, 11});
  EXPECT_TRUE(gate.pinning());
  std::vector<int> a, b, c;
  ASSERT_EQ(gate.acquire(1, nullptr, &a), 1);
  ASSERT_EQ(gate.acquire(1, nullptr, &b), 1);
  ASSERT_EQ(a.size(), 1u);
  ASSERT_EQ(b.size(), 1u);
  EXPECT_NE(a[0], b[0]);
  for (int cpu : {a[0], b[0]}) EXPECT_TRUE(cpu == 5 || cpu == 9) << cpu << ": only 2 slots";
  const int freed = a[0];
  gate.release(1, nullptr, 0, &a);
  ASSERT_EQ(gate.acquire(1, nullptr, &c), 1);
  EXPECT_EQ(c, std::vector<int>{freed}) << "the CPU given back is the one free";
  gate.release(1, nullptr, 0, &c);
  gate.release(1, nullptr, 0, &b);
  std::vector<int> both;
  ASSERT_EQ(gate.acquire(2, nullptr, &both), 2);
  std::sort(both.begin(), both.end());
  EXPECT_EQ(both, (std::vector<int>{5, 9}));
  gate.release(2, nullptr, 0, &both);
}

TEST(UspThreadPoolGate, SlotsArePinnedOnlyWhenAskedAndPossible) {
  std::vector<int> cpus{0, 1};
  auto pinned = [&](ThreadPoolGate& gate) {
    std::vector<int> got{42};
    const int n = gate.acquire(1, nullptr, &got);
    gate.release(n, nullptr, 0, &got);
    return !got.empty();
  };
  ThreadPoolGate never(2, PinMode::never, cpus), too_many(3, PinMode::always, cpus),
      unlimited(0, PinMode::always, cpus), ranks(2, PinMode::with_local_ranks, cpus);
  EXPECT_FALSE(pinned(never));
  EXPECT_FALSE(pinned(too_many)) << "3 slots on 2 CPUs: no CPU of its own for each";
  EXPECT_FALSE(pinned(unlimited));
  EXPECT_FALSE(ranks.pinning());
  EXPECT_FALSE(pinned(ranks)) << "no local ranks run";
  {
    const ThreadPoolGate::LocalRanks running(ranks);
    EXPECT_TRUE(ranks.pinning());
    EXPECT_TRUE(pinned(ranks));
  }
  EXPECT_FALSE(ranks.pinning());
  EXPECT_FALSE(pinned(ranks));
}

TEST(UspThreadPoolGate, AHolderRunsOnItsSlotsCpuAndGetsItsCpusBack) {
  const std::vector<int> cpus = usp::detail::allowed_cpus();
  EXPECT_EQ(cpus, my_cpus());
  if (cpus.size() < 2) GTEST_SKIP() << "needs 2 CPUs, this thread may use " << cpus.size();
  ThreadPoolGate gate(2, PinMode::always, cpus);
  // Two threads hold a slot each at the same time: each is pinned to one CPU, not the same one.
  std::mutex m;
  std::condition_variable cv;
  int inside = 0;
  std::vector<std::vector<int>> seen(2), after(2);
  auto holder = [&](int i) {
    {
      const GateSlots s(&gate, 1);
      seen[static_cast<std::size_t>(i)] = my_cpus();
      EXPECT_EQ(seen[static_cast<std::size_t>(i)], std::vector<int>{s.cpu(0)});
      std::unique_lock lk(m);
      ++inside;
      cv.notify_all();
      cv.wait(lk, [&] { return inside == 2; });
    }
    after[static_cast<std::size_t>(i)] = my_cpus();
  };
  std::thread a(holder, 0), b(holder, 1);
  a.join();
  b.join();
  ASSERT_EQ(seen[0].size(), 1u);
  ASSERT_EQ(seen[1].size(), 1u);
  EXPECT_NE(seen[0][0], seen[1][0]);
  EXPECT_EQ(after[0], cpus);
  EXPECT_EQ(after[1], cpus);

  // A pool's helper runs on the second slot's CPU.
  ThreadPool pool(2, &gate);
  std::vector<std::vector<int>> worker_cpus(2);
  std::atomic<int> arrived{0};
  pool.parallel_for(2, [&](std::size_t, int worker) {
    worker_cpus[static_cast<std::size_t>(worker)] = my_cpus();
    arrived.fetch_add(1);  // keep both workers in: each runs one task
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (arrived.load() < 2 && std::chrono::steady_clock::now() < deadline)
      std::this_thread::yield();
  });
  ASSERT_EQ(worker_cpus[0].size(), 1u);
  ASSERT_EQ(worker_cpus[1].size(), 1u);
  EXPECT_NE(worker_cpus[0][0], worker_cpus[1][0]);
  EXPECT_EQ(my_cpus(), cpus) << "the caller got its CPUs back";
}

TEST(UspThreadPoolGate, LocalRanksTurnOnPinningOfTheProcessGate) {
  ThreadPoolGate& gate = ThreadPoolGate::process();
  const bool possible =
      usp::detail::parse_cpu_pin(std::getenv("USP_CPU_PIN")) == PinMode::with_local_ranks &&
      gate.slots() > 0 && static_cast<std::size_t>(gate.slots()) <= my_cpus().size();
  if (!possible) GTEST_SKIP() << "USP_CPU_PIN / USP_CPU_SLOTS rule pinning out here";
  EXPECT_FALSE(gate.pinning());
  std::atomic<int> pinned{0};
  usp::run_local(2, [&](usp::Communicator&) {
    if (gate.pinning()) pinned.fetch_add(1);
  });
  EXPECT_EQ(pinned.load(), 2);
  EXPECT_FALSE(gate.pinning());
  usp::run_local(1, [&](usp::Communicator&) { EXPECT_FALSE(gate.pinning()) << "one rank"; });
}

TEST(UspThreadPoolGate, PinEnvironmentValueIsParsedOrRejected) {
  EXPECT_EQ(usp::detail::parse_cpu_pin(nullptr), PinMode::with_local_ranks);
  EXPECT_EQ(usp::detail::parse_cpu_pin(""), PinMode::with_local_ranks);
  EXPECT_EQ(usp::detail::parse_cpu_pin("0"), PinMode::never);
  EXPECT_EQ(usp::detail::parse_cpu_pin("1"), PinMode::always);
  for (const char* bad : {"yes", "2", "-1", "01"}) {
    try {
      usp::detail::parse_cpu_pin(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const usp::Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("USP_CPU_PIN='") + bad + "'"),
                std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("must be 0"), std::string::npos) << e.what();
    }
  }
}

TEST(UspThreadPoolGate, EnvironmentValueIsParsedOrRejected) {
  EXPECT_EQ(usp::detail::parse_cpu_slots("3"), 3);
  EXPECT_EQ(usp::detail::parse_cpu_slots("0"), 0);
  EXPECT_EQ(usp::detail::parse_cpu_slots(nullptr),
            static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
  EXPECT_EQ(usp::detail::parse_cpu_slots(""), usp::detail::parse_cpu_slots(nullptr));
  for (const char* bad : {"two", "-1", "3x", "99999999"}) {
    try {
      usp::detail::parse_cpu_slots(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const usp::Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("USP_CPU_SLOTS='") + bad + "'"),
                std::string::npos)
          << e.what();
      EXPECT_NE(std::string(e.what()).find("whole number in [0, 65536]"), std::string::npos)
          << e.what();
    }
  }
}

}  // namespace
