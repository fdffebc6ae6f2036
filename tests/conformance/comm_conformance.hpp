// The communicator conformance suite: what every Communicator backend must do, written once over a
// "world" (how to run ranks of that backend and give them memory on its device). Each test binary
// includes this header in ONE source file and instantiates the suite for the backends it can run:
//   INSTANTIATE_TEST_SUITE_P(Local, CommConformance, ::testing::Values(local_world()));
// Every test is collective: under MPI all processes run it; a world of fewer ranks than the job
// leaves the other processes out of that test. A world may lack some guarantees (CommWorld's
// flags, e.g. NCCL's matching ignores tags): the tests that need one then skip, naming it.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "unit/comm_payload.hpp"
#include "usp/comm.hpp"
#include "usp/error.hpp"

namespace usp::test {

// `bytes` bytes on a world's device.
class CommBuffer {
 public:
  virtual ~CommBuffer() = default;
  virtual void* data() = 0;
  virtual void write(const std::vector<std::uint8_t>& v) = 0;  // v.size() bytes from the start
  virtual std::vector<std::uint8_t> read(std::size_t bytes) = 0;
};

class HostCommBuffer final : public CommBuffer {
 public:
  explicit HostCommBuffer(std::size_t bytes) : v_(std::max<std::size_t>(bytes, 1)) {}
  void* data() override { return v_.data(); }
  void write(const std::vector<std::uint8_t>& v) override {
    std::copy(v.begin(), v.end(), v_.begin());
  }
  std::vector<std::uint8_t> read(std::size_t bytes) override {
    return {v_.begin(), v_.begin() + static_cast<std::ptrdiff_t>(bytes)};
  }

 private:
  std::vector<std::uint8_t> v_;
};

struct CommWorld {
  std::string name;
  // Runs fn on every rank of a world of `ranks` ranks whose communicators are named "world" and
  // time out after `timeout`. Returns the error this process saw: in-process worlds the first
  // rank's error, MPI this rank's own (null: none).
  std::function<std::exception_ptr(int ranks, std::chrono::milliseconds timeout,
                                   const std::function<void(Communicator&)>& fn)>
      run;
  // The most ranks a world can have (asked when a test runs: MPI knows it once started).
  std::function<int()> max_ranks = [] { return 4; };
  // Memory for messages (host vectors unless set).
  std::function<std::unique_ptr<CommBuffer>(std::size_t bytes)> buffer;
  // Ranks are threads of one process: a failed rank wakes the others at once with
  // "rank R: aborted because rank F failed: ..." (MPI: the others time out).
  bool in_process = false;
  // A send completes without its receive (host buffers); else sends rendezvous with receives.
  bool eager_sends = false;
  // Why this world cannot run here (e.g. no GPU); empty or unset: it can.
  std::function<std::string()> unavailable;
  // How a too-short message is described after "the receive expects N bytes but the message ".
  std::function<std::string(std::size_t sent)> mismatch_says;

  // What the backend guarantees beyond the common core. A test that needs a guarantee the world
  // lacks is skipped, naming it; every backend but NCCL has them all.
  // Messages are matched by tag: a receive takes the first message of its peer with its tag,
  // whatever came before with other tags (else: in posting order per peer, tags only checked).
  bool matches_tags = true;
  // A wait ends once its own operation is matched (else it may also wait for other operations
  // posted before it, whose matches the peers post only later).
  bool requests_complete_alone = true;
  // A receive longer than its message fails naming both sizes (else the sizes must agree).
  bool detects_size_mismatch = true;
  // A receive from oneself that nothing sends waits for the timeout (else it may fail at once).
  bool unmatched_self_recv_times_out = true;
  // A timeout message may go on after the common "rank R: timed out after T waiting for <op> on
  // comm 'c'" with what the backend was still doing.
  bool timeout_message_adds_detail = false;
};

// CommWorld::run for worlds of processes (MPI, NCCL): runs fn on the first `ranks` processes of
// `job`, in a communicator split from it named "world" with `timeout`; the others skip to the end,
// where every process meets. Returns this process's error (null: none).
inline std::exception_ptr run_on_first_ranks(Communicator& job, int ranks,
                                             std::chrono::milliseconds timeout,
                                             const std::function<void(Communicator&)>& fn) {
  std::exception_ptr err;
  std::unique_ptr<Communicator> sub;  // outlives the final barrier, as every rank's does
  try {
    sub = job.split(job.rank() < ranks ? 0 : -1, job.rank());
    if (sub != nullptr) {
      sub->set_name("world");
      sub->set_timeout(timeout);
      fn(*sub);
    }
  } catch (...) {
    err = std::current_exception();
  }
  job.barrier();
  return err;
}

// In a test body: skips the test on a world without the guarantee `flag`, saying
// "<world> cannot <what>".
#define USP_CONFORMANCE_NEEDS(flag, what) \
  if (!GetParam().flag) GTEST_SKIP() << GetParam().name << " cannot " << (what)

inline std::string PrintToString(const CommWorld& w) {
  return w.name;
}

class CommConformance : public ::testing::TestWithParam<CommWorld> {
 protected:
  using ms = std::chrono::milliseconds;

