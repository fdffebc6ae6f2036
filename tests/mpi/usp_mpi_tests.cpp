// The MPI communicator, run under mpirun (any world size >= 2; CTest uses 4). Every test is
// collective: all ranks run it. A rank's failure fails the whole run.
#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "mpi/mpi_gtest_main.hpp"
#include "unit/comm_payload.hpp"
#include "usp/comm.hpp"
#include "usp/comm_mpi.hpp"
#include "usp/error.hpp"
#include "usp/mesh.hpp"

namespace {

using namespace std::chrono_literals;
using usp::Communicator;
using usp::Error;
using usp::ErrorKind;
using usp::Request;

using usp::mpi_test::world;

using usp::test::make_payload;
using usp::test::payload;

// A seed every rank agrees on (rank 0's random one).
std::uint32_t shared_seed() {
  std::uint32_t mine = std::random_device{}();
  std::vector<std::uint32_t> all(static_cast<std::size_t>(world().size()));
  world().allgather(&mine, all.data(), sizeof mine);
  return all[0];
}

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

// Restores the world timeout after a test that shortens it.
struct TimeoutScope {
  std::chrono::milliseconds saved = world().timeout();
  ~TimeoutScope() { world().set_timeout(saved); }
};

TEST(MpiComm, RankSizeBackend) {
  Communicator& c = world();
  EXPECT_EQ(c.backend(), "mpi");
  EXPECT_EQ(c.name(), "world");
  EXPECT_EQ(c.rank(), usp::mpi_test::session()->rank());
  EXPECT_EQ(c.size(), usp::mpi_test::session()->size());
  EXPECT_TRUE(usp::mpi_built());
  const std::string lvl = usp::mpi_test::session()->thread_level();
  EXPECT_TRUE(lvl == "MPI_THREAD_MULTIPLE" || lvl == "MPI_THREAD_SERIALIZED") << lvl;
  std::vector<int> ranks(static_cast<std::size_t>(c.size()));
  const int me = c.rank();
  c.allgather(&me, ranks.data(), sizeof me);
  for (int i = 0; i < c.size(); ++i) EXPECT_EQ(ranks[static_cast<std::size_t>(i)], i);
}

TEST(MpiComm, SpreadOverExpectedHosts) {
  usp::mpi_test::expect_spread_over_hosts();
}

TEST(MpiComm, SeveralInFlightOutOfOrderTags) {
  Communicator& c = world();
  const std::uint32_t seed = shared_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int p = c.size(), me = c.rank();
  constexpr int kTags = 6;
  auto size_of = [](int src, int dst, int t) {
    return static_cast<std::size_t>(1 + 997 * src + 31 * dst + 4099 * t);
  };
  std::mt19937 rng(seed + static_cast<std::uint32_t>(me));
  std::vector<std::pair<int, int>> order;
  for (int src = 0; src < p; ++src)
    for (int t = 0; t < kTags; ++t) order.emplace_back(src, t);  // self included
  std::shuffle(order.begin(), order.end(), rng);
  std::vector<std::vector<std::uint8_t>> got(order.size());
  std::vector<Request> reqs;
  for (std::size_t i = 0; i < order.size(); ++i) {
    auto [src, t] = order[i];
    got[i].resize(size_of(src, me, t));
    reqs.push_back(c.irecv(got[i].data(), got[i].size(), src, t));
  }
  std::vector<std::vector<std::uint8_t>> sent;
  sent.reserve(static_cast<std::size_t>(p * kTags));
  std::vector<Request> sends;
  for (int t = kTags - 1; t >= 0; --t)
    for (int dst = 0; dst < p; ++dst) {
      sent.push_back(make_payload(seed, me * 100 + dst, t, size_of(me, dst, t)));
      sends.push_back(c.isend(sent.back().data(), sent.back().size(), dst, t));
    }
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
}

TEST(MpiComm, OrderedPerSourceAndTag) {
  Communicator& c = world();
  const int p = c.size(), me = c.rank();
  constexpr int kMsgs = 100;
  const int next = (me + 1) % p, prev = (me - 1 + p) % p;
  std::vector<std::array<int, 2>> sent(kMsgs), got(kMsgs);
  std::vector<Request> sends, recvs;
  for (int i = 0; i < kMsgs / 2; ++i)
    recvs.push_back(c.irecv(got[static_cast<std::size_t>(i)].data(), sizeof(int) * 2, prev, 9));
  for (int i = 0; i < kMsgs; ++i) {
    sent[static_cast<std::size_t>(i)] = {me, i};
    sends.push_back(c.isend(sent[static_cast<std::size_t>(i)].data(), sizeof(int) * 2, next, 9));
  }
  for (int i = kMsgs / 2; i < kMsgs; ++i)
    recvs.push_back(c.irecv(got[static_cast<std::size_t>(i)].data(), sizeof(int) * 2, prev, 9));
  for (auto& r : recvs) r.wait();
  for (auto& s : sends) s.wait();
  for (int i = 0; i < kMsgs; ++i) {
    EXPECT_EQ(got[static_cast<std::size_t>(i)][0], prev);
    EXPECT_EQ(got[static_cast<std::size_t>(i)][1], i);
  }
}

TEST(MpiComm, CollectivesRandomPayloads) {
  Communicator& c = world();
  const std::uint32_t seed = shared_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  const int p = c.size(), me = c.rank();
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{4099}, std::size_t{3} << 20}) {
    std::vector<std::uint8_t> send(n * static_cast<std::size_t>(p)), recv(send.size());
    for (int j = 0; j < p; ++j) {
      auto blk = make_payload(seed, me, j, n);
      std::copy(blk.begin(), blk.end(), send.begin() + static_cast<long>(j * n));
    }
    c.alltoall(send.data(), recv.data(), n);
    for (int i = 0; i < p; ++i) {
      auto want = make_payload(seed, i, me, n);
      EXPECT_TRUE(std::equal(want.begin(), want.end(), recv.begin() + static_cast<long>(i * n)))
          << "alltoall n=" << n << " block " << i;
    }
    auto mine = make_payload(seed + 1, me, 0, n);
    std::vector<std::uint8_t> all(n * static_cast<std::size_t>(p));
    c.allgather(mine.data(), all.data(), n);
    for (int i = 0; i < p; ++i) {
      auto want = make_payload(seed + 1, i, 0, n);
      EXPECT_TRUE(std::equal(want.begin(), want.end(), all.begin() + static_cast<long>(i * n)))
          << "allgather n=" << n << " block " << i;
    }
    c.barrier();
  }
}

