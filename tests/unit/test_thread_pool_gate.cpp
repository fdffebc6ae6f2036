// The process-wide running-slot gate of the kernel thread pools (util/thread_pool_gate.hpp).
#include "util/thread_pool_gate.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "usp/error.hpp"
#include "util/thread_pool.hpp"

namespace {

using usp::detail::GateSlots;
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
  std::mutex m;
  std::vector<char> order;
  auto caller = [&](char name) {
    const GateSlots s(&gate, 1);
    std::lock_guard g(m);
    order.push_back(name);
  };
  std::thread a(caller, 'a');
  wait_for_waiters(gate, 1);
  std::thread b(caller, 'b');
  wait_for_waiters(gate, 2);
  gate.release(1);
  a.join();
  b.join();
  ASSERT_EQ(order.size(), 2u);
  EXPECT_EQ(order[0], 'a');
  EXPECT_EQ(order[1], 'b');
  EXPECT_EQ(gate.waiting(), 0);
}

TEST(UspThreadPoolGate, TheLeastUsedAccountGoesFirst) {
  ThreadPoolGate gate(1);
  usp::detail::GateAccount busy, idle;
  // busy has held a slot for 5 s; idle never has.
  ASSERT_EQ(gate.acquire(1, &busy), 1);
  gate.release(1, &busy, 5.0);
  EXPECT_DOUBLE_EQ(busy.used, 5.0);
  ASSERT_EQ(gate.acquire(1), 1);  // hold the only slot while both queue
  std::mutex m;
  std::vector<char> order;
  auto caller = [&](char name, usp::detail::GateAccount* account) {
    const GateSlots s(&gate, 1, account);
    std::lock_guard g(m);
    order.push_back(name);
  };
  std::thread b(caller, 'b', &busy);  // queues first
  wait_for_waiters(gate, 1);
  std::thread i(caller, 'i', &idle);
  wait_for_waiters(gate, 2);
  gate.release(1);
  b.join();
  i.join();
  ASSERT_EQ(order.size(), 2u);
  EXPECT_EQ(order[0], 'i');
  EXPECT_EQ(order[1], 'b');
  // Served after busy (key 5), idle's account was raised to that floor: no credit for idling.
  EXPECT_GE(busy.used, 5.0);
  EXPECT_GE(idle.used, 0.0);
  EXPECT_EQ(gate.waiting(), 0);
}

TEST(UspThreadPoolGate, ACallerBackFromAPauseQueuesNoFurtherAheadThanTheLastServed) {
  ThreadPoolGate gate(1);
  usp::detail::GateAccount a, late;
  ASSERT_EQ(gate.acquire(1, &a), 1);
  gate.release(1, &a, 3.0);
  ASSERT_EQ(gate.acquire(1, &a), 1);  // served at key 3: the floor is now 3
  gate.release(1, &a, 1.0);
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