  void SetUp() override {
    if (!GetParam().unavailable) return;
    const std::string why = GetParam().unavailable();
    if (!why.empty()) GTEST_SKIP() << GetParam().name << ": " << why;
  }

  std::unique_ptr<CommBuffer> buffer(std::size_t bytes) const {
    const CommWorld& w = GetParam();
    if (w.buffer) return w.buffer(bytes);
    return std::make_unique<HostCommBuffer>(bytes);
  }
  // A buffer holding v.
  std::unique_ptr<CommBuffer> buffer_of(const std::vector<std::uint8_t>& v) const {
    auto b = buffer(v.size());
    b->write(v);
    return b;
  }
  int ranks(int want) const { return std::min(want, GetParam().max_ranks()); }

  // Runs fn on `n` ranks and expects no rank to fail.
  void run(int n, ms timeout, const std::function<void(Communicator&)>& fn) const {
    std::exception_ptr e = GetParam().run(n, timeout, fn);
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& x) {
      ADD_FAILURE() << GetParam().name << ": a rank failed: " << x.what();
    }
  }

  // A seed every rank agrees on (rank 0's random one).
  std::uint32_t shared_seed(Communicator& c) const {
    const std::uint32_t mine = std::random_device{}();
    std::vector<std::uint8_t> bytes(sizeof mine);
    std::memcpy(bytes.data(), &mine, sizeof mine);
    auto in = buffer_of(bytes);
    auto all = buffer(sizeof mine * static_cast<std::size_t>(c.size()));
    c.allgather(in->data(), all->data(), sizeof mine);
    std::uint32_t first = 0;
    std::memcpy(&first, all->read(sizeof first).data(), sizeof first);
    return first;
  }
};

// Every buffer handed to a communicator below is a CommBuffer (device memory on GPU worlds).

TEST_P(CommConformance, RanksSizesAndNames) {
  for (int p = 1; p <= GetParam().max_ranks(); ++p)
    run(p, ms(5000), [&](Communicator& c) {
      EXPECT_EQ(c.size(), p);
      EXPECT_EQ(c.name(), "world");
      EXPECT_EQ(c.timeout(), ms(5000));
      const int me = c.rank();
      auto mine = buffer_of({static_cast<std::uint8_t>(me)});
      auto all = buffer(static_cast<std::size_t>(p));
      c.allgather(mine->data(), all->data(), 1);
      const auto got = all->read(static_cast<std::size_t>(p));
      for (int r = 0; r < p; ++r) EXPECT_EQ(got[static_cast<std::size_t>(r)], r) << "p=" << p;
    });
}

