// Dispatch from (ring type, causal) to the per-variant step rule.
#include "ring/plan.hpp"

#include "usp/error.hpp"

namespace usp::detail {

StepPlan plan_blocks(RingType type, int ring_size, int rank, int source, bool causal,
                     std::int64_t block_len) {
  USP_CHECK_ARG(ring_size >= 1, "ring size ", ring_size, " must be >= 1");
  USP_CHECK_ARG(rank >= 0 && rank < ring_size, "ring rank ", rank, " is outside [0, ", ring_size,
                ")");
  USP_CHECK_ARG(source >= 0 && source < ring_size, "ring source ", source, " is outside [0, ",
                ring_size, ")");
  if (!causal) {
    StepPlan plan;
    plan.add({0, block_len, 0, block_len, MaskMode::none});
    return plan;
  }
  switch (type) {
    case RingType::basic:
      return basic_causal_step(ring_size, rank, source, block_len);
    case RingType::stripe:
      return stripe_causal_step(ring_size, rank, source, block_len);
    case RingType::zigzag:
    case RingType::allgather:
      return zigzag_causal_step(ring_size, rank, source, block_len);
  }
  USP_FAIL(internal, "unknown ring type ", static_cast<int>(type));
}

StepPlan plan_step(RingType type, int ring_size, int rank, int step, bool causal,
                   std::int64_t block_len) {
  USP_CHECK_ARG(ring_size >= 1, "ring size ", ring_size, " must be >= 1");
  USP_CHECK_ARG(step >= 0 && step < ring_size, "ring step ", step, " is outside [0, ", ring_size,
                ")");
  return plan_blocks(type, ring_size, rank, ring_source(ring_size, rank, step), causal, block_len);
}

}  // namespace usp::detail
