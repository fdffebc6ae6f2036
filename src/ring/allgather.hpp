// The all-gather-KV strategy over one ring group (ring type allgather): instead of passing K/V
// around the ring, every rank sends its packed block to every other rank at once (r − 1 sends and
// receives posted together, in the order the receivers use them) and folds in each block as it
// arrives, my own first, then rank − 1, rank − 2, … (the single ring's order, with the zigzag
// rule, so the forward gives the zigzag ring's bits). The backward gathers K/V the same way,
// computes my queries' gradients against every block, sends each rank the fp32 dK/dV partial of
// its block as soon as it is computed and sums the partials of my block in a fixed rank order
// (a reduce-scatter in fp32).
//
// Memory: the r blocks of K/V at once (and, in the backward, the fp32 partials in flight), for
// fewer, concurrent transfers: good with GQA (small K/V) and short sequences.
#pragma once

#include "ring/ring.hpp"

namespace usp::detail {

// As ring_forward / ring_backward (ring.hpp), ctx.type == allgather; kv is not overwritten.
RingForward allgather_forward(const RingContext& ctx, const Tensor& q, Tensor kv);
RingBackward allgather_backward(const RingContext& ctx, const Tensor& q, Tensor kv,
                                const Tensor& out, const Tensor& lse, const Tensor& dout);

}  // namespace usp::detail
