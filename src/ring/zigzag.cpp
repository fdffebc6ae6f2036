// Zigzag ring, causal: the sequence is cut into 2P chunks and rank r holds [chunk r | chunk 2P−1−r]
// (halves of L/2 rows). Chunk indices increase along the block, so my own block is plainly causal.
// From a rank src < r: chunk src precedes both my chunks, chunk 2P−1−src follows both → all my
// queries × the first half of the keys. From src > r: both its chunks follow my chunk r and precede
// my chunk 2P−1−r → the second half of my queries × all keys. Every step is L·L/2 of work.
#include "ring/plan.hpp"

namespace usp::detail {

StepPlan zigzag_causal_step(int /*ring_size*/, int rank, int source, std::int64_t block_len) {
  const std::int64_t half = block_len / 2;
  StepPlan plan;
  if (source == rank) {
    plan.add({0, block_len, 0, block_len, MaskMode::causal});
  } else if (source < rank) {
    plan.add({0, block_len, 0, half, MaskMode::none});
  } else {
    plan.add({half, half, 0, block_len, MaskMode::none});
  }
  return plan;
}

}  // namespace usp::detail