TEST(MpiComm, SplitAndNestedSplit) {
  Communicator& c = world();
  const int p = c.size(), me = c.rank();
  auto sub = c.split(me % 2, -me);  // descending world rank
  ASSERT_TRUE(sub);
  std::vector<int> members;
  for (int r = p - 1; r >= 0; --r)
    if (r % 2 == me % 2) members.push_back(r);
  ASSERT_EQ(sub->size(), static_cast<int>(members.size()));
  EXPECT_EQ(members[static_cast<std::size_t>(sub->rank())], me);
  EXPECT_EQ(sub->name(), "world/split");
  EXPECT_EQ(sub->backend(), "mpi");
  std::vector<int> gathered(members.size());
  sub->allgather(&me, gathered.data(), sizeof me);
  EXPECT_EQ(gathered, members);
  // Same tag on the parent and the child: messages stay on their own communicator.
  if (sub->size() >= 2) {
    const int peer = sub->rank() ^ 1;
    if (peer < sub->size()) {
      const int peer_world = members[static_cast<std::size_t>(peer)];
      int from_sub = -1, from_world = -1;
      Request r1 = sub->irecv(&from_sub, sizeof(int), peer, 0);
      Request r2 = c.irecv(&from_world, sizeof(int), peer_world, 0);
      const int vw = 1000 + me, vs = 2000 + me;
      Request s1 = c.isend(&vw, sizeof vw, peer_world, 0);
      Request s2 = sub->isend(&vs, sizeof vs, peer, 0);
      r1.wait();
      r2.wait();
      s1.wait();
      s2.wait();
      EXPECT_EQ(from_world, 1000 + peer_world);
      EXPECT_EQ(from_sub, 2000 + peer_world);
    }
  }
  auto nested = sub->split(sub->rank() / 2, sub->rank());
  ASSERT_TRUE(nested);
  EXPECT_EQ(nested->name(), "world/split/split");
  EXPECT_EQ(nested->rank(), sub->rank() % 2);
  auto none = c.split(me == 0 ? -1 : 0, 0);
  if (me == 0) {
    EXPECT_EQ(none, nullptr);
  } else {
    ASSERT_TRUE(none);
    EXPECT_EQ(none->size(), p - 1);
    EXPECT_EQ(none->rank(), me - 1);
  }
}

TEST(MpiComm, MeshSubCommunicatorsMatchCoordinates) {
  Communicator& c = world();
  const int p = c.size();
  std::vector<usp::MeshShape> shapes;
  for (int u = 1; u <= p; ++u)
    if (p % u == 0)
      for (auto pl : {usp::Placement::ulysses_inner, usp::Placement::ring_inner}) {
        usp::MeshShape s;
        s.ulysses = u;
        s.ring = p / u;
        s.placement = pl;
        shapes.push_back(s);
      }
  for (const auto& s : shapes) {
    usp::Mesh m = usp::make_mesh(c, s);
    const usp::MeshCoord co = usp::mesh_coord(s, c.rank());
    EXPECT_EQ(m.ulysses->rank(), co.ulysses);
    EXPECT_EQ(m.ring->rank(), co.ring);
    EXPECT_EQ(m.ulysses->size(), s.ulysses);
    EXPECT_EQ(m.ring->size(), s.ring);
    const int me = c.rank();
    std::vector<int> rg(static_cast<std::size_t>(s.ring));
    m.ring->allgather(&me, rg.data(), sizeof me);
    for (int i = 0; i < s.ring; ++i)
      EXPECT_EQ(rg[static_cast<std::size_t>(i)],
                usp::mesh_rank(s, usp::MeshCoord{co.data, co.ulysses, i}));
  }
  usp::MeshShape bad;
  bad.ulysses = p + 1;
  Error e = expect_error([&] { usp::make_mesh(c, bad); });
  EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
}

