// The process mesh: coordinates, placements and the sub-communicators of make_mesh.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "support/support.hpp"
#include "usp/error.hpp"
#include "usp/mesh.hpp"

namespace {

using namespace std::chrono_literals;
using usp::MeshCoord;
using usp::MeshShape;
using usp::Placement;

MeshShape shape(int d, int u, int r, Placement p = Placement::ulysses_inner) {
  return {.data = d, .ulysses = u, .ring = r, .placement = p};
}

// Groups of world ranks sharing every coordinate but `which` (0 ulysses group, 1 ring group),
// listed in order of the varying coordinate.
std::vector<std::vector<int>> groups(const MeshShape& s, int which) {
  std::vector<std::vector<int>> out;
  for (int d = 0; d < s.data; ++d) {
    const int outer = which == 0 ? s.ring : s.ulysses;
    const int inner = which == 0 ? s.ulysses : s.ring;
    for (int o = 0; o < outer; ++o) {
      std::vector<int> g;
      for (int i = 0; i < inner; ++i)
        g.push_back(usp::mesh_rank(s, which == 0 ? MeshCoord{d, i, o} : MeshCoord{d, o, i}));
      out.push_back(g);
    }
  }
  return out;
}

using Groups = std::vector<std::vector<int>>;

TEST(Mesh, PlacementNames) {
  EXPECT_STREQ(usp::placement_name(Placement::ulysses_inner), "ulysses-inner");
  EXPECT_STREQ(usp::placement_name(Placement::ring_inner), "ring-inner");
  for (Placement p : {Placement::ulysses_inner, Placement::ring_inner})
    EXPECT_EQ(usp::parse_placement(usp::placement_name(p)), p);
  EXPECT_EQ(usp::parse_placement("ring_inner"), Placement::ring_inner);
  USP_EXPECT_ERROR_IS(usp::parse_placement("diagonal"), invalid_argument,
                      "placement 'diagonal' is not one of: ulysses-inner, ring-inner");
}

TEST(Mesh, ValidateNamesTheRule) {
  EXPECT_NO_THROW(shape(2, 2, 2).validate(8));
  USP_EXPECT_ERROR_IS(shape(1, 3, 3).validate(8), invalid_argument,
                      "world size 8 != data 1 \u00d7 ulysses 3 \u00d7 ring 3 = 9");
  EXPECT_EQ(usp::test::error_message([] { shape(1, 0, 8).validate(8); }),
            "mesh: ulysses degree must be >= 1, got 0");
  EXPECT_THROW(shape(0, 2, 4).validate(8), usp::Error);
  EXPECT_THROW(shape(1, 2, -4).validate(-8), usp::Error);
}

// s's ulysses and ring groups, and the coordinate of `rank`.
void expect_mesh(const MeshShape& s, const Groups& ulysses, const Groups& ring, int rank,
                 MeshCoord want) {
  EXPECT_EQ(groups(s, 0), ulysses);
  EXPECT_EQ(groups(s, 1), ring);
  const MeshCoord c = usp::mesh_coord(s, rank);
  EXPECT_EQ(c.data, want.data);
  EXPECT_EQ(c.ulysses, want.ulysses);
  EXPECT_EQ(c.ring, want.ring);
}

TEST(Mesh, UlyssesInner2x4) {  // the seed's u=2, r=4: ulysses groups contiguous, ring strided
  expect_mesh(shape(1, 2, 4), {{0, 1}, {2, 3}, {4, 5}, {6, 7}}, {{0, 2, 4, 6}, {1, 3, 5, 7}}, 5,
              {0, 1, 2});
}

TEST(Mesh, UlyssesInner4x2) {
  expect_mesh(shape(1, 4, 2), {{0, 1, 2, 3}, {4, 5, 6, 7}}, {{0, 4}, {1, 5}, {2, 6}, {3, 7}}, 6,
              {0, 2, 1});
}

TEST(Mesh, RingInner) {
  expect_mesh(shape(1, 2, 4, Placement::ring_inner), {{0, 4}, {1, 5}, {2, 6}, {3, 7}},
              {{0, 1, 2, 3}, {4, 5, 6, 7}}, 5, {0, 1, 1});
}

TEST(Mesh, DataParallelOuter) {
  // Rank 5: second replica, local rank 1.
  expect_mesh(shape(2, 2, 2), {{0, 1}, {2, 3}, {4, 5}, {6, 7}}, {{0, 2}, {1, 3}, {4, 6}, {5, 7}}, 5,
              {1, 1, 0});
  const MeshShape ri = shape(2, 2, 2, Placement::ring_inner);
  EXPECT_EQ(groups(ri, 1), (Groups{{0, 1}, {2, 3}, {4, 5}, {6, 7}}));
}

TEST(Mesh, RoundTripEveryRank) {
  for (Placement p : {Placement::ulysses_inner, Placement::ring_inner})
    for (int d : {1, 2, 3})
      for (int u : {1, 2, 3, 4})
        for (int r : {1, 2, 5}) {
          const MeshShape s = shape(d, u, r, p);
          std::vector<int> hits(static_cast<std::size_t>(s.world()), 0);
          for (int w = 0; w < s.world(); ++w) {
            const MeshCoord c = usp::mesh_coord(s, w);
            ASSERT_EQ(usp::mesh_rank(s, c), w) << d << "x" << u << "x" << r;
            ASSERT_TRUE(c.data >= 0 && c.data < d && c.ulysses >= 0 && c.ulysses < u &&
                        c.ring >= 0 && c.ring < r);
            hits[static_cast<std::size_t>(usp::mesh_rank(s, c))]++;
          }
          for (int h : hits) ASSERT_EQ(h, 1);
        }
}

TEST(Mesh, CoordinateRangeErrors) {
  const MeshShape s = shape(1, 2, 4);
  EXPECT_THROW(usp::mesh_coord(s, 8), usp::Error);
  EXPECT_THROW(usp::mesh_coord(s, -1), usp::Error);
  EXPECT_EQ(usp::test::error_message([&] {
              usp::mesh_rank(s, MeshCoord{0, 2, 0});
            }),
            "mesh_rank: ulysses rank 2 is out of range [0, 2)");
}

TEST(Mesh, SubCommunicatorsMatchCoordinates) {
  for (Placement p : {Placement::ulysses_inner, Placement::ring_inner})
    for (MeshShape s : {shape(1, 2, 4, p), shape(1, 4, 2, p), shape(2, 2, 2, p), shape(1, 1, 1, p),
                        shape(1, 1, 3, p), shape(3, 1, 1, p)}) {
      SCOPED_TRACE(std::to_string(s.data) + "x" + std::to_string(s.ulysses) + "x" +
                   std::to_string(s.ring) + " " + usp::placement_name(p));
      usp::run_local(
          s.world(),
          [&](usp::Communicator& world) {
            usp::Mesh m = usp::make_mesh(world, s);
            const MeshCoord c = usp::mesh_coord(s, world.rank());
            EXPECT_EQ(m.coord.data, c.data);
            EXPECT_EQ(m.coord.ulysses, c.ulysses);
            EXPECT_EQ(m.coord.ring, c.ring);
            ASSERT_EQ(m.ulysses->size(), s.ulysses);
            ASSERT_EQ(m.ring->size(), s.ring);
            ASSERT_EQ(m.sp->size(), s.ulysses * s.ring);
            EXPECT_EQ(m.ulysses->rank(), c.ulysses);
            EXPECT_EQ(m.ring->rank(), c.ring);
            EXPECT_EQ(m.sp->rank(), world.rank() % (s.ulysses * s.ring));
            EXPECT_EQ(m.ulysses->name(), "ulysses");
            EXPECT_EQ(m.ring->name(), "ring");
            EXPECT_EQ(m.sp->name(), "sp");
            // Who is in my groups, by world rank, in group-rank order.
            const int me = world.rank();
            std::vector<int> ug(static_cast<std::size_t>(s.ulysses));
            m.ulysses->allgather(&me, ug.data(), sizeof me);
            for (int i = 0; i < s.ulysses; ++i)
              EXPECT_EQ(ug[static_cast<std::size_t>(i)],
                        usp::mesh_rank(s, MeshCoord{c.data, i, c.ring}));
            std::vector<int> rg(static_cast<std::size_t>(s.ring));
            m.ring->allgather(&me, rg.data(), sizeof me);
            for (int i = 0; i < s.ring; ++i)
              EXPECT_EQ(rg[static_cast<std::size_t>(i)],
                        usp::mesh_rank(s, MeshCoord{c.data, c.ulysses, i}));
            std::vector<int> sg(static_cast<std::size_t>(s.ulysses * s.ring));
            m.sp->allgather(&me, sg.data(), sizeof me);
            for (std::size_t i = 0; i < sg.size(); ++i)
              EXPECT_EQ(sg[i], c.data * s.ulysses * s.ring + static_cast<int>(i));
          },
          10s);
    }
}

TEST(Mesh, MakeMeshRejectsWrongWorld) {
  USP_EXPECT_ERROR_IS(usp::run_local(
                          4, [](usp::Communicator& w) { usp::make_mesh(w, shape(1, 2, 3)); }, 5s),
                      invalid_argument,
                      "world size 4 != data 1 \u00d7 ulysses 2 \u00d7 ring 3 = 6");
}

}  // namespace
