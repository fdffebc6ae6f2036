// What a rank computes with the K/V block of one source rank of its ring group (the step plan of
// plan.hpp, or with a window or documents one call under the general mask, skipped when it sees
// nothing), shared by the ring and the all-gather drivers: the forward folds the blocks into one
// fp32 accumulator, the backward adds the blocks' gradients to dq and to that block's dK/dV.
#pragma once

#include <vector>

#include "ring/block_accumulate.hpp"
#include "ring/plan.hpp"
#include "ring/ring.hpp"

namespace usp::detail {

// The forward's fp32 accumulator of my queries, folded block by block.
class ForwardFold {
 public:
  ForwardFold(const RingContext& ctx, const Tensor& q);
  // The planned blocks of my queries against the packed K/V of ring rank `source`.
  void add(const Tensor& kv, int source);
  // The result (rows that saw no key: out 0, lse −inf).
  RingForward result();

 private:
  void fill();

  const RingContext& ctx_;
  const Tensor& q_;
  RingForward res_;
  BlockAccumulator acc_;
  bool filled_ = false;  // res_ holds a valid (possibly empty) result
};

// The tasks of my queries against the block of `source`: the step plan's, or one task over both
// whole blocks under the general mask (none when it sees nothing).
struct SourceTask {
  BlockTask block;
  BlockMask mask;
};
std::vector<SourceTask> source_tasks(const RingContext& ctx, int source, std::int64_t len);
// Whether ring rank `rank`'s queries see any key of `source`'s block (always with no window and
// no documents: the plain rules keep every transfer).
bool sees(const RingContext& ctx, int rank, int source, std::int64_t len);
// The single ring's steps any rank needs: 1 + the last step at which some rank sees the block in
// hand (the ring stops there, its blocks' gradients going home directly); the ring size without
// a window or documents.
int needed_steps(const RingContext& ctx, std::int64_t len);

struct BackwardInputs {
  const Tensor &q, &out, &lse, &dout;
};
// The planned blocks of my queries against the packed kv of ring rank `source`: their gradients
// added to dq (fp32 [b, L, h, d]) and to dkv (fp32, packed like kv).
void backward_blocks(const RingContext& ctx, const BackwardInputs& in, const Tensor& kv, int source,
                     Tensor& dq, Tensor& dkv);

}  // namespace usp::detail
