// The AVX2 + FMA + F16C tile ops: the loops of tile_ops_simd.hpp on 8-lane vectors, compiled for
// the generic target and entered only after a run-time CPU check.
#include "kernel/cpu/simd/avx2.hpp"
#include "kernel/cpu/tile_ops.hpp"
#include "usp/cpu.hpp"

#if USP_HAVE_SIMD_AVX2
#include "kernel/cpu/tile_ops_simd.hpp"
#endif

namespace usp::cpu {

const TileOps* avx2_tile_ops() {
#if USP_HAVE_SIMD_AVX2
  static const TileOps ops = vec::make_tile_ops<vec::Avx2>();
  static const bool ok = cpu_path_supported(CpuPath::avx2, cpu_features());
  return ok ? &ops : nullptr;
#else
  return nullptr;
#endif
}

}  // namespace usp::cpu
