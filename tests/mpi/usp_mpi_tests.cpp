// What is particular to the MPI communicator, run under mpirun (any world size >= 2; CTest uses 4):
// thread level, hosts, mesh sub-communicators, its collective timeout message. What every backend
// does is in the conformance suite (usp_mpi_conformance.cpp). Every test is collective: all ranks
// run it. A rank's failure fails the whole run.
#include <gtest/gtest.h>

#include <chrono>
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

using usp::mpi_test::world;
using usp::test::expect_error;

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

}  // namespace

int main(int argc, char** argv) {
  return usp::mpi_test::run_all(argc, argv, 2, std::chrono::seconds(60));
}