TEST_P(CommConformance, SeveralInFlightOutOfOrderTags) {
  USP_CONFORMANCE_NEEDS(matches_tags, "match messages by tag");
  const int p = ranks(4);
  run(p, ms(20000), [&](Communicator& c) {
    const std::uint32_t seed = shared_seed(c);
    SCOPED_TRACE("seed " + std::to_string(seed));
    constexpr int kTags = 6;
    const int me = c.rank();
    auto size_of = [](int src, int dst, int t) {
      return static_cast<std::size_t>(1 + 997 * src + 31 * dst + 4099 * t);
    };
    std::mt19937 rng(seed + static_cast<std::uint32_t>(me));
    // Receive from every rank (itself included), every tag, posted in a shuffled order: half
    // before sending, half after, so that both matching paths are exercised.
    std::vector<std::pair<int, int>> order;
    for (int src = 0; src < p; ++src)
      for (int t = 0; t < kTags; ++t) order.emplace_back(src, t);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<std::unique_ptr<CommBuffer>> got(order.size());
    std::vector<Request> reqs;
    auto post = [&](std::size_t i) {
      auto [src, t] = order[i];
      got[i] = buffer(size_of(src, me, t));
      reqs.push_back(c.irecv(got[i]->data(), size_of(src, me, t), src, t));
    };
    const std::size_t half = order.size() / 2;
    for (std::size_t i = 0; i < half; ++i) post(i);
    std::vector<std::unique_ptr<CommBuffer>> sent;
    std::vector<Request> sends;
    for (int t = kTags - 1; t >= 0; --t)
      for (int dst = 0; dst < p; ++dst) {
        sent.push_back(buffer_of(make_payload(seed, me * 100 + dst, t, size_of(me, dst, t))));
        sends.push_back(c.isend(sent.back()->data(), size_of(me, dst, t), dst, t));
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
      EXPECT_EQ(got[i]->read(size_of(src, me, t)),
                make_payload(seed, src * 100 + me, t, size_of(src, me, t)))
          << "from " << src << " tag " << t;
    }
  });
}

TEST_P(CommConformance, OrderedPerSourceAndTag) {
  // The last rank receives from every other rank messages whose tags alternate; receives posted
  // early for the first half, late for the second half.
  const int p = ranks(3);
  if (p < 2) GTEST_SKIP() << "needs 2 ranks";
  constexpr int kMsgs = 100;
  run(p, ms(20000), [&](Communicator& c) {
    const int sink = p - 1;
    if (c.rank() != sink) {
      for (int i = 0; i < kMsgs; ++i) {
        auto v = buffer_of({static_cast<std::uint8_t>(c.rank()), static_cast<std::uint8_t>(i)});
        c.isend(v->data(), 2, sink, i % 2).wait();
      }
      c.barrier();
      return;
    }
    std::vector<std::unique_ptr<CommBuffer>> got;
    std::vector<std::pair<int, int>> from;  // (source, message)
    std::vector<Request> reqs;
    for (int i = 0; i < kMsgs; ++i) {
      if (i == kMsgs / 2) std::this_thread::sleep_for(ms(20));
      for (int src = 0; src < sink; ++src) {
        got.push_back(buffer(2));
        from.emplace_back(src, i);
        reqs.push_back(c.irecv(got.back()->data(), 2, src, i % 2));
      }
    }
    for (auto& r : reqs) r.wait();
    for (std::size_t k = 0; k < got.size(); ++k) {
      const auto g = got[k]->read(2);
      EXPECT_EQ(g[0], from[k].first);
      EXPECT_EQ(g[1], from[k].second)
          << "message " << from[k].second << " from " << from[k].first << " out of order";
    }
    c.barrier();
  });
}

TEST_P(CommConformance, OrderedAroundARing) {
  const int p = ranks(4);
  constexpr int kMsgs = 100;
  run(p, ms(20000), [&](Communicator& c) {
    const int me = c.rank(), next = (me + 1) % p, prev = (me - 1 + p) % p;
    std::vector<std::unique_ptr<CommBuffer>> sent, got;
    std::vector<Request> sends, recvs;
    for (int i = 0; i < kMsgs; ++i) got.push_back(buffer(2));
    for (int i = 0; i < kMsgs / 2; ++i)
      recvs.push_back(c.irecv(got[static_cast<std::size_t>(i)]->data(), 2, prev, 9));
    for (int i = 0; i < kMsgs; ++i) {
      sent.push_back(buffer_of({static_cast<std::uint8_t>(me), static_cast<std::uint8_t>(i)}));
      sends.push_back(c.isend(sent.back()->data(), 2, next, 9));
    }
    for (int i = kMsgs / 2; i < kMsgs; ++i)
      recvs.push_back(c.irecv(got[static_cast<std::size_t>(i)]->data(), 2, prev, 9));
    for (auto& r : recvs) r.wait();
    for (auto& s : sends) s.wait();
    for (int i = 0; i < kMsgs; ++i) {
      const auto g = got[static_cast<std::size_t>(i)]->read(2);
      EXPECT_EQ(g[0], prev);
      EXPECT_EQ(g[1], i);
    }
  });
}

