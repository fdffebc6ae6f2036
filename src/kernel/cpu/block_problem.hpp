// The sizes, mask and scale of one kernel call (q [b, sq, h, d], k/v [b, sk, hkv, d]) and the
// mask's geometry over the call's tiles.
#pragma once

#include <cstdint>

#include "kernel/cpu/tiling.hpp"
#include "usp/kernel.hpp"

namespace usp::cpu {

struct BlockProblem {
  std::int64_t b, sq, sk, h, hkv, d;
  int dpad;  // d rounded up to kVec
  MaskMode mask;
  float scale;
  bool fold = false;  // forward: out (fp32) and lse hold a partial result to fold into
  std::int64_t group() const { return h / hkv; }
  std::int64_t q_tiles() const { return (sq + kBr - 1) / kBr; }
  std::int64_t k_tiles() const { return (sk + kBc - 1) / kBc; }
  // Key range [0, end) any query of rows [i0, i1) may see.
  std::int64_t key_end(std::int64_t i1) const;
  // First query row that sees key j0 or later.
  std::int64_t first_query(std::int64_t j0) const;
  // The query tile (of tile_rows rows) of the first query that sees key j0 or later; the last
  // tile when no query does.
  std::int64_t first_query_tile(std::int64_t j0, int tile_rows) const;
  // Whether the tile (rows from i0, keys from j0..j1) needs per-element masking.
  bool tile_needs_mask(std::int64_t i0, std::int64_t j1) const;
};

BlockProblem make_block_problem(const Tensor& q, const Tensor& k, MaskMode mask, float scale);

// Sets s[r][j] = -inf where key j0 + j is hidden from query i0 + r or j >= n_valid.
void apply_mask(const BlockProblem& p, std::int64_t i0, int rows, std::int64_t j0, int n_valid,
                int n_pad, float* s, int ld);

}  // namespace usp::cpu
