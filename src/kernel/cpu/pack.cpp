#include "kernel/cpu/pack.hpp"

#include <algorithm>

namespace usp::cpu {

void pack_rows(const TileOps& ops, const View& t, std::int64_t b, std::int64_t r0, int n,
               std::int64_t head, int d, float* dst, int ld, int n_pad) {
  for (int r = 0; r < n; ++r) {
    float* row = dst + static_cast<long>(r) * ld;
    ops.load_row(t.at(b, r0 + r, head), t.dtype, row, d);
    std::fill(row + d, row + ld, 0.0f);
  }
  for (int r = n; r < n_pad; ++r)
    std::fill(dst + static_cast<long>(r) * ld, dst + static_cast<long>(r + 1) * ld, 0.0f);
}

void pack_cols(const TileOps& ops, const View& t, std::int64_t b, std::int64_t r0, int n,
               std::int64_t head, int d, float* dst, int ld, int n_pad, float* line) {
  for (int r = 0; r < n; ++r) {
    ops.load_row(t.at(b, r0 + r, head), t.dtype, line, d);
    for (int c = 0; c < d; ++c) dst[static_cast<long>(c) * ld + r] = line[c];
  }
  if (n < n_pad)
    for (int c = 0; c < d; ++c)
      std::fill(dst + static_cast<long>(c) * ld + n, dst + static_cast<long>(c) * ld + n_pad, 0.0f);
}

}  // namespace usp::cpu