TEST_P(CommConformance, SelfSendAndZeroBytes) {
  // A tag-0 message sent before the tag-1 receive; each rank waits on a tag-6 receive while its
  // own tag-6 sends, whose receives the peer posts only after that wait, are pending.
  USP_CONFORMANCE_NEEDS(matches_tags, "match messages by tag");
  USP_CONFORMANCE_NEEDS(
      requests_complete_alone,
      "complete a wait while operations posted with it wait for matches posted later");
  run(ranks(2), ms(5000), [&](Communicator& c) {
    const int me = c.rank(), p = c.size();
    const auto a = make_payload(17, me, 0, 1000), b = make_payload(17, me, 1, 333);
    auto sa = buffer_of(a), sb = buffer_of(b), ra = buffer(a.size()), rb = buffer(b.size());
    Request s1 = c.isend(sa->data(), a.size(), me, 0);  // before the receive is posted
    Request r = c.irecv(rb->data(), b.size(), me, 1);
    Request s2 = c.isend(sb->data(), b.size(), me, 1);  // into the posted receive
    c.irecv(ra->data(), a.size(), me, 0).wait();
    r.wait();
    s1.wait();
    s2.wait();
    EXPECT_EQ(ra->read(a.size()), a);
    EXPECT_EQ(rb->read(b.size()), b);
    // Empty messages still match, to oneself and to a peer, and keep their place in the order.
    auto none = buffer(1), one = buffer_of({42}), got = buffer_of({0});
    Request zs = c.isend(none->data(), 0, me, 5);
    c.irecv(none->data(), 0, me, 5).wait();
    zs.wait();
    const int next = (me + 1) % p, prev = (me - 1 + p) % p;
    Request z = c.isend(none->data(), 0, next, 6);
    Request o = c.isend(one->data(), 1, next, 6);
    c.irecv(none->data(), 0, prev, 6).wait();
    c.irecv(got->data(), 1, prev, 6).wait();
    z.wait();
    o.wait();
    EXPECT_EQ(got->read(1)[0], 42);
  });
}

TEST_P(CommConformance, Collectives) {
  for (int p = 1; p <= GetParam().max_ranks(); ++p)
    run(p, ms(20000), [&](Communicator& c) {
      const std::uint32_t seed = shared_seed(c);
      SCOPED_TRACE("seed " + std::to_string(seed) + " p=" + std::to_string(p));
      const int me = c.rank();
      std::vector<std::size_t> sizes = {0, 1, 4099, static_cast<std::size_t>(1 + 777 + p * 13)};
      // Larger than any eager limit (on few ranks in-process: sanitizer builds run these).
      if (p <= (GetParam().in_process ? 2 : 4)) sizes.push_back(std::size_t{3} << 20);
      for (std::size_t n : sizes) {
        // alltoall: block j of rank i is payload(i, j).
        std::vector<std::uint8_t> send;
        for (int j = 0; j < p; ++j) {
          auto blk = make_payload(seed, me, j, n);
          send.insert(send.end(), blk.begin(), blk.end());
        }
        auto sbuf = buffer_of(send), rbuf = buffer(send.size());
        c.alltoall(sbuf->data(), rbuf->data(), n);
        const auto recv = rbuf->read(send.size());
        for (int i = 0; i < p; ++i) {
          auto want = make_payload(seed, i, me, n);
          EXPECT_TRUE(std::equal(want.begin(), want.end(), recv.begin() + static_cast<long>(i * n)))
              << "alltoall n=" << n << " rank " << me << " block " << i;
        }
        // allgather: rank i contributes payload(i, p).
        auto mine = buffer_of(make_payload(seed + 1, me, p, n));
        auto all = buffer(n * static_cast<std::size_t>(p));
        c.allgather(mine->data(), all->data(), n);
        const auto gathered = all->read(n * static_cast<std::size_t>(p));
        for (int i = 0; i < p; ++i) {
          auto want = make_payload(seed + 1, i, p, n);
          EXPECT_TRUE(
              std::equal(want.begin(), want.end(), gathered.begin() + static_cast<long>(i * n)))
              << "allgather n=" << n << " rank " << me << " block " << i;
        }
      }
    });
}

