// Tile packing shared by the passes: rows of a [b, s, h, d] tensor into fp32 tiles.
#pragma once

#include <cstdint>

#include "kernel/cpu/tensor_view.hpp"
#include "kernel/cpu/tile_ops.hpp"

namespace usp::cpu {

// rows [r0, r0 + n) of head `head` in batch b → dst[n][ld] fp32, columns [d, ld) and rows
// [n, n_pad) zeroed.
void pack_rows(const TileOps& ops, const View& t, std::int64_t b, std::int64_t r0, int n,
               std::int64_t head, int d, float* dst, int ld, int n_pad);
// Same rows transposed: dst[c][r] for c < d, r < n; columns [n, n_pad) zeroed.
void pack_cols(const TileOps& ops, const View& t, std::int64_t b, std::int64_t r0, int n,
               std::int64_t head, int d, float* dst, int ld, int n_pad, float* line);

}  // namespace usp::cpu
