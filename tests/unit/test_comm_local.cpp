// The local backend: point-to-point matching, collectives, split, timeouts and failure handling.
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

using usp::test::make_payload;
using usp::test::payload;

std::uint32_t fresh_seed() {
  static std::random_device rd;
  return rd();
}

// Runs fn and returns the usp::Error it must throw.
template <class F>
Error expect_error(F&& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no usp::Error thrown";
  return Error(ErrorKind::internal, "none");
}

TEST(CommLocal, RejectsBadWorldSize) {
  Error e = expect_error([] { usp::run_local(0, [](Communicator&) {}); });
  EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
  EXPECT_NE(std::string(e.what()).find("world_size must be >= 1, got 0"), std::string::npos)
      << e.what();
}

TEST(CommLocal, RanksSizesAndNames) {
  for (int p = 1; p <= 8; ++p) {
    std::vector<int> seen(static_cast<std::size_t>(p), 0);
    usp::run_local(
        p,
        [&](Communicator& c) {
          EXPECT_EQ(c.size(), p);
          EXPECT_EQ(c.backend(), "local");
          EXPECT_EQ(c.name(), "world");
          EXPECT_EQ(c.timeout(), 5000ms);
          EXPECT_EQ(c.device(), usp::Device::host);
          seen[static_cast<std::size_t>(c.rank())] += 1;
        },
        5000ms);
    for (int r = 0; r < p; ++r) EXPECT_EQ(seen[static_cast<std::size_t>(r)], 1) << "p=" << p;
  }
}

TEST(CommLocal, SeveralInFlightOutOfOrderTags) {
  const std::uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  constexpr int kP = 4, kTags = 8;
  usp::run_local(
      kP,
      [&](Communicator& c) {
        const int me = c.rank();
        std::mt19937 rng(seed + static_cast<std::uint32_t>(me));
        // Receive from every peer, every tag, posted in a shuffled order.
        std::vector<std::pair<int, int>> order;
        for (int src = 0; src < kP; ++src)
          for (int t = 0; t < kTags; ++t)
            if (src != me) order.emplace_back(src, t);
        std::shuffle(order.begin(), order.end(), rng);
        std::vector<std::vector<std::uint8_t>> got(order.size());
        std::vector<Request> reqs;
        auto size_of = [](int src, int dst, int t) {
          return static_cast<std::size_t>(1 + 97 * src + 31 * dst + 13 * t);
        };
        // Post half the receives before sending, half after: both paths are exercised.
        const std::size_t half = order.size() / 2;
        auto post = [&](std::size_t i) {
          auto [src, t] = order[i];
          got[i].resize(size_of(src, me, t));
          reqs.push_back(c.irecv(got[i].data(), got[i].size(), src, t));
        };
        for (std::size_t i = 0; i < half; ++i) post(i);
        std::vector<std::vector<std::uint8_t>> sent;
        std::vector<Request> sends;
        for (int t = kTags - 1; t >= 0; --t)
          for (int dst = 0; dst < kP; ++dst)
            if (dst != me) {
              sent.push_back(make_payload(seed, me * 100 + dst, t, size_of(me, dst, t)));
              sends.push_back(c.isend(sent.back().data(), sent.back().size(), dst, t));
            }
        for (std::size_t i = half; i < order.size(); ++i) post(i);
        // Wait in a different random order.
        std::vector<std::size_t> idx(reqs.size());
        std::iota(idx.begin(), idx.end(), 0);
        std::shuffle(idx.begin(), idx.end(), rng);
        for (std::size_t i : idx) reqs[i].wait();
        for (auto& s : sends) s.wait();
        for (std::size_t i = 0; i < order.size(); ++i) {
          auto [src, t] = order[i];
          EXPECT_EQ(got[i], make_payload(seed, src * 100 + me, t, size_of(src, me, t)))
              << "from " << src << " tag " << t;
        }
      },
      10s);
}