TEST_P(CommConformance, BarrierWaitsForTheLastRank) {
  const int p = ranks(4);
  constexpr ms kLate(200);
  run(p, ms(10000), [&](Communicator& c) {
    c.barrier();
    if (c.rank() == p - 1) {
      std::this_thread::sleep_for(kLate);  // arrives kLate after the others
      c.barrier();
      return;
    }
    const auto t0 = std::chrono::steady_clock::now();
    c.barrier();
    // Nobody passes before the last rank arrived (half the delay allows for ranks released from
    // the first barrier apart).
    EXPECT_GE(std::chrono::steady_clock::now() - t0, kLate / 2) << c.rank();
  });
}

TEST_P(CommConformance, SplitColorsKeysAndNegativeColor) {
  const int p = ranks(8);
  run(p, ms(20000), [&](Communicator& c) {
    const int me = c.rank();
    // Colors by rank % 3, ordered by descending rank through the key.
    auto sub = c.split(me % 3, -me);
    ASSERT_TRUE(sub);
    std::vector<int> members;
    for (int r = p - 1; r >= 0; --r)
      if (r % 3 == me % 3) members.push_back(r);
    ASSERT_EQ(sub->size(), static_cast<int>(members.size()));
    EXPECT_EQ(members[static_cast<std::size_t>(sub->rank())], me);
    EXPECT_EQ(sub->name(), "world/split");
    EXPECT_EQ(sub->timeout(), c.timeout());
    EXPECT_EQ(sub->backend(), c.backend());
    EXPECT_EQ(sub->device(), c.device());
    const std::size_t m = members.size();
    auto mine = buffer_of({static_cast<std::uint8_t>(me)});
    auto gathered = buffer(m);
    sub->allgather(mine->data(), gathered->data(), 1);
    const auto g = gathered->read(m);
    for (std::size_t i = 0; i < m; ++i) EXPECT_EQ(g[i], members[i]);
    // alltoall inside the group: send (me, j) to group rank j.
    std::vector<std::uint8_t> send;
    for (std::size_t j = 0; j < m; ++j) {
      send.push_back(static_cast<std::uint8_t>(me));
      send.push_back(static_cast<std::uint8_t>(j));
    }
    auto sbuf = buffer_of(send), rbuf = buffer(send.size());
    sub->alltoall(sbuf->data(), rbuf->data(), 2);
    const auto recv = rbuf->read(send.size());
    for (std::size_t i = 0; i < m; ++i) {
      EXPECT_EQ(recv[2 * i], members[i]);
      EXPECT_EQ(recv[2 * i + 1], sub->rank());
    }
    sub->barrier();
    // Same peer, same tag on the parent and the child: each message stays on its communicator.
    if (sub->size() >= 2) {
      const int peer = sub->rank() ^ 1;
      if (peer < sub->size()) {
        const int peer_world = members[static_cast<std::size_t>(peer)];
        auto from_sub = buffer(1), from_world = buffer(1);
        auto vw = buffer_of({static_cast<std::uint8_t>(100 + me)});
        auto vs = buffer_of({static_cast<std::uint8_t>(200 + me)});
        Request r1 = sub->irecv(from_sub->data(), 1, peer, 0);
        Request r2 = c.irecv(from_world->data(), 1, peer_world, 0);
        Request s1 = c.isend(vw->data(), 1, peer_world, 0);
        Request s2 = sub->isend(vs->data(), 1, peer, 0);
        r1.wait();
        r2.wait();
        s1.wait();
        s2.wait();
        EXPECT_EQ(from_world->read(1)[0], 100 + peer_world);
        EXPECT_EQ(from_sub->read(1)[0], 200 + peer_world);
      }
    }
    auto nested = sub->split(sub->rank() / 2, sub->rank());
    ASSERT_TRUE(nested);
    EXPECT_EQ(nested->name(), "world/split/split");
    EXPECT_EQ(nested->rank(), sub->rank() % 2);
    // A negative color joins no group.
    auto none = c.split(me == 0 ? -1 : 1, 0);
    if (me == 0) {
      EXPECT_EQ(none, nullptr);
    } else {
      ASSERT_TRUE(none);
      EXPECT_EQ(none->size(), p - 1);
      EXPECT_EQ(none->rank(), me - 1);
    }
  });
}

