// Packing of bf16 rows of a [b, s, h, d] tensor into the AMX operand layouts (amx_pack.cpp):
//   rows:      A operand, row-major [rows][dk] bf16 (dk = d rounded up to 32), zero padded;
//   pairs_d:   B operand with the reduction over d ("VNNI" pairs of d): per block of 16 rows,
//              dk/32 tiles of [16 pairs of d][16 rows][2] (the product A·Bᵀ of two row sets);
//   pairs_row: B operand with the reduction over rows: per block of 32 rows, dp/16 tiles of
//              [16 pairs of rows][16 columns of d][2] (the product P·rows).
//   transposed: A operand with the rows as the reduction, row-major [dp][rows_pad] bf16 (the
//              product Rowsᵀ·X).
// Rows past `n` (the valid rows) and columns past d are zero.
#pragma once

#include <cstdint>

#include "kernel/cpu/tensor_view.hpp"
#include "kernel/cpu/tiling.hpp"

namespace usp::cpu::amx {

inline constexpr int round_up(int x, int m) {
  return (x + m - 1) / m * m;
}

// dst[r][c] for r < rows_pad, c < dk.
void pack_rows(const View& t, std::int64_t b, std::int64_t r0, int n, std::int64_t head, int d,
               std::uint16_t* dst, int dk, int rows_pad);
// rows_pad a multiple of 16; dst holds rows_pad·dk bf16.
void pack_pairs_d(const View& t, std::int64_t b, std::int64_t r0, int n, std::int64_t head, int d,
                  std::uint16_t* dst, int dk, int rows_pad);
// rows_pad a multiple of 32; dst holds rows_pad·dp bf16.
void pack_pairs_row(const View& t, std::int64_t b, std::int64_t r0, int n, std::int64_t head, int d,
                    std::uint16_t* dst, int dp, int rows_pad);

// dst[c][r] = t[r0 + r][c] for c < dp, r < rows_pad.
void pack_transposed(const View& t, std::int64_t b, std::int64_t r0, int n, std::int64_t head,
                     int d, std::uint16_t* dst, int dp, int rows_pad);

}  // namespace usp::cpu::amx
