// What is particular to the local backend: eager sends and their buffers, nested splits of eight
// ranks, its timeout and failure messages (a peer that returned, a rank that threw). What every
// backend does is in the conformance suite (tests/conformance, test_comm_conformance.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <mutex>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "comm_payload.hpp"
#include "usp/backend.hpp"
#include "usp/comm.hpp"
#include "usp/error.hpp"

namespace {

using namespace std::chrono_literals;
using usp::Communicator;
using usp::Error;
using usp::ErrorKind;
using usp::Request;

using usp::test::expect_error;
using usp::test::make_payload;
using usp::test::payload;

std::uint32_t fresh_seed() {
  static std::random_device rd;
  return rd();
}

TEST(CommLocal, RejectsBadWorldSize) {
  Error e = expect_error([] { usp::run_local(0, [](Communicator&) {}); });
  EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
  EXPECT_NE(std::string(e.what()).find("world_size must be >= 1, got 0"), std::string::npos)
      << e.what();
}

TEST(CommLocal, BackendDeviceAndEveryRankOnce) {
  for (int p = 1; p <= 8; ++p) {
    std::vector<int> seen(static_cast<std::size_t>(p), 0);
    usp::run_local(
        p,
        [&](Communicator& c) {
          EXPECT_EQ(c.backend(), "local");
          EXPECT_EQ(c.device(), usp::Device::host);
          seen[static_cast<std::size_t>(c.rank())] += 1;
        },
        5000ms);
    for (int r = 0; r < p; ++r) EXPECT_EQ(seen[static_cast<std::size_t>(r)], 1) << "p=" << p;
  }
}

TEST(CommLocal, EarlyMessagesOfOneSizeKeepTheirOwnBytes) {
  // Messages that arrive before their receive wait in buffers that are reused once received:
  // rounds of same-size messages (and one of another size) must each deliver their own bytes.
  constexpr std::size_t kBytes = 1 << 20;
  constexpr int kRounds = 3, kPerRound = 4;
  usp::run_local(
      2,
      [&](Communicator& c) {
        for (int round = 0; round < kRounds; ++round) {
          const std::size_t n = round == 1 ? kBytes / 2 : kBytes;
          if (c.rank() == 0) {
            for (int i = 0; i < kPerRound; ++i) {
              const auto msg = make_payload(11, round, i, n);
              c.isend(msg.data(), n, 1, 5).wait();  // eager: done before rank 1 receives
            }
            c.barrier();
          } else {
            c.barrier();  // every message of the round is waiting in a mailbox buffer
            for (int i = 0; i < kPerRound; ++i) {
              std::vector<std::uint8_t> got(n, 0);
              c.irecv(got.data(), n, 0, 5).wait();
              EXPECT_EQ(got, make_payload(11, round, i, n)) << "round " << round << " msg " << i;
            }
          }
          c.barrier();
        }
      },
      10s);
}

TEST(CommLocal, ASendWaitedBeforeItsReceiveLeavesTheBufferFree) {
  // wait() on a send nobody has received yet copies the payload out: the sender may overwrite its
  // buffer at once and the receive still gets what was sent.
  const std::uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  constexpr std::size_t kBytes = (1 << 20) + 3;
  usp::run_local(
      2,
      [&](Communicator& c) {
        if (c.rank() == 0) {
          auto buf = make_payload(seed, 0, 0, kBytes);
          Request s = c.isend(buf.data(), kBytes, 1, 9);
          s.wait();
          std::fill(buf.begin(), buf.end(), std::uint8_t{0xee});
          c.barrier();
          return;
        }
        c.barrier();  // rank 0 has overwritten its buffer
        std::vector<std::uint8_t> got(kBytes, 0);
        c.irecv(got.data(), kBytes, 0, 9).wait();
        EXPECT_EQ(got, make_payload(seed, 0, 0, kBytes));
      },
      10s);
}

TEST(CommLocal, AReceivePostedWhileTheSendIsPendingTakesThePayload) {
  // The receive comes after isend but before the sender's wait(): it copies from the sender's
  // buffer, and the send is complete (test() true) once the receive has returned.
  const std::uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  constexpr std::size_t kBytes = 3 << 18;
  usp::run_local(
      2,
      [&](Communicator& c) {
        const auto mine = make_payload(seed, c.rank(), 1, kBytes);
        const int peer = 1 - c.rank();
        Request s = c.isend(mine.data(), kBytes, peer, 2);
        c.barrier();  // both sends are pending: neither receive was posted
        std::vector<std::uint8_t> got(kBytes, 0);
        c.irecv(got.data(), kBytes, peer, 2).wait();
        EXPECT_EQ(got, make_payload(seed, peer, 1, kBytes));
        c.barrier();  // the peer has taken my payload
        EXPECT_TRUE(s.test());
        EXPECT_FALSE(s.valid());
      },
      10s);
}

TEST(CommLocal, NestedSplitKeepsMessagesApart) {
  constexpr int kP = 8;
  usp::run_local(
      kP,
      [](Communicator& c) {
        const int me = c.rank();
        auto half = c.split(me / 4, me);       // {0..3}, {4..7}
        auto pair = half->split(me % 2, -me);  // inside each half: evens, odds (descending)
        ASSERT_EQ(half->size(), 4);
        ASSERT_EQ(pair->size(), 2);
        std::vector<int> ranks(2);
        pair->allgather(&me, ranks.data(), sizeof me);
        const int base = (me / 4) * 4 + me % 2;
        EXPECT_EQ(ranks, (std::vector<int>{base + 2, base}));
        // Same peer, same tag on three communicators: each message stays on its own.
        const int peer_world = me == ranks[0] ? ranks[1] : ranks[0];
        const int pair_peer = 1 - pair->rank();
        const int half_peer = peer_world % 4;
        int from_world = -1, from_half = -1, from_pair = -1;
        Request r1 = pair->irecv(&from_pair, sizeof(int), pair_peer, 3);
        Request r2 = c.irecv(&from_world, sizeof(int), peer_world, 3);
        const int vw = 1000 + me, vh = 2000 + me, vp = 3000 + me;
        c.isend(&vw, sizeof vw, peer_world, 3).wait();
        half->isend(&vh, sizeof vh, half_peer, 3).wait();
        pair->isend(&vp, sizeof vp, pair_peer, 3).wait();
        half->irecv(&from_half, sizeof(int), half_peer, 3).wait();
        r2.wait();
        r1.wait();
        EXPECT_EQ(from_world, 1000 + peer_world);
        EXPECT_EQ(from_half, 2000 + peer_world);
        EXPECT_EQ(from_pair, 3000 + peer_world);
      },
      10s);
}

TEST(CommLocal, CollectiveTimeoutNamesMissingPeer) {
  Error e = expect_error([] {
    usp::run_local(
        3,
        [](Communicator& c) {
          if (c.rank() == 1) {  // joins the alltoall too late
            std::this_thread::sleep_for(400ms);
            return;
          }
          c.set_timeout(c.rank() == 0 ? 100ms : 2000ms);
          std::vector<int> s(3, c.rank()), r(3);
          c.alltoall(s.data(), r.data(), sizeof(int));
        },
        5000ms);
  });
  EXPECT_EQ(e.kind(), ErrorKind::timeout);
  EXPECT_STREQ(e.what(),
               "rank 0: timed out after 100 ms waiting for alltoall from rank 1 on comm 'world'");
}

TEST(CommLocal, WaitingForARankThatReturnedFailsAtOnce) {
  const auto t0 = std::chrono::steady_clock::now();
  Error e = expect_error([] {
    usp::run_local(
        3,
        [](Communicator& c) {
          if (c.rank() == 1) return;  // skips the alltoall
          std::vector<int> s(3, c.rank()), r(3);
          c.alltoall(s.data(), r.data(), sizeof(int));
        },
        60s);
  });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  EXPECT_EQ(e.kind(), ErrorKind::comm);
  const std::string tail =
      "waiting for alltoall from rank 1 on comm 'world', but world rank 1 has already returned "
      "without sending it (did a rank skip this operation?)";
  const std::string what = e.what();
  EXPECT_TRUE(what == "rank 0: " + tail || what == "rank 2: " + tail) << what;
  // A message sent before returning is still delivered.
  usp::run_local(
      2,
      [](Communicator& c) {
        int v = 42;
        if (c.rank() == 0) {
          c.isend(&v, sizeof v, 1, 0).wait();
          return;
        }
        std::this_thread::sleep_for(50ms);
        int got = 0;
        c.irecv(&got, sizeof got, 0, 0).wait();
        EXPECT_EQ(got, 42);
      },
      5s);
}

TEST(CommLocal, ThrowingRankWakesBlockedRanks) {
  std::mutex m;
  std::vector<std::string> secondary;
  const auto t0 = std::chrono::steady_clock::now();
  try {
    usp::run_local(
        4,
        [&](Communicator& c) {
          if (c.rank() == 2) {
            std::this_thread::sleep_for(50ms);
            throw std::runtime_error("kernel exploded");
          }
          try {
            int x = 0;
            if (c.rank() == 3) {  // blocked in a collective
              std::vector<int> s(4), r(4);
              c.alltoall(s.data(), r.data(), sizeof(int));
            } else {  // blocked in a receive nobody sends
              c.irecv(&x, sizeof x, (c.rank() + 1) % 4, 1).wait();
            }
          } catch (const Error& e) {
            std::lock_guard g(m);
            secondary.push_back(e.what());
            EXPECT_EQ(e.kind(), ErrorKind::comm);
            throw;
          }
        },
        60s);
    FAIL() << "run_local returned normally";
  } catch (const std::runtime_error& e) {
    EXPECT_EQ(dynamic_cast<const Error*>(&e), nullptr) << "rethrew a secondary error: " << e.what();
    EXPECT_STREQ(e.what(), "kernel exploded");
  }
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 5s);
  ASSERT_EQ(secondary.size(), 3u);
  std::sort(secondary.begin(), secondary.end());
  EXPECT_EQ(secondary[0], "rank 0: aborted because rank 2 failed: kernel exploded");
  EXPECT_EQ(secondary[1], "rank 1: aborted because rank 2 failed: kernel exploded");
  EXPECT_EQ(secondary[2], "rank 3: aborted because rank 2 failed: kernel exploded");
}