TEST_P(CommConformance, ArgumentErrors) {
  run(ranks(2), ms(5000), [&](Communicator& c) {
    const std::string n = std::to_string(c.size());
    auto b = buffer(4 * sizeof(int) * static_cast<std::size_t>(c.size()));
    char* x = static_cast<char*>(b->data());
    Error e = expect_error([&] { c.isend(x, sizeof(int), c.size(), 0); });
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_EQ(std::string(e.what()),
              "isend: peer " + n + " is out of range [0, " + n + ") on comm 'world'");
    e = expect_error([&] { c.irecv(x, sizeof(int), -1, 0); });
    EXPECT_EQ(std::string(e.what()),
              "irecv: peer -1 is out of range [0, " + n + ") on comm 'world'");
    e = expect_error([&] { c.irecv(x, sizeof(int), 0, -3); });
    EXPECT_STREQ(e.what(), "irecv: tag -3 must be >= 0 (negative tags are reserved)");
    e = expect_error([&] { c.isend(nullptr, 4, 0, 0); });
    EXPECT_STREQ(e.what(), "isend: buffer is null but bytes = 4");
    e = expect_error([&] { c.alltoall(x, x + 1, sizeof(int)); });
    EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
    EXPECT_STREQ(e.what(), "alltoall: send and recv buffers overlap (in-place is not supported)");
    // The send block starts inside the receive buffer whatever the size (even 1).
    e = expect_error([&] { c.allgather(x + 1, x, sizeof(int)); });
    EXPECT_STREQ(e.what(), "allgather: send and recv buffers overlap (in-place is not supported)");
    e = expect_error([&] { c.allgather(nullptr, x, 8); });
    EXPECT_STREQ(e.what(), "allgather: null buffer with 8 bytes per rank");
    // Nothing was sent: the communicator still works.
    c.barrier();
  });
}

TEST_P(CommConformance, RecvTimeoutNamesRankPeerAndOperation) {
  const int p = ranks(4);
  if (p < 4) GTEST_SKIP() << "needs 4 ranks";
  run(p, ms(10000), [&](Communicator& c) {
    // ring group {1, 3}: rank 3 waits for group rank 0 (world 1), which never sends.
    auto sub = c.split(c.rank() % 2, c.rank());
    sub->set_name("ring");
    sub->set_timeout(ms(150));
    if (c.rank() == 3) {
      auto b = buffer(4);
      const auto t0 = std::chrono::steady_clock::now();
      Error e = expect_error([&] { sub->irecv(b->data(), 4, 0, 7).wait(); });
      const auto elapsed = std::chrono::steady_clock::now() - t0;
      EXPECT_EQ(e.kind(), ErrorKind::timeout);
      const std::string want =
          "rank 3: timed out after 150 ms waiting for recv from rank 0 (world rank 1) (tag 7) on "
          "comm 'ring'";
      const std::string what = e.what();
      if (GetParam().timeout_message_adds_detail) {
        EXPECT_EQ(what.substr(0, want.size()), want);
      } else {
        EXPECT_EQ(what, want);
      }
      EXPECT_GE(elapsed, ms(150));
      EXPECT_LT(elapsed, ms(5000));
    }
    c.barrier();  // the others stay alive, but never send
  });
}

