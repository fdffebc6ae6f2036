// The sizes, mask and scale of one kernel call (q [b, sq, h, d], k/v [b, sk, hkv, d]) and the
// mask's geometry over the call's tiles. Query row i sees the contiguous keys [kb(i), ke(i)),
// both ends non-decreasing in i: for the local modes kb = 0 and ke = sk, i + 1 or i; for a
// general mask (documents, windows, global positions) they are computed once per call.
#pragma once

#include <cstdint>
#include <utility>
#include <vector>

#include "kernel/cpu/tiling.hpp"
#include "usp/kernel.hpp"

namespace usp::cpu {

struct BlockProblem {
  std::int64_t b, sq, sk, h, hkv, d;
  int dpad;  // d rounded up to kVec
  BlockMask mask;
  float scale;
  bool fold = false;  // forward: out (fp32) and lse hold a partial result to fold into
  std::vector<std::int64_t> kb, ke;  // a general mask's key range per query row (else empty)

  std::int64_t group() const { return h / hkv; }
  std::int64_t q_tiles() const { return (sq + kBr - 1) / kBr; }
  std::int64_t k_tiles() const { return (sk + kBc - 1) / kBc; }
  bool general() const { return mask.general(); }
  MaskMode mode() const { return mask.mode(); }  // the local mode (none for a general mask)
  // Keys query row i sees: [key_first(i), key_last(i)).
  std::int64_t key_first(std::int64_t i) const;
  std::int64_t key_last(std::int64_t i) const;
  // Key range any query of rows [i0, i1) may see: [key_begin(i0), key_end(i1)).
  std::int64_t key_begin(std::int64_t i0) const { return key_first(i0); }
  std::int64_t key_end(std::int64_t i1) const;
  // First query row that sees key j0 or later (sq when none does).
  std::int64_t first_query(std::int64_t j0) const;
  // First query row from which on no row sees a key before j1 (sq when every row may).
  std::int64_t end_query(std::int64_t j1) const;
  // The query tile (of tile_rows rows) of the first query that sees key j0 or later; the last
  // tile when no query does.
  std::int64_t first_query_tile(std::int64_t j0, int tile_rows) const;
  // Whether no query of rows [i0, i1) sees a key of [j0, j1).
  bool tile_empty(std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1) const;
  // Whether the tile (rows [i0, i1), keys [j0, j1)) needs per-element masking.
  bool tile_needs_mask(std::int64_t i0, std::int64_t i1, std::int64_t j0, std::int64_t j1) const;
};

BlockProblem make_block_problem(const Tensor& q, const Tensor& k, const BlockMask& mask,
                                float scale);

// The columns [first, second) of the tile at key j0 (n_valid real keys) that query i sees.
std::pair<int, int> visible_columns(const BlockProblem& p, std::int64_t i, std::int64_t j0,
                                    int n_valid);

// Sets s[r][j] = -inf where key j0 + j is hidden from query i0 + r or j >= n_valid.
void apply_mask(const BlockProblem& p, std::int64_t i0, int rows, std::int64_t j0, int n_valid,
                int n_pad, float* s, int ld);

// Sets a[r][j] = b[r][j] = 0 at the same places: a hidden key is no term of the sums, whatever a
// non-finite row statistic (lse, D) or input (v, dout) would make of its exact zero.
void zero_masked(const BlockProblem& p, std::int64_t i0, int rows, std::int64_t j0, int n_valid,
                 int n_pad, float* a, float* b, int ld);

// Whether rows[r][c] (r < n, c < d, leading dimension ld) holds a NaN or an infinity.
bool any_non_finite(const float* rows, int n, int d, int ld);

}  // namespace usp::cpu