TEST(CommLocal, FirstOfSeveralErrorsIsRethrown) {
  for (int first = 0; first < 4; ++first) {
    Error e = expect_error([&] {
      usp::run_local(
          4,
          [&](Communicator& c) {
            if (c.rank() != first) std::this_thread::sleep_for(100ms);
            USP_FAIL(invalid_argument, "rank ", c.rank(), " rejects its input");
          },
          10s);
    });
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_EQ(std::string(e.what()), "rank " + std::to_string(first) + " rejects its input");
  }
}

TEST(CommLocal, OperationsAfterAbortThrow) {
  std::atomic<bool> checked{false};
  EXPECT_THROW(usp::run_local(
                   2,
                   [&](Communicator& c) {
                     if (c.rank() == 0) throw std::logic_error("stop");
                     std::this_thread::sleep_for(100ms);
                     int x = 1;
                     Error e = expect_error([&] { c.isend(&x, sizeof x, 0, 0); });
                     EXPECT_EQ(e.kind(), ErrorKind::comm);
                     EXPECT_STREQ(e.what(), "rank 1: aborted because rank 0 failed: stop");
                     EXPECT_THROW(c.irecv(&x, sizeof x, 0, 0), Error);
                     EXPECT_THROW(c.barrier(), Error);
                     checked = true;
                   },
                   10s),
               std::logic_error);
  EXPECT_TRUE(checked.load());
}

}  // namespace

