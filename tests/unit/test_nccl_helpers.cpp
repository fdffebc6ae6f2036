// Host-side logic of the NCCL communicator, testable without NCCL or a GPU: when deferred
// point-to-point operations are launched as a group (comm/p2p_group.hpp) and the
// one-GPU-per-process check (comm/gpu_assignment.hpp).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "comm/nccl/gpu_assignment.hpp"
#include "comm/nccl/p2p_group.hpp"

namespace {

using usp::detail::GpuSlot;
using usp::detail::is_ring_hop;
using usp::detail::P2PPosting;
using usp::detail::shared_gpu_message;

P2PPosting send(int peer) {
  return {true, peer};
}
P2PPosting recv(int peer) {
  return {false, peer};
}

TEST(NcclGroupRule, RingHopLaunchesInEitherOrderOnEveryRank) {
  for (int size : {1, 2, 3, 4, 8}) {
    for (int rank = 0; rank < size; ++rank) {
      const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
      EXPECT_TRUE(is_ring_hop({recv(prev), send(next)}, rank, size)) << rank << "/" << size;
      EXPECT_TRUE(is_ring_hop({send(next), recv(prev)}, rank, size)) << rank << "/" << size;
      // the reverse ring and a shift by 2 are hops too
      EXPECT_TRUE(is_ring_hop({recv(next), send(prev)}, rank, size)) << rank << "/" << size;
      EXPECT_TRUE(
          is_ring_hop({recv((rank + size - 2) % size), send((rank + 2) % size)}, rank, size))
          << rank << "/" << size;
    }
  }
  EXPECT_TRUE(is_ring_hop({send(0), recv(0)}, 0, 1));  // world 1: a send to and receive from self
}

TEST(NcclGroupRule, AnythingElseWaitsForTheFirstWait) {
  // one posting, two of a kind, three postings
  EXPECT_FALSE(is_ring_hop({recv(3)}, 0, 4));
  EXPECT_FALSE(is_ring_hop({send(1)}, 0, 4));
  EXPECT_FALSE(is_ring_hop({send(1), send(3)}, 0, 4));
  EXPECT_FALSE(is_ring_hop({recv(3), recv(1)}, 0, 4));
  EXPECT_FALSE(is_ring_hop({recv(3), send(1), recv(1)}, 0, 4));
  EXPECT_FALSE(is_ring_hop({}, 0, 4));
  // send to and receive from the same neighbour on a ring of more than two: the neighbour posts
  // the matching halves in other pairs, so launching this pair alone could deadlock
  EXPECT_FALSE(is_ring_hop({send(1), recv(1)}, 0, 4));
  EXPECT_FALSE(is_ring_hop({recv(3), send(3)}, 0, 4));
  EXPECT_FALSE(is_ring_hop({send(2), recv(1)}, 0, 4));
  // with two ranks the only neighbour is both next and previous
  EXPECT_TRUE(is_ring_hop({send(1), recv(1)}, 0, 2));
  // out-of-range peers or ranks never launch
  EXPECT_FALSE(is_ring_hop({send(4), recv(0)}, 0, 4));
  EXPECT_FALSE(is_ring_hop({send(1), recv(-1)}, 0, 4));
  EXPECT_FALSE(is_ring_hop({send(1), recv(3)}, 4, 4));
}

// Every rank posting the same ring program gets groups that meet its neighbours' groups: simulate
// the backward ring's postings (K/V hop, then the dK/dV hop) and check that each launched group of
// rank r receives exactly what rank r − 1's group of the same index sends.
TEST(NcclGroupRule, BackwardRingGroupsMatchAcrossRanks) {
  const int size = 5, steps = 4;
  std::vector<std::vector<std::vector<P2PPosting>>> groups(size);
  for (int rank = 0; rank < size; ++rank) {
    const int next = (rank + 1) % size, prev = (rank + size - 1) % size;
    std::vector<P2PPosting> pending;
    auto post = [&](P2PPosting p) {
      pending.push_back(p);
      if (is_ring_hop(pending, rank, size)) {
        groups[rank].push_back(pending);
        pending.clear();
      }
    };
    for (int step = 0; step < steps; ++step) {
      post(recv(prev));  // K/V for the next step
      post(send(next));
      post(recv(prev));  // partial dK/dV
      post(send(next));
    }
    EXPECT_TRUE(pending.empty()) << "rank " << rank << " left postings unlaunched";
  }
  for (int rank = 0; rank < size; ++rank) {
    const int prev = (rank + size - 1) % size;
    ASSERT_EQ(groups[rank].size(), groups[prev].size());
    for (std::size_t g = 0; g < groups[rank].size(); ++g) {
      int receives_from_prev = 0, prev_sends_to_me = 0;
      for (const P2PPosting& p : groups[rank][g]) receives_from_prev += !p.send && p.peer == prev;
      for (const P2PPosting& p : groups[prev][g]) prev_sends_to_me += p.send && p.peer == rank;
      EXPECT_EQ(receives_from_prev, 1) << "rank " << rank << " group " << g;
      EXPECT_EQ(prev_sends_to_me, 1) << "rank " << rank << " group " << g;
    }
  }
}

TEST(NcclGpuAssignment, DistinctGpusPass) {
  EXPECT_EQ(shared_gpu_message({}), "");
  EXPECT_EQ(shared_gpu_message({{"a", "0000:01:00.0", 0, 1}}), "");
  EXPECT_EQ(shared_gpu_message({{"a", "0000:01:00.0", 0, 2},
                                {"a", "0000:02:00.0", 1, 2},
                                {"b", "0000:01:00.0", 0, 2},
                                {"b", "0000:02:00.0", 1, 2}}),
            "");
}

TEST(NcclGpuAssignment, SharedGpuNamesRanksGpuHostAndFix) {
  const std::string m = shared_gpu_message(
      {{"a", "0000:01:00.0", 0, 1}, {"b", "0000:01:00.0", 0, 1}, {"a", "0000:01:00.0", 0, 1}});
  EXPECT_NE(m.find("ranks 0 and 2 both use GPU 0 (PCI 0000:01:00.0) on host 'a'"),
            std::string::npos)
      << m;
  EXPECT_NE(m.find("2 ranks run there and it has 1 GPU(s)"), std::string::npos) << m;
  EXPECT_NE(m.find("only world size 1"), std::string::npos) << m;
  EXPECT_NE(m.find("cuda-local"), std::string::npos) << m;
}

}  // namespace
