#include "kernel/cpu/amx/amx_pack.hpp"

#include <algorithm>
#include <cstring>

#include "kernel/cpu/amx/amx_tiles.hpp"

namespace usp::cpu::amx {

namespace {

const std::uint16_t* row_ptr(const View& t, std::int64_t b, std::int64_t r, std::int64_t head) {
  return static_cast<const std::uint16_t*>(t.at(b, r, head));
}

}  // namespace

void pack_rows(const View& t, std::int64_t b, std::int64_t r0, int n, std::int64_t head, int d,
               std::uint16_t* dst, int dk, int rows_pad) {
  for (int r = 0; r < rows_pad; ++r) {
    std::uint16_t* row = dst + static_cast<long>(r) * dk;
    int c = 0;
    if (r < n) {
      std::memcpy(row, row_ptr(t, b, r0 + r, head),
                  sizeof(std::uint16_t) * static_cast<unsigned>(d));
      c = d;
    }
    std::fill(row + c, row + dk, std::uint16_t{0});
  }
}

void pack_transposed(const View& t, std::int64_t b, std::int64_t r0, int n, std::int64_t head,
                     int d, std::uint16_t* dst, int dp, int rows_pad) {
  std::fill(dst, dst + static_cast<long>(dp) * rows_pad, std::uint16_t{0});
  for (int r = 0; r < n; ++r) {
    const std::uint16_t* src = row_ptr(t, b, r0 + r, head);
    for (int c = 0; c < d; ++c) dst[static_cast<long>(c) * rows_pad + r] = src[c];
  }
}

#if USP_HAVE_AMX_PATH

USP_AMX void pack_pairs_d(const View& t, std::int64_t b, std::int64_t r0, int n, std::int64_t head,
                          int d, std::uint16_t* dst, int dk, int rows_pad) {
  // Tile (block rb, chunk c) element [pair][row][parity] = t[rb·16 + row][c·32 + 2·pair + parity]:
  // per pair, the 32-bit words (two bf16) of column pair `pair` of 16 rows, gathered.
  const __m512i offsets =
      _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                         _mm512_set1_epi32(static_cast<int>(t.s1)));
  for (int rb = 0; rb < rows_pad / 16; ++rb) {
    std::uint16_t* blk = dst + static_cast<long>(rb) * 16 * dk;
    const int valid = std::clamp(n - rb * 16, 0, 16);
    for (int c = 0; c < dk / 32; ++c) {
      std::uint16_t* tile = blk + c * 512;
      if (valid == 16 && c * 32 + 32 <= d) {
        const char* base =
            reinterpret_cast<const char*>(row_ptr(t, b, r0 + rb * 16, head) + c * 32);
        for (int pr = 0; pr < 16; ++pr)
          _mm512_store_si512(tile + pr * 32, _mm512_i32gather_epi32(offsets, base + 4 * pr, 1));
        continue;
      }
      for (int pr = 0; pr < 16; ++pr)
        for (int r = 0; r < 16; ++r)
          for (int par = 0; par < 2; ++par) {
            const int col = c * 32 + 2 * pr + par;
            tile[pr * 32 + r * 2 + par] = r < valid && col < d
                                              ? row_ptr(t, b, r0 + rb * 16 + r, head)[col]
                                              : std::uint16_t{0};
          }
    }
  }
}

USP_AMX void pack_pairs_row(const View& t, std::int64_t b, std::int64_t r0, int n,
                            std::int64_t head, int d, std::uint16_t* dst, int dp, int rows_pad) {
  // Tile (chunk kc, column block nb) element [pair][col][parity] = t[kc·32 + 2·pair + parity][nb·16
  // + col]: the 16 columns of two rows interleaved.
  for (int kc = 0; kc < rows_pad / 32; ++kc) {
    std::uint16_t* chunk = dst + static_cast<long>(kc) * 32 * dp;
    const int valid = std::clamp(n - kc * 32, 0, 32);
    for (int nb = 0; nb < dp / 16; ++nb) {
      std::uint16_t* tile = chunk + nb * 512;
      if (valid == 32 && nb * 16 + 16 <= d) {
        for (int pr = 0; pr < 16; ++pr) {
          const std::int64_t r = r0 + kc * 32 + 2 * pr;
          const __m512i lo = _mm512_castsi256_si512(_mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(row_ptr(t, b, r, head) + nb * 16)));
          const __m512i hi = _mm512_castsi256_si512(_mm256_loadu_si256(
              reinterpret_cast<const __m256i*>(row_ptr(t, b, r + 1, head) + nb * 16)));
          _mm512_store_si512(tile + pr * 32, interleave_lo(lo, hi));
        }
        continue;
      }
      for (int pr = 0; pr < 16; ++pr)
        for (int c = 0; c < 16; ++c)
          for (int par = 0; par < 2; ++par) {
            const int row = 2 * pr + par, col = nb * 16 + c;
            tile[pr * 32 + c * 2 + par] = row < valid && col < d
                                              ? row_ptr(t, b, r0 + kc * 32 + row, head)[col]
                                              : std::uint16_t{0};
          }
    }
  }
}

#else

void pack_pairs_d(const View&, std::int64_t, std::int64_t, int, std::int64_t, int, std::uint16_t*,
                  int, int) {}
void pack_pairs_row(const View&, std::int64_t, std::int64_t, int, std::int64_t, int, std::uint16_t*,
                    int, int) {}

#endif

}  // namespace usp::cpu::amx
