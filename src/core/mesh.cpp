// The process mesh: world rank <-> (data, ulysses, ring) coordinates and the sub-communicators.
#include "usp/mesh.hpp"

#include <array>
#include <string>

#include "usp/error.hpp"
#include "util/enum_names.hpp"

namespace usp {

const char* placement_name(Placement p) {
  static constexpr std::array<const char*, 2> kNames{"ulysses-inner",
                                                     "ring-inner"};  // Placement order
  return detail::enum_name(p, kNames);
}

Placement parse_placement(std::string_view s) {
  if (s == "ulysses-inner" || s == "ulysses_inner") return Placement::ulysses_inner;
  if (s == "ring-inner" || s == "ring_inner") return Placement::ring_inner;
  USP_FAIL(invalid_argument, "placement '", s, "' is not one of: ulysses-inner, ring-inner");
}

void MeshShape::validate(int world_size) const {
  USP_CHECK_ARG(data >= 1, "mesh: data degree must be >= 1, got ", data);
  USP_CHECK_ARG(ulysses >= 1, "mesh: ulysses degree must be >= 1, got ", ulysses);
  USP_CHECK_ARG(ring >= 1, "mesh: ring degree must be >= 1, got ", ring);
  const long long product = static_cast<long long>(data) * ulysses * ring;
  USP_CHECK_ARG(product == world_size, "world size ", world_size, " != data ", data,
                " \u00d7 ulysses ", ulysses, " \u00d7 ring ", ring, " = ", product);
}

MeshCoord mesh_coord(const MeshShape& shape, int world_rank) {
  shape.validate(shape.world());
  USP_CHECK_ARG(world_rank >= 0 && world_rank < shape.world(), "mesh_coord: world rank ",
                world_rank, " is out of range [0, ", shape.world(), ")");
  const int sp = shape.ulysses * shape.ring;
  const int local = world_rank % sp;
  MeshCoord c;
  c.data = world_rank / sp;
  if (shape.placement == Placement::ulysses_inner) {
    c.ring = local / shape.ulysses;
    c.ulysses = local % shape.ulysses;
  } else {
    c.ulysses = local / shape.ring;
    c.ring = local % shape.ring;
  }
  return c;
}

int mesh_rank(const MeshShape& shape, const MeshCoord& c) {
  shape.validate(shape.world());
  USP_CHECK_ARG(c.data >= 0 && c.data < shape.data, "mesh_rank: data rank ", c.data,
                " is out of range [0, ", shape.data, ")");
  USP_CHECK_ARG(c.ulysses >= 0 && c.ulysses < shape.ulysses, "mesh_rank: ulysses rank ", c.ulysses,
                " is out of range [0, ", shape.ulysses, ")");
  USP_CHECK_ARG(c.ring >= 0 && c.ring < shape.ring, "mesh_rank: ring rank ", c.ring,
                " is out of range [0, ", shape.ring, ")");
  const int local = shape.placement == Placement::ulysses_inner ? c.ring * shape.ulysses + c.ulysses
                                                                : c.ulysses * shape.ring + c.ring;
  return c.data * shape.ulysses * shape.ring + local;
}

Mesh make_mesh(Communicator& world, const MeshShape& shape) {
  shape.validate(world.size());
  Mesh m;
  m.shape = shape;
  m.coord = mesh_coord(shape, world.rank());
  const MeshCoord& c = m.coord;
  // Collective: every rank makes the three splits in the same order.
  m.sp = world.split(c.data, world.rank() % (shape.ulysses * shape.ring));
  m.ulysses = world.split(c.data * shape.ring + c.ring, c.ulysses);
  m.ring = world.split(c.data * shape.ulysses + c.ulysses, c.ring);
  m.sp->set_name("sp");
  m.ulysses->set_name("ulysses");
  m.ring->set_name("ring");
  return m;
}

}  // namespace usp