TEST(CommLocal, OrderedPerSourceAndTag) {
  constexpr int kMsgs = 200;
  usp::run_local(
      3,
      [&](Communicator& c) {
        if (c.rank() != 2) {
          for (int i = 0; i < kMsgs; ++i) {
            int v[2] = {c.rank(), i};
            c.isend(v, sizeof v, 2, i % 2).wait();  // tags 0 and 1 interleaved
          }
          return;
        }
        // Rank 2: receives posted early for the first half, late for the second half.
        std::vector<std::array<int, 2>> got(2 * kMsgs);
        std::vector<Request> reqs;
        for (int i = 0; i < kMsgs; ++i) {
          if (i == kMsgs / 2) std::this_thread::sleep_for(20ms);
          for (int src = 0; src < 2; ++src) {
            auto& g = got[static_cast<std::size_t>(2 * i + src)];
            reqs.push_back(c.irecv(g.data(), sizeof g, src, i % 2));
          }
        }
        for (auto& r : reqs) r.wait();
        for (int i = 0; i < kMsgs; ++i)
          for (int src = 0; src < 2; ++src) {
            auto& g = got[static_cast<std::size_t>(2 * i + src)];
            EXPECT_EQ(g[0], src);
            EXPECT_EQ(g[1], i) << "message " << i << " from " << src << " out of order";
          }
      },
      10s);
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

TEST(CommLocal, SelfSend) {
  usp::run_local(
      2,
      [](Communicator& c) {
        const std::uint32_t seed = 17;
        auto a = make_payload(seed, c.rank(), 0, 1000);
        auto b = make_payload(seed, c.rank(), 1, 333);
        std::vector<std::uint8_t> ra(a.size()), rb(b.size());
        c.isend(a.data(), a.size(), c.rank(), 0).wait();  // before the receive is posted
        Request r = c.irecv(rb.data(), rb.size(), c.rank(), 1);
        c.isend(b.data(), b.size(), c.rank(), 1).wait();  // into the posted receive
        c.irecv(ra.data(), ra.size(), c.rank(), 0).wait();
        r.wait();
        EXPECT_EQ(ra, a);
        EXPECT_EQ(rb, b);
        int zero_src = 0, zero_dst = 0;
        c.isend(&zero_src, 0, c.rank(), 5).wait();  // empty messages still match
        c.irecv(&zero_dst, 0, c.rank(), 5).wait();
      },
      5s);
}

TEST(CommLocal, CollectivesRandomPayloads) {
  const std::uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  for (int p = 1; p <= 8; ++p) {
    std::atomic<int> arrived{0};
    usp::run_local(
        p,
        [&](Communicator& c) {
          const int me = c.rank();
          for (int round = 0; round < 3; ++round) {
            const std::size_t n = 1 + static_cast<std::size_t>(round * 777 + p * 13);
            // alltoall: block j of rank i is payload(i, j).
            std::vector<std::uint8_t> send(n * static_cast<std::size_t>(p));
            for (int j = 0; j < p; ++j) {
              auto blk = make_payload(seed + static_cast<std::uint32_t>(round), me, j, n);
              std::copy(blk.begin(), blk.end(), send.begin() + static_cast<long>(j * n));
            }
            std::vector<std::uint8_t> recv(send.size());
            c.alltoall(send.data(), recv.data(), n);
            for (int i = 0; i < p; ++i) {
              auto want = make_payload(seed + static_cast<std::uint32_t>(round), i, me, n);
              ASSERT_TRUE(
                  std::equal(want.begin(), want.end(), recv.begin() + static_cast<long>(i * n)))
                  << "alltoall p=" << p << " rank " << me << " block " << i;
            }
            // allgather: rank i contributes payload(i, -1).
            auto mine = make_payload(seed + 99, me, round, n);
            std::vector<std::uint8_t> all(n * static_cast<std::size_t>(p));
            c.allgather(mine.data(), all.data(), n);
            for (int i = 0; i < p; ++i) {
              auto want = make_payload(seed + 99, i, round, n);
              ASSERT_TRUE(
                  std::equal(want.begin(), want.end(), all.begin() + static_cast<long>(i * n)))
                  << "allgather p=" << p << " rank " << me << " block " << i;
            }
            // barrier: nobody passes before everybody arrived.
            arrived.fetch_add(1);
            c.barrier();
            EXPECT_GE(arrived.load(), p * (round + 1));
            c.barrier();  // keeps the next round's increments after this check
          }
        },
        10s);
  }
}

TEST(CommLocal, SplitIntoGroupsWithCollectives) {
  constexpr int kP = 8;
  usp::run_local(
      kP,
      [](Communicator& c) {
        const int me = c.rank();
        // Colors by rank % 3, ordered by descending world rank through the key.
        auto sub = c.split(me % 3, -me);
        ASSERT_TRUE(sub);
        std::vector<int> members;
        for (int r = kP - 1; r >= 0; --r)
          if (r % 3 == me % 3) members.push_back(r);
        ASSERT_EQ(sub->size(), static_cast<int>(members.size()));
        EXPECT_EQ(members[static_cast<std::size_t>(sub->rank())], me);
        EXPECT_EQ(sub->name(), "world/split");
        EXPECT_EQ(sub->timeout(), c.timeout());
        std::vector<int> gathered(members.size());
        sub->allgather(&me, gathered.data(), sizeof me);
        EXPECT_EQ(gathered, members);
        // alltoall inside the group: send (me, j) to group rank j.
        std::vector<int> send(2 * members.size()), recv(2 * members.size());
        for (std::size_t j = 0; j < members.size(); ++j) {
          send[2 * j] = me;
          send[2 * j + 1] = static_cast<int>(j);
        }
        sub->alltoall(send.data(), recv.data(), 2 * sizeof(int));
        for (std::size_t i = 0; i < members.size(); ++i) {
          EXPECT_EQ(recv[2 * i], members[i]);
          EXPECT_EQ(recv[2 * i + 1], sub->rank());
        }
        sub->barrier();
        // A negative color joins no group.
        auto none = c.split(me == 0 ? -1 : 1, 0);
        if (me == 0) {
          EXPECT_EQ(none, nullptr);
        } else {
          ASSERT_TRUE(none);
          EXPECT_EQ(none->size(), kP - 1);
          EXPECT_EQ(none->rank(), me - 1);
        }
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

TEST(CommLocal, RecvTimeoutNamesRankPeerAndOperation) {
  const auto t0 = std::chrono::steady_clock::now();
  Error e = expect_error([] {
    usp::run_local(
        4,
        [](Communicator& c) {
          // ring group {1, 3}: rank 3 waits for group rank 0 (world 1), which never sends.
          auto sub = c.split(c.rank() % 2, c.rank());
          sub->set_name("ring");
          if (c.rank() == 3) {
            int x = 0;
            sub->irecv(&x, sizeof x, 0, 7).wait();
          } else {
            std::this_thread::sleep_for(400ms);  // alive, but never sending
          }
        },
        150ms);
  });
  const auto elapsed = std::chrono::steady_clock::now() - t0;
  EXPECT_EQ(e.kind(), ErrorKind::timeout);
  EXPECT_STREQ(e.what(),
               "rank 3: timed out after 150 ms waiting for recv from rank 0 (world rank 1) "
               "(tag 7) on comm 'ring'");
  EXPECT_GE(elapsed, 150ms);
  EXPECT_LT(elapsed, 3s);
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

TEST(CommLocal, SecondsInTimeoutMessage) {
  Error e = expect_error([] {
    usp::run_local(
        1,
        [](Communicator& c) {
          c.set_timeout(1200ms);
          int x = 0;
          c.irecv(&x, sizeof x, 0, 0).wait();
        },
        5000ms);
  });
  EXPECT_STREQ(e.what(),
               "rank 0: timed out after 1.2 s waiting for recv from rank 0 (tag 0) on comm "
               "'world'");
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

TEST(CommLocal, LargeMessage) {
  constexpr std::size_t kBytes = 64u << 20;
  usp::run_local(
      2,
      [](Communicator& c) {
        if (c.rank() == 0) {
          std::vector<std::uint8_t> a(kBytes), b(kBytes);
          for (std::size_t i = 0; i < kBytes; i += 4096) {
            a[i] = static_cast<std::uint8_t>(i >> 12);
            b[i] = static_cast<std::uint8_t>(~(i >> 12));
          }
          a.back() = 0x5a;
          b.back() = 0xa5;
          c.isend(a.data(), kBytes, 1, 0).wait();  // unexpected: into a mailbox slot
          c.barrier();                             // rank 1 posts the next receive first
          c.isend(b.data(), kBytes, 1, 1).wait();  // straight into the posted buffer
          return;
        }
        std::vector<std::uint8_t> ra(kBytes), rb(kBytes);
        c.barrier();
        Request r = c.irecv(rb.data(), kBytes, 0, 1);
        c.irecv(ra.data(), kBytes, 0, 0).wait();
        r.wait();
        for (std::size_t i = 0; i < kBytes; i += 4096) {
          ASSERT_EQ(ra[i], static_cast<std::uint8_t>(i >> 12)) << i;
          ASSERT_EQ(rb[i], static_cast<std::uint8_t>(~(i >> 12))) << i;
        }
        EXPECT_EQ(ra.back(), 0x5a);
        EXPECT_EQ(rb.back(), 0xa5);
      },
      30s);
}

TEST(CommLocal, SizeMismatchIsNamed) {
  Error e = expect_error([] {
    usp::run_local(
        2,
        [](Communicator& c) {
          double d[2] = {1, 2};
          if (c.rank() == 0) {
            c.isend(d, sizeof(double), 1, 4).wait();
          } else {
            c.irecv(d, sizeof d, 0, 4).wait();
          }
        },
        5s);
  });
  EXPECT_EQ(e.kind(), ErrorKind::comm);
  EXPECT_STREQ(e.what(),
               "rank 1: recv from rank 0 (tag 4) on comm 'world': the receive expects 16 bytes "
               "but the message has 8 (sizes must match)");
}

TEST(CommLocal, ArgumentErrors) {
  usp::run_local(
      2,
      [](Communicator& c) {
        int x = 0;
        Error e = expect_error([&] { c.isend(&x, sizeof x, 2, 0); });
        EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
        EXPECT_STREQ(e.what(), "isend: peer 2 is out of range [0, 2) on comm 'world'");
        e = expect_error([&] { c.irecv(&x, sizeof x, -1, 0); });
        EXPECT_STREQ(e.what(), "irecv: peer -1 is out of range [0, 2) on comm 'world'");
        e = expect_error([&] { c.irecv(&x, sizeof x, 0, -3); });
        EXPECT_STREQ(e.what(), "irecv: tag -3 must be >= 0 (negative tags are reserved)");
        std::vector<int> buf(4);
        e = expect_error([&] { c.alltoall(buf.data(), buf.data() + 1, sizeof(int)); });
        EXPECT_STREQ(e.what(),
                     "alltoall: send and recv buffers overlap (in-place is not supported)");
      },
      5s);
}

TEST(CommLocal, RequestSemantics) {
  usp::run_local(
      2,
      [](Communicator& c) {
        const int peer = 1 - c.rank();
        Request empty;
        EXPECT_FALSE(empty.valid());
        empty.wait();  // no-op
        EXPECT_TRUE(empty.test());
        // test() polls until the message is there; the request is spent afterwards.
        int v = 10 + c.rank(), got = -1;
        Request r = c.irecv(&got, sizeof got, peer, 0);
        EXPECT_TRUE(r.valid());
        if (c.rank() == 0) std::this_thread::sleep_for(20ms);
        Request s = c.isend(&v, sizeof v, peer, 0);
        while (!r.test()) std::this_thread::yield();
        EXPECT_FALSE(r.valid());
        EXPECT_EQ(got, 10 + peer);
        s.wait();
        r.wait();  // no-op after completion
        // Move-assigning over a pending receive waits for it first.
        int a = -1, b = -1;
        Request ra = c.irecv(&a, sizeof a, peer, 1);
        int va = 100 + c.rank(), vb = 200 + c.rank();
        c.isend(&va, sizeof va, peer, 1).wait();
        c.isend(&vb, sizeof vb, peer, 2).wait();
        ra = c.irecv(&b, sizeof b, peer, 2);
        EXPECT_EQ(a, 100 + peer);
        ra.wait();
        EXPECT_EQ(b, 200 + peer);
        // A request dropped un-waited completes in its destructor.
        int d = -1;
        {
          Request rd = c.irecv(&d, sizeof d, peer, 3);
          int vd = 300 + c.rank();
          c.isend(&vd, sizeof vd, peer, 3).wait();
        }
        EXPECT_EQ(d, 300 + peer);
      },
      5s);
}

TEST(CommLocal, DroppedRequestTimesOutQuietly) {
  const auto t0 = std::chrono::steady_clock::now();
  usp::run_local(
      1,
      [](Communicator& c) {
        int x = 0;
        Request r = c.irecv(&x, sizeof x, 0, 0);  // never satisfied: destructor swallows
      },
      100ms);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 3s);
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
