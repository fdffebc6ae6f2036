// Basic ring, causal: ring rank i holds the contiguous chunk i, so a block from an earlier rank is
// entirely visible, my own block is causal on the diagonal, and a later rank's block is entirely
// in the future (nothing to compute: the basic ring's load imbalance).
#include "ring/plan.hpp"

namespace usp::detail {

StepPlan basic_causal_step(int /*ring_size*/, int rank, int source, std::int64_t block_len) {
  StepPlan plan;
  if (source == rank) {
    plan.add({0, block_len, 0, block_len, MaskMode::causal});
  } else if (source < rank) {
    plan.add({0, block_len, 0, block_len, MaskMode::none});
  }
  return plan;
}

}  // namespace usp::detail