// usp::allgather_host on a host communicator: blocks of any byte size (not a multiple of 4, as
// the device path would pad them) arrive in rank order on every rank.
TEST(CommLocal, AllgatherHostOddBlockSizes) {
  constexpr int kWorld = 5;
  const unsigned seed = std::random_device{}();
  for (const std::size_t bytes : {std::size_t{1}, std::size_t{7}, std::size_t{13}}) {
    std::vector<std::vector<unsigned char>> blocks(kWorld, std::vector<unsigned char>(bytes));
    std::mt19937 g(seed + static_cast<unsigned>(bytes));
    for (auto& b : blocks)
      for (auto& x : b) x = static_cast<unsigned char>(1 + g() % 255);
    std::vector<std::vector<unsigned char>> got(kWorld);
    usp::run_local(kWorld, [&](usp::Communicator& comm) {
      const auto r = static_cast<std::size_t>(comm.rank());
      got[r].assign(bytes * kWorld, 0);
      usp::allgather_host(comm, usp::default_host_allocator(), blocks[r].data(), got[r].data(),
                          bytes);
    });
    for (int r = 0; r < kWorld; ++r)
      for (int from = 0; from < kWorld; ++from)
        ASSERT_TRUE(std::equal(blocks[from].begin(), blocks[from].end(),
                               got[r].begin() + static_cast<long>(from * bytes)))
            << "rank " << r << " block from " << from << " bytes " << bytes << " seed " << seed;
  }
}
