// The NEON tile ops: the loops of tile_ops_simd.hpp on 4-lane vectors. Every aarch64 CPU has
// them; other targets get none.
#include "kernel/cpu/simd/neon.hpp"
#include "kernel/cpu/tile_ops.hpp"

#if USP_HAVE_SIMD_NEON
#include "kernel/cpu/tile_ops_simd.hpp"
#endif

namespace usp::cpu {

const TileOps* neon_tile_ops() {
#if USP_HAVE_SIMD_NEON
  static const TileOps ops = vec::make_tile_ops<vec::Neon>();
  return &ops;
#else
  return nullptr;
#endif
}

}  // namespace usp::cpu
