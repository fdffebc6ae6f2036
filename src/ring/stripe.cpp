// Stripe ring, causal: token t lives on ring rank t mod P at index t / P. Query index i of rank r
// is token i·P + r, key index j of rank src is token j·P + src, visible iff j·P + src ≤ i·P + r:
// for src ≤ r that is j ≤ i (causal, diagonal included); for src > r it is j < i (strict).
#include "ring/plan.hpp"

namespace usp::detail {

StepPlan stripe_causal_step(int /*ring_size*/, int rank, int source, std::int64_t block_len) {
  StepPlan plan;
  plan.add(
      {0, block_len, 0, block_len, source <= rank ? MaskMode::causal : MaskMode::causal_strict});
  return plan;
}

}  // namespace usp::detail
