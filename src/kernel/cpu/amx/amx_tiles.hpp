// Building blocks of the AMX (bf16) attention path: the tile configuration every AMX task loads,
// 2×2 blocks of tile matrix products, the packed operand layouts, and the AVX-512 pieces of the
// softmax. Included only by the files under src/kernel/cpu/amx/; every function carries its own
// target attribute, so the library is still built for the generic x86-64 target and enters this
// code only when usp::cpu_path() is amx (the CPU has AMX and Linux granted the tile state).
#pragma once

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define USP_HAVE_AMX_PATH 1
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#include <immintrin.h>

#include "kernel/cpu/softmax_avx512.hpp"
#else
#define USP_HAVE_AMX_PATH 0
#endif

#include <cstddef>
#include <cstdint>
#include <cstring>

#if USP_HAVE_AMX_PATH

#define USP_AMX \
  __attribute__((target("amx-tile,amx-bf16,avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,fma")))

namespace usp::cpu::amx {

using bf16 = std::uint16_t;

// Tile registers: C (fp32 accumulators) 0-3, A 4-5, B 6-7; every tile is 16 rows × 64 bytes
// (A: 16 rows × 32 bf16, B: 16 bf16 pairs × 16 columns, C: 16 × 16 fp32).
inline constexpr int kTileRows = 16;
inline constexpr int kTileK = 32;  // bf16 elements of the reduction per tile product

// The 64-byte LDTILECFG operand: palette 1, tiles 0-7 all 16 rows × 64 bytes.
struct alignas(64) TileConfig {
  std::uint8_t palette = 1;
  std::uint8_t start_row = 0;
  std::uint8_t reserved[14] = {};
  std::uint16_t colsb[16] = {};
  std::uint8_t rows[16] = {};
  TileConfig() {
    for (int t = 0; t < 8; ++t) {
      colsb[t] = 64;
      rows[t] = kTileRows;
    }
  }
};

// Loads the configuration on entry and releases the tile state on exit: one per task, on the
// thread that runs the task (LDTILECFG is per thread; the permission is per process).
class TileScope {
 public:
  USP_AMX TileScope() {
    static const TileConfig cfg;
    _tile_loadconfig(&cfg);
  }
  USP_AMX ~TileScope() { _tile_release(); }
  TileScope(const TileScope&) = delete;
  TileScope& operator=(const TileScope&) = delete;
};

// The tile instructions are opaque to the compiler's view of memory with some compilers (GCC's are
// asm statements without a memory clobber): a fence between tile stores and vector reads of the
// same buffer (and the other way round) keeps their order.
inline void memory_fence() {
  __asm__ __volatile__("" ::: "memory");
}

// C[MR·16][NR·16] (+)= A[MR·16][K]·B[K][NR·16] with K = 32·kchunks. A rows at a_stride bytes,
// A chunk k at a + 64·k bytes of each row; B tile (k, n) at b + k·b_kstep + n·b_nstep bytes (each
// 16 rows × 64 bytes, stride 64); C at c_stride bytes per row.
template <int MR, int NR>
USP_AMX inline void tile_block(int kchunks, const char* a, long a_stride, const char* b,
                               long b_kstep, long b_nstep, char* c, long c_stride, bool load_c) {
  static_assert(MR >= 1 && MR <= 2 && NR >= 1 && NR <= 2);
  if (load_c) {
    _tile_loadd(0, c, c_stride);
    if constexpr (NR == 2) _tile_loadd(1, c + 64, c_stride);
    if constexpr (MR == 2) _tile_loadd(2, c + 16 * c_stride, c_stride);
    if constexpr (MR == 2 && NR == 2) _tile_loadd(3, c + 16 * c_stride + 64, c_stride);
  } else {
    _tile_zero(0);
    if constexpr (NR == 2) _tile_zero(1);
    if constexpr (MR == 2) _tile_zero(2);
    if constexpr (MR == 2 && NR == 2) _tile_zero(3);
  }
  for (int k = 0; k < kchunks; ++k) {
    const char* bk = b + k * b_kstep;
    _tile_loadd(6, bk, 64);
    if constexpr (NR == 2) _tile_loadd(7, bk + b_nstep, 64);
    _tile_loadd(4, a + 64 * k, a_stride);
    _tile_dpbf16ps(0, 4, 6);
    if constexpr (NR == 2) _tile_dpbf16ps(1, 4, 7);
    if constexpr (MR == 2) {
      _tile_loadd(5, a + 16 * a_stride + 64 * k, a_stride);
      _tile_dpbf16ps(2, 5, 6);
      if constexpr (NR == 2) _tile_dpbf16ps(3, 5, 7);
    }
  }
  _tile_stored(0, c, c_stride);
  if constexpr (NR == 2) _tile_stored(1, c + 64, c_stride);
  if constexpr (MR == 2) _tile_stored(2, c + 16 * c_stride, c_stride);
  if constexpr (MR == 2 && NR == 2) _tile_stored(3, c + 16 * c_stride + 64, c_stride);
}

// C[m_tiles·16][n_tiles·16] (+)= A·B over kchunks, by 2×2 blocks (1-wide at odd edges).
USP_AMX inline void tile_gemm(int m_tiles, int n_tiles, int kchunks, const char* a, long a_stride,
                              const char* b, long b_kstep, long b_nstep, char* c, long c_stride,
                              bool load_c) {
  for (int mt = 0; mt < m_tiles; mt += 2) {
    const char* am = a + mt * 16 * a_stride;
    char* cm = c + mt * 16 * c_stride;
    const bool two_m = mt + 1 < m_tiles;
    for (int nt = 0; nt < n_tiles; nt += 2) {
      const bool two_n = nt + 1 < n_tiles;
      const char* bn = b + nt * b_nstep;
      char* cn = cm + nt * 64;
      if (two_m && two_n)
        tile_block<2, 2>(kchunks, am, a_stride, bn, b_kstep, b_nstep, cn, c_stride, load_c);
      else if (two_m)
        tile_block<2, 1>(kchunks, am, a_stride, bn, b_kstep, b_nstep, cn, c_stride, load_c);
      else if (two_n)
        tile_block<1, 2>(kchunks, am, a_stride, bn, b_kstep, b_nstep, cn, c_stride, load_c);
      else
        tile_block<1, 1>(kchunks, am, a_stride, bn, b_kstep, b_nstep, cn, c_stride, load_c);
    }
  }
}

// C[32][n_tiles·16] = A[32][64]·B (two row tiles, K = 64): A's four tiles stay in registers for
// every column block, so each 16 columns cost two B tile loads, four products and two C stores
// (tile_gemm reloads A per 2×2 block: a third more tile traffic at this K). B tile (k, n) at
// b + k·b_kstep + n·b_nstep.
USP_AMX inline void tile_gemm_32x64(int n_tiles, const char* a, long a_stride, const char* b,
                                    long b_kstep, long b_nstep, char* c, long c_stride) {
  _tile_loadd(4, a, a_stride);
  _tile_loadd(5, a + 64, a_stride);
  _tile_loadd(6, a + 16 * a_stride, a_stride);
  _tile_loadd(7, a + 16 * a_stride + 64, a_stride);
  for (int n = 0; n < n_tiles; ++n) {
    const char* bn = b + n * b_nstep;
    char* cn = c + n * 64;
    _tile_zero(0);
    _tile_zero(1);
    _tile_loadd(2, bn, 64);
    _tile_loadd(3, bn + b_kstep, 64);
    _tile_dpbf16ps(0, 4, 2);
    _tile_dpbf16ps(1, 6, 2);
    _tile_dpbf16ps(0, 5, 3);
    _tile_dpbf16ps(1, 7, 3);
    _tile_stored(0, cn, c_stride);
    _tile_stored(1, cn + 16 * c_stride, c_stride);
  }
}

using simd::exp2_finite_ps;
using simd::exp2_ps;
using simd::exp2_sel;
using simd::row_max;
using simd::scale_row;

// Lane r of the result is op over the 16 floats of v[r] (v: 16 vectors, `stride` floats apart,
// 64-byte aligned): the horizontal reductions of 16 rows at once, 30 shuffles and 15 ops instead
// of 16 separate reductions.
template <class Op>
USP_AMX inline __m512 reduce_rows16(const float* v, long stride, Op op) {
  __m512 a[8], b[4], c[2];
  for (int i = 0; i < 8; ++i) {  // rows 2i, 2i+1: per 128-bit lane, partials over lane pairs
    const __m512 x = _mm512_load_ps(v + 2 * i * stride),
                 y = _mm512_load_ps(v + (2 * i + 1) * stride);
    a[i] = op(_mm512_unpacklo_ps(x, y), _mm512_unpackhi_ps(x, y));
  }
  for (int i = 0; i < 4; ++i) {  // rows 4i..4i+3: per 128-bit lane, one partial each
    const __m512d x = _mm512_castps_pd(a[2 * i]), y = _mm512_castps_pd(a[2 * i + 1]);
    b[i] =
        op(_mm512_castpd_ps(_mm512_unpacklo_pd(x, y)), _mm512_castpd_ps(_mm512_unpackhi_pd(x, y)));
  }
  for (int i = 0; i < 2; ++i)  // pairs of 128-bit lanes combined
    c[i] = op(_mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
              _mm512_shuffle_f32x4(b[2 * i], b[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  return op(_mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(2, 0, 2, 0)),
            _mm512_shuffle_f32x4(c[0], c[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

struct MaxOp {
  USP_AMX __m512 operator()(__m512 a, __m512 b) const { return _mm512_max_ps(a, b); }
};
struct AddOp {
  USP_AMX __m512 operator()(__m512 a, __m512 b) const { return _mm512_add_ps(a, b); }
};

// Two fp32 vectors rounded to nearest-even bf16, lo in the low 16 elements.
USP_AMX inline __m512i to_bf16(__m512 lo, __m512 hi) {
  return (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
}

// Rows a and b of 32 bf16 interleaved element by element, the layout of a B tile row (pairs of
// the reduction): lo = a[0], b[0], ..., a[15], b[15]; hi = a[16], b[16], ..., a[31], b[31].
USP_AMX inline __m512i interleave_lo(__m512i a, __m512i b) {
  alignas(64) static constexpr std::uint16_t kIdx[32] = {0,  32, 1,  33, 2,  34, 3,  35, 4,  36, 5,
                                                         37, 6,  38, 7,  39, 8,  40, 9,  41, 10, 42,
                                                         11, 43, 12, 44, 13, 45, 14, 46, 15, 47};
  return _mm512_permutex2var_epi16(a, _mm512_load_si512(kIdx), b);
}
USP_AMX inline __m512i interleave_hi(__m512i a, __m512i b) {
  alignas(64) static constexpr std::uint16_t kIdx[32] = {16, 48, 17, 49, 18, 50, 19, 51, 20, 52, 21,
                                                         53, 22, 54, 23, 55, 24, 56, 25, 57, 26, 58,
                                                         27, 59, 28, 60, 29, 61, 30, 62, 31, 63};
  return _mm512_permutex2var_epi16(a, _mm512_load_si512(kIdx), b);
}

// The 16 bf16 in the low or high half of v, widened exactly to fp32.
USP_AMX inline __m512 bf16_lo_ps(__m512i v) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_castsi512_si256(v)), 16));
}
USP_AMX inline __m512 bf16_hi_ps(__m512i v) {
  return _mm512_castsi512_ps(
      _mm512_slli_epi32(_mm512_cvtepu16_epi32(_mm512_extracti64x4_epi64(v, 1)), 16));
}

}  // namespace usp::cpu::amx

#endif  // USP_HAVE_AMX_PATH

namespace usp::cpu::amx {

// Hands out 64-byte aligned pieces of one scratch block, in order.
class Carve {
 public:
  explicit Carve(void* base) : p_(static_cast<char*>(base)) {}
  template <class T>
  T* take(std::size_t count) {
    T* r = reinterpret_cast<T*>(p_);
    p_ += round(count * sizeof(T));
    return r;
  }
  static std::size_t round(std::size_t bytes) { return (bytes + 63) / 64 * 64; }

 private:
  char* p_;
};

}  // namespace usp::cpu::amx
