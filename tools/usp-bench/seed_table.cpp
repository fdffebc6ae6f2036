#include "seed_table.hpp"

#include <array>

namespace usp::bench {
namespace {

constexpr RowConfig row(RingType t, std::int64_t s, int u, int r, bool fwd) {
  RowConfig c;
  c.ring_type = t;
  c.seq_len = s;
  c.ulysses = u;
  c.ring = r;
  c.fwd_only = fwd;
  return c;
}

constexpr auto B = RingType::basic;
constexpr auto S = RingType::stripe;
constexpr auto Z = RingType::zigzag;

const std::array<SeedRow, 30> kRows = {{
    {row(B, 4096, 2, 4, true), 84.019, 11.902, 240, 11.5},
    {row(B, 8192, 2, 4, true), 84.852, 11.785, 480, 46.6},
    {row(B, 16384, 2, 4, true), 44.255, 22.596, 960, 97.3},
    {row(B, 32768, 2, 4, true), 12.837, 77.898, 1920, 112.9},
    {row(B, 65536, 2, 4, true), 6.444, 155.191, 3841, 226.7},
    {row(B, 128000, 2, 4, true), 2.644, 378.174, 7518.9, 354.9},
    {row(S, 4096, 2, 4, true), 59.643, 16.767, 244.1, 8.2},
    {row(S, 8192, 2, 4, true), 48.455, 20.638, 488.3, 26.6},
    {row(S, 16384, 2, 4, true), 31.839, 31.408, 976.7, 70.0},
    {row(S, 32768, 2, 4, true), 17.832, 56.078, 1953.5, 156.8},
    {row(S, 65536, 2, 4, true), 6.540, 152.911, 3907.0, 230.1},
    {row(S, 128000, 2, 4, true), 3.184, 314.057, 7638.8, 427.3},
    {row(Z, 4096, 2, 4, true), 71.727, 13.942, 240.1, 9.8},
    {row(Z, 8192, 2, 4, true), 44.264, 22.592, 480.3, 24.3},
    {row(Z, 16384, 2, 4, true), 32.001, 31.249, 960.5, 70.4},
    {row(Z, 32768, 2, 4, true), 17.036, 58.700, 1921, 149.8},
    {row(Z, 65536, 2, 4, true), 6.026, 165.935, 3842.0, 212.0},
    {row(Z, 128000, 2, 4, true), 3.123, 320.243, 7514.0, 419.1},
    {row(Z, 4096, 4, 2, true), 203.134, 4.923, 240.1, 27.9},
    {row(Z, 8192, 4, 2, true), 102.374, 9.768, 480.3, 56.3},
    {row(Z, 16384, 4, 2, true), 51.234, 19.518, 960.5, 112.7},
    {row(Z, 32768, 4, 2, true), 19.720, 50.709, 1921, 173.5},
    {row(Z, 65536, 4, 2, true), 8.613, 116.098, 3842.0, 303.1},
    {row(Z, 128000, 4, 2, true), 3.639, 274.807, 7514.0, 488.4},
    {row(Z, 4096, 2, 4, false), 31.615, 31.631, 240.1, 15.2},
    {row(Z, 8192, 2, 4, false), 20.200, 49.505, 480.3, 38.8},
    {row(Z, 16384, 2, 4, false), 10.513, 95.121, 960.5, 80.9},
    {row(Z, 32768, 2, 4, false), 5.714, 175.013, 1921, 175.9},
    {row(Z, 65536, 2, 4, false), 2.134, 468.519, 3842.0, 262.8},
    {row(Z, 128000, 2, 4, false), 1.170, 854.512, 7514.0, 549.7},
}};

}  // namespace

std::span<const SeedRow> seed_rows() {
  return kRows;
}

std::optional<SeedRow> find_seed_row(const BenchProblem& p, const RowConfig& c) {
  if (p.batch != 2 || p.nheads != 16 || p.kv_heads != 16 || p.head_size != 128 ||
      p.dtype != DType::f16 || !p.causal || p.masked())
    return std::nullopt;
  for (const SeedRow& s : kRows)
    if (s.config == c) return s;
  return std::nullopt;
}

}  // namespace usp::bench
