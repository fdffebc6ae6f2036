#include "kernel/cpu/block_problem.hpp"

#include <algorithm>
#include <limits>

namespace usp::cpu {

std::int64_t BlockProblem::key_end(std::int64_t i1) const {
  switch (mask) {
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
  switch (mask) {
    case MaskMode::none:
      return 0;
    case MaskMode::causal:
      return j0;
    case MaskMode::causal_strict:
      return j0 + 1;
  }
  return 0;
}

std::int64_t BlockProblem::first_query_tile(std::int64_t j0, int tile_rows) const {
  return std::min(sq - 1, first_query(j0)) / tile_rows;
}

bool BlockProblem::tile_needs_mask(std::int64_t i0, std::int64_t j1) const {
  switch (mask) {
    case MaskMode::none:
      return false;
    case MaskMode::causal:
      return j1 - 1 > i0;
    case MaskMode::causal_strict:
      return j1 - 1 >= i0;
  }
  return true;
}

BlockProblem make_block_problem(const Tensor& q, const Tensor& k, MaskMode mask, float scale) {
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
  return p;
}

void apply_mask(const BlockProblem& p, std::int64_t i0, int rows, std::int64_t j0, int n_valid,
                int n_pad, float* s, int ld) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  for (int r = 0; r < rows; ++r) {
    float* row = s + static_cast<long>(r) * ld;
    int end = n_valid;  // keys [0, end) of the tile visible to this row
    if (p.mask != MaskMode::none) {
      const std::int64_t i = i0 + r;
      const std::int64_t last = p.mask == MaskMode::causal ? i : i - 1;  // last visible key
      end = static_cast<int>(std::clamp<std::int64_t>(last - j0 + 1, 0, n_valid));
    }
    std::fill(row + end, row + n_pad, kNegInf);
  }
}

}  // namespace usp::cpu
