// The 2-D (3-D with data parallelism) process mesh: world = data × ulysses × ring.
#pragma once

#include <memory>
#include <string_view>

#include "usp/comm.hpp"

namespace usp {

// ulysses_inner (default, the seed's): ulysses groups are contiguous ranks, ring groups strided;
//   local rank = ring_rank * u + ulysses_rank.
// ring_inner: ring groups contiguous; local rank = ulysses_rank * r + ring_rank.
// World rank = data_rank * (u·r) + local rank in both.
enum class Placement : std::uint8_t { ulysses_inner, ring_inner };
const char* placement_name(Placement p);
Placement parse_placement(std::string_view s);

struct MeshShape {
  int data = 1;
  int ulysses = 1;
  int ring = 1;
  Placement placement = Placement::ulysses_inner;
  int world() const { return data * ulysses * ring; }
  // Throws Error with the rule when world_size != data × ulysses × ring or a degree < 1.
  void validate(int world_size) const;
};

struct MeshCoord {
  int data = 0;
  int ulysses = 0;
  int ring = 0;
};

MeshCoord mesh_coord(const MeshShape& shape, int world_rank);
int mesh_rank(const MeshShape& shape, const MeshCoord& c);

// Sub-communicators of one rank (collective: every world rank calls make_mesh).
struct Mesh {
  MeshShape shape;
  MeshCoord coord;
  std::unique_ptr<Communicator> sp;       // the u·r ranks sharing one sequence
  std::unique_ptr<Communicator> ulysses;  // the u ranks of my ulysses group, rank = ulysses rank
  std::unique_ptr<Communicator> ring;     // the r ranks of my ring group, rank = ring rank
};
Mesh make_mesh(Communicator& world, const MeshShape& shape);

}  // namespace usp