TEST(MpiComm, LargeMessage) {
  Communicator& c = world();
  constexpr std::size_t kBytes = 64u << 20;
  const int p = c.size(), me = c.rank();
  std::vector<std::uint8_t> out(kBytes), in(kBytes);
  for (std::size_t i = 0; i < kBytes; i += 4096) out[i] = static_cast<std::uint8_t>(me + i / 4096);
  out.back() = static_cast<std::uint8_t>(0x40 + me);
  const int next = (me + 1) % p, prev = (me - 1 + p) % p;
  Request r = c.irecv(in.data(), kBytes, prev, 1);
  Request s = c.isend(out.data(), kBytes, next, 1);
  r.wait();
  s.wait();
  for (std::size_t i = 0; i < kBytes; i += 4096)
    ASSERT_EQ(in[i], static_cast<std::uint8_t>(prev + i / 4096)) << i;
  EXPECT_EQ(in.back(), static_cast<std::uint8_t>(0x40 + prev));
}

TEST(MpiComm, RecvTimeoutNamesRankPeerAndOperation) {
  Communicator& c = world();
  auto sub = c.split(c.rank() % 2, c.rank());
  sub->set_name("ring");
  sub->set_timeout(200ms);
  if (c.rank() == 1) {  // group {1, 3, ...}: waits for group rank 1 (world 3) or itself
    const int peer = sub->size() > 1 ? 1 : 0;
    const int peer_world = peer == 1 ? 3 : 1;
    int x = 0;
    const auto t0 = std::chrono::steady_clock::now();
    Error e = expect_error([&] { sub->irecv(&x, sizeof x, peer, 7).wait(); });
    const auto elapsed = std::chrono::steady_clock::now() - t0;
    EXPECT_EQ(e.kind(), ErrorKind::timeout);
    const std::string world_part =
        peer != peer_world ? " (world rank " + std::to_string(peer_world) + ")" : "";
    EXPECT_EQ(std::string(e.what()), "rank 1: timed out after 200 ms waiting for recv from rank " +
                                         std::to_string(peer) + world_part +
                                         " (tag 7) on comm 'ring'");
    EXPECT_GE(elapsed, 200ms);
    EXPECT_LT(elapsed, 5s);
  }
  c.barrier();
}

TEST(MpiComm, CollectiveTimeoutNamesOperation) {
  Communicator& c = world();
  auto late = c.split(0, c.rank());
  late->set_name("late");
  late->set_timeout(150ms);
  if (c.rank() == 0) {
    std::this_thread::sleep_for(600ms);
    late->set_timeout(10s);
    late->barrier();  // completes the barrier the others gave up on
  } else {
    Error e = expect_error([&] { late->barrier(); });
    EXPECT_EQ(e.kind(), ErrorKind::timeout);
    EXPECT_EQ(std::string(e.what()), "rank " + std::to_string(c.rank()) +
                                         ": timed out after 150 ms waiting for barrier on comm "
                                         "'late'");
  }
  c.barrier();
}

TEST(MpiComm, SizeMismatchIsNamed) {
  Communicator& c = world();
  if (c.rank() == 0) {
    double d = 1;
    c.isend(&d, sizeof d, 1, 4).wait();
  } else if (c.rank() == 1) {
    double d[2] = {0, 0};
    Error e = expect_error([&] { c.irecv(d, sizeof d, 0, 4).wait(); });
    EXPECT_EQ(e.kind(), ErrorKind::comm);
    EXPECT_EQ(std::string(e.what()),
              "rank 1: recv from rank 0 (tag 4) on comm 'world': the receive expects 16 bytes but "
              "the message is shorter (sizes must match)");
  }
  c.barrier();
}

TEST(MpiComm, ArgumentErrors) {
  Communicator& c = world();
  int x = 0;
  Error e = expect_error([&] { c.isend(&x, sizeof x, c.size(), 0); });
  EXPECT_EQ(e.kind(), ErrorKind::invalid_argument);
  EXPECT_EQ(std::string(e.what()), "isend: peer " + std::to_string(c.size()) +
                                       " is out of range [0, " + std::to_string(c.size()) +
                                       ") on comm 'world'");
  e = expect_error([&] { c.irecv(&x, sizeof x, 0, -1); });
  EXPECT_STREQ(e.what(), "irecv: tag -1 must be >= 0 (negative tags are reserved)");
}

}  // namespace

int main(int argc, char** argv) {
  return usp::mpi_test::run_all(argc, argv, 2, std::chrono::seconds(60));
}