TEST_P(CommConformance, SecondsInTimeoutMessage) {
  USP_CONFORMANCE_NEEDS(unmatched_self_recv_times_out,
                        "wait out the timeout on a receive from itself that nothing sends");
  run(1, ms(5000), [&](Communicator& c) {
    c.set_timeout(ms(1200));
    auto b = buffer(4);
    Error e = expect_error([&] { c.irecv(b->data(), 4, 0, 0).wait(); });
    EXPECT_EQ(e.kind(), ErrorKind::timeout);
    EXPECT_STREQ(e.what(),
                 "rank 0: timed out after 1.2 s waiting for recv from rank 0 (tag 0) on comm "
                 "'world'");
  });
}

TEST_P(CommConformance, CollectiveTimeoutNamesOperation) {
  const int p = ranks(4);
  if (p < 2) GTEST_SKIP() << "needs 2 ranks";
  run(p, ms(10000), [&](Communicator& c) {
    auto late = c.split(0, c.rank());
    late->set_name("late");
    late->set_timeout(ms(150));
    if (c.rank() == 0) {
      std::this_thread::sleep_for(ms(600));
      late->set_timeout(ms(10000));
      late->barrier();  // completes the barrier the others gave up on
    } else {
      Error e = expect_error([&] { late->barrier(); });
      EXPECT_EQ(e.kind(), ErrorKind::timeout);
      const std::string what = e.what();
      const std::string head =
          "rank " + std::to_string(c.rank()) + ": timed out after 150 ms waiting for barrier";
      EXPECT_EQ(what.rfind(head, 0), 0u) << what;
      EXPECT_NE(what.find("on comm 'late'"), std::string::npos) << what;
    }
    c.barrier();
  });
}

TEST_P(CommConformance, SizeMismatchIsNamed) {
  USP_CONFORMANCE_NEEDS(detects_size_mismatch, "detect a receive longer than its message");
  if (ranks(2) < 2) GTEST_SKIP() << "needs 2 ranks";
  run(ranks(2), ms(5000), [&](Communicator& c) {
    auto b = buffer(16);
    if (c.rank() == 0) {
      c.isend(b->data(), 8, 1, 4).wait();
    } else if (c.rank() == 1) {
      Error e = expect_error([&] { c.irecv(b->data(), 16, 0, 4).wait(); });
      EXPECT_EQ(e.kind(), ErrorKind::comm);
      EXPECT_EQ(std::string(e.what()),
                "rank 1: recv from rank 0 (tag 4) on comm 'world': the receive expects 16 bytes "
                "but the message " +
                    GetParam().mismatch_says(8) + " (sizes must match)");
    }
    c.barrier();
  });
}

TEST_P(CommConformance, AFailedRankDoesNotLeaveOthersWaiting) {
  const int p = ranks(4);
  if (p < 2) GTEST_SKIP() << "needs 2 ranks";
  const auto t0 = std::chrono::steady_clock::now();
  std::exception_ptr err = GetParam().run(p, ms(2000), [&](Communicator& c) {
    if (c.rank() == 0) {
      std::this_thread::sleep_for(ms(50));
      throw std::runtime_error("rank 0 fails");
    }
    auto b = buffer(4);
    Error e = expect_error([&] { c.irecv(b->data(), 4, 0, 1).wait(); });
    if (GetParam().in_process) {
      EXPECT_EQ(e.kind(), ErrorKind::comm);
      EXPECT_EQ(std::string(e.what()), "rank " + std::to_string(c.rank()) +
                                           ": aborted because rank 0 failed: rank 0 fails");
    } else {
      EXPECT_EQ(e.kind(), ErrorKind::timeout) << e.what();
    }
  });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, ms(GetParam().in_process ? 1500 : 8000));
  if (err) {
    try {
      std::rethrow_exception(err);
    } catch (const std::exception& e) {
      EXPECT_STREQ(e.what(), "rank 0 fails");
      EXPECT_EQ(dynamic_cast<const Error*>(&e), nullptr) << "a secondary error won: " << e.what();
    }
  }
}

