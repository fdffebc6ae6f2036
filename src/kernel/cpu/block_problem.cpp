#include "kernel/cpu/block_problem.hpp"

#include <algorithm>
#include <limits>

namespace usp::cpu {

std::int64_t BlockProblem::key_first(std::int64_t i) const {
  return general() ? kb[static_cast<std::size_t>(i)] : 0;
}

std::int64_t BlockProblem::key_last(std::int64_t i) const {
  if (general()) return ke[static_cast<std::size_t>(i)];
  switch (mode()) {
    case MaskMode::none:
      return sk;
    case MaskMode::causal:
      return std::clamp<std::int64_t>(i + 1, 0, sk);
    case MaskMode::causal_strict:
      return std::clamp<std::int64_t>(i, 0, sk);
  }
  return sk;
}

std::int64_t BlockProblem::key_end(std::int64_t i1) const {
  if (general()) return i1 > 0 ? ke[static_cast<std::size_t>(std::min(i1, sq) - 1)] : 0;
  switch (mode()) {
    case MaskMode::none:
      return sk;
    case MaskMode::causal:
      return std::min(sk, i1);
    case MaskMode::causal_strict:
      return std::min(sk, i1 - 1);
  }
  return sk;
}

std::int64_t BlockProblem::first_query(std::int64_t j0) const {
  if (general()) {  // the first row whose key range ends after j0
    return std::upper_bound(ke.begin(), ke.end(), j0) - ke.begin();
  }
  switch (mode()) {
    case MaskMode::none:
      return 0;
    case MaskMode::causal:
      return j0;
    case MaskMode::causal_strict:
      return j0 + 1;
  }
  return 0;
}

std::int64_t BlockProblem::end_query(std::int64_t j1) const {
  if (!general()) return sq;
  return std::lower_bound(kb.begin(), kb.end(), j1) - kb.begin();  // first row with kb >= j1
}

std::int64_t BlockProblem::first_query_tile(std::int64_t j0, int tile_rows) const {
  return std::min(sq - 1, first_query(j0)) / tile_rows;
}

bool BlockProblem::tile_empty(std::int64_t i0, std::int64_t i1, std::int64_t j0,
                              std::int64_t j1) const {
  if (!general()) return key_end(i1) <= j0;
  return std::max(i0, first_query(j0)) >= std::min(i1, end_query(j1));
}

bool BlockProblem::tile_needs_mask(std::int64_t i0, std::int64_t i1, std::int64_t j0,
                                   std::int64_t j1) const {
  if (!general()) {
    switch (mode()) {
      case MaskMode::none:
        return false;
      case MaskMode::causal:
        return j1 - 1 > i0;
      case MaskMode::causal_strict:
        return j1 - 1 >= i0;
    }
    return true;
  }
  // Every row sees all of [j0, j1): the latest first key and the earliest last key bound it.
  return !(key_first(i1 - 1) <= j0 && key_last(i0) >= j1);
}

BlockProblem make_block_problem(const Tensor& q, const Tensor& k, const BlockMask& mask,
                                float scale) {
  BlockProblem p{};
  p.b = q.size(0);
  p.sq = q.size(1);
  p.h = q.size(2);
  p.d = q.size(3);
  p.sk = k.size(1);
  p.hkv = k.size(2);
  p.dpad = pad_vec(static_cast<int>(p.d));
  p.mask = mask;
  p.scale = scale;
  if (mask.general()) {
    p.kb.resize(static_cast<std::size_t>(p.sq));
    p.ke.resize(static_cast<std::size_t>(p.sq));
    for (std::int64_t i = 0; i < p.sq; ++i) {
      const auto [a, e] = mask.keys(i, p.sk);
      p.kb[static_cast<std::size_t>(i)] = a;
      p.ke[static_cast<std::size_t>(i)] = e;
    }
  }
  return p;
}

std::pair<int, int> visible_columns(const BlockProblem& p, std::int64_t i, std::int64_t j0,
                                    int n_valid) {
  const int begin = static_cast<int>(std::clamp<std::int64_t>(p.key_first(i) - j0, 0, n_valid));
  const int end =
      std::max(begin, static_cast<int>(std::clamp<std::int64_t>(p.key_last(i) - j0, 0, n_valid)));
  return {begin, end};
}

void apply_mask(const BlockProblem& p, std::int64_t i0, int rows, std::int64_t j0, int n_valid,
                int n_pad, float* s, int ld) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int r = 0; r < rows; ++r) {
    float* row = s + static_cast<long>(r) * ld;
    const auto [begin, end] = visible_columns(p, i0 + r, j0, n_valid);
    std::fill(row, row + begin, kNegInf);
    std::fill(row + end, row + n_pad, kNegInf);
  }
}

void zero_masked(const BlockProblem& p, std::int64_t i0, int rows, std::int64_t j0, int n_valid,
                 int n_pad, float* a, float* b, int ld) {
  for (int r = 0; r < rows; ++r) {
    const auto [begin, end] = visible_columns(p, i0 + r, j0, n_valid);
    for (float* row : {a + static_cast<long>(r) * ld, b + static_cast<long>(r) * ld}) {
      std::fill(row, row + begin, 0.0f);
      std::fill(row + end, row + n_pad, 0.0f);
    }
  }
}

bool any_non_finite(const float* rows, int n, int d, int ld) {
  bool bad = false;
  for (int r = 0; r < n; ++r) {
    const float* x = rows + static_cast<long>(r) * ld;
    for (int c = 0; c < d; ++c) bad |= !(x[c] - x[c] == 0.0f);  // NaN for NaN and ±inf
  }
  return bad;
}

}  // namespace usp::cpu
