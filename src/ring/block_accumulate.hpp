// Forward of one block, folded into an fp32 accumulator. A kernel with forward_accumulate (the
// CPU kernel) folds the whole block in one call. Otherwise the block runs a chunk of query rows
// at a time through forward() into an fp32 scratch and merge(), so the partial result never needs
// a full-block scratch.
//
// Rows [a, a + c) of a block with mask none are a plain slice. On a causal or causal_strict
// diagonal block (sq == sk, as the kernel requires) they are split exactly into keys [0, a) with
// mask none (every one of them precedes every row of the chunk) and keys [a, a + c) with the same
// mask (again a diagonal block). Each piece is merged into the accumulator in the overflow-free
// LSE form, so the result is the one of the whole block up to fp32 rounding.
#pragma once

#include <cstdint>

#include "usp/kernel.hpp"
#include "usp/tensor.hpp"

namespace usp::detail {

// Query rows per chunk for q [b, rows, h, d] on `device`: enough (batch, head, row tile) work
// items per kernel call to keep the kernel's parallelism (threads × a few tiles on the host, a
// few waves of thread blocks on a GPU), on the host at least 256 rows (every call re-packs the
// block's K/V), and never more than `rows`.
std::int64_t accumulate_chunk_rows(Device device, std::int64_t b, std::int64_t h,
                                   std::int64_t rows);

class BlockAccumulator {
 public:
  // Chunks of chunk_rows query rows; the fp32 scratch (one chunk of rows of out and lse, at most
  // chunk_rows) comes from alloc on the first add() and is kept for the next ones.
  BlockAccumulator(AttentionKernel& kernel, Allocator& alloc, std::int64_t chunk_rows);

  // out [b, sq, h, d] and lse [b, h, sq] (fp32, may be views) ← merge of themselves with the
  // attention of q [b, sq, h, d] over k, v [b, sk, hkv, d] under mask.
  void add(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask, float scale,
           Tensor& out, Tensor& lse);

  std::int64_t chunk_rows() const { return chunk_; }

 private:
  // One kernel call on the rows in hand, merged into (out, lse).
  void add_piece(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
                 float scale, Tensor& out, Tensor& lse);

  AttentionKernel& kernel_;
  Allocator& alloc_;
  std::int64_t chunk_;
  Tensor scratch_out_, scratch_lse_;  // [b, rows, h, d] and [b, h, rows] fp32
};

}  // namespace usp::detail