TEST_P(CommConformance, LargeMessage) {
  // The tag-1 receive is posted before the tag-0 one.
  USP_CONFORMANCE_NEEDS(matches_tags, "match messages by tag");
  if (ranks(2) < 2) GTEST_SKIP() << "needs 2 ranks";
  constexpr std::size_t kBytes = 64u << 20;
  std::vector<std::uint8_t> a(kBytes), b(kBytes);  // read by every rank thread
  for (std::size_t i = 0; i < kBytes; i += 4096) {
    a[i] = static_cast<std::uint8_t>(i >> 12);
    b[i] = static_cast<std::uint8_t>(~(i >> 12));
  }
  a.back() = 0x5a;
  b.back() = 0xa5;
  run(ranks(2), ms(60000), [&](Communicator& c) {
    if (c.rank() == 0) {
      auto sa = buffer_of(a), sb = buffer_of(b);
      Request s = c.isend(sa->data(), kBytes, 1, 0);  // before its receive
      if (GetParam().eager_sends) s.wait();           // the payload waits in the receiver's box
      c.barrier();                                    // rank 1 posts the next receive first
      c.isend(sb->data(), kBytes, 1, 1).wait();       // into the posted buffer
      s.wait();
      c.barrier();
    } else if (c.rank() == 1) {
      auto ra = buffer(kBytes), rb = buffer(kBytes);
      c.barrier();
      Request r = c.irecv(rb->data(), kBytes, 0, 1);
      c.irecv(ra->data(), kBytes, 0, 0).wait();
      r.wait();
      c.barrier();
      EXPECT_TRUE(ra->read(kBytes) == a);
      EXPECT_TRUE(rb->read(kBytes) == b);
    } else {
      c.barrier();
      c.barrier();
    }
  });
}

TEST_P(CommConformance, RequestSemantics) {
  run(ranks(2), ms(5000), [&](Communicator& c) {
    const int me = c.rank(), p = c.size();
    const int next = (me + 1) % p, prev = (me - 1 + p) % p;
    Request empty;
    EXPECT_FALSE(empty.valid());
    empty.wait();  // no-op
    EXPECT_TRUE(empty.test());
    // test() polls until the message is there; the request is spent afterwards.
    auto v = buffer_of({static_cast<std::uint8_t>(10 + me)}), got = buffer(1);
    Request r = c.irecv(got->data(), 1, prev, 0);
    EXPECT_TRUE(r.valid());
    if (me == 0) std::this_thread::sleep_for(ms(20));
    Request s = c.isend(v->data(), 1, next, 0);
    while (!r.test()) std::this_thread::yield();
    EXPECT_FALSE(r.valid());
    EXPECT_EQ(got->read(1)[0], 10 + prev);
    s.wait();
    r.wait();  // no-op after completion
    // Move-assigning over a pending receive waits for it first.
    auto a = buffer(1), b = buffer(1);
    auto va = buffer_of({static_cast<std::uint8_t>(100 + me)});
    auto vb = buffer_of({static_cast<std::uint8_t>(200 + me)});
    Request ra = c.irecv(a->data(), 1, prev, 1);
    Request sa = c.isend(va->data(), 1, next, 1);
    Request sb = c.isend(vb->data(), 1, next, 2);
    ra = c.irecv(b->data(), 1, prev, 2);
    EXPECT_EQ(a->read(1)[0], 100 + prev);
    ra.wait();
    EXPECT_EQ(b->read(1)[0], 200 + prev);
    sa.wait();
    sb.wait();
    // A request dropped un-waited completes in its destructor.
    auto d = buffer(1), vd = buffer_of({static_cast<std::uint8_t>(30 + me)});
    {
      Request rd = c.irecv(d->data(), 1, prev, 3);
      Request sd = c.isend(vd->data(), 1, next, 3);
    }
    EXPECT_EQ(d->read(1)[0], 30 + prev);
  });
}

TEST_P(CommConformance, DroppedRequestTimesOutQuietly) {
  const auto t0 = std::chrono::steady_clock::now();
  run(1, ms(100), [&](Communicator& c) {
    auto b = buffer(4);
    Request r = c.irecv(b->data(), 4, 0, 0);  // never satisfied: the destructor swallows
  });
  EXPECT_LT(std::chrono::steady_clock::now() - t0, ms(3000));
}

}  // namespace usp::test
