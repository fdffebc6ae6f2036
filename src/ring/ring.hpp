// The ring attention driver over one ring group, generic over the block kernel and the
// communicator. Tensors are in ring-local order (layout.hpp); the step plans (plan.hpp) say what
// each step computes.
//
// K and V travel together in one packed buffer kv [2b, L, hkv, d] (keys in rows [0, b), values in
// [b, 2b)), so each step is one message. The ring passes the packed buffer to rank + 1 and
// receives the next one from rank − 1; the transfer for step s + 1 is posted before step s is
// computed (double buffering), so an asynchronous backend overlaps it with the kernel.
//
// The double ring (inner > 0): the P ranks as G = P / inner inner rings of `inner` consecutive
// ranks, rank = g·inner + i. A phase is one single ring over the inner ring; at its start the
// block the rank holds also leaves on the outer ring (to (g + 1)·inner + i), to be the block the
// next phase starts with. The dK/dV partial of a phase's block, complete over the inner ring at
// the phase's end, takes the same outer hop and is added to the next group's partial of that
// block; after G phases it is home. inner = 0 or P is the single ring.
//
// allgather (type): every rank sends its block to every other at once and computes its queries
// against each block as it arrives, in the single ring's order with the zigzag rule; the backward
// sends each rank its fp32 dK/dV partial and sums the ones it receives (a reduce-scatter).
#pragma once

#include <memory>

#include "usp/comm.hpp"
#include "usp/kernel.hpp"
#include "usp/layout.hpp"
#include "usp/tensor.hpp"
#include "usp/timings.hpp"

namespace usp::detail {

struct RingContext {
  Communicator& comm;  // the ring group: rank = ring rank
  AttentionKernel& kernel;
  Allocator& alloc;
  RingType type;
  bool causal;
  float scale;
  UspTimings& timings;
  int inner = 0;  // the double ring's inner ring size; 0 = the single ring
  // A window or documents (null: plain causal or full attention, the step plans' rules). Each
  // source's block is then one kernel call under the general mask at the layout's positions,
  // and none when no pair of it is visible.
  std::shared_ptr<const AttentionMask> mask;
  Layout layout;  // of the call (positions of the ring ranks' blocks)
};

// k [b, L, hkv, d] and v (same shape and dtype) copied into one new packed buffer.
Tensor pack_kv(AttentionKernel& kernel, Allocator& alloc, const Tensor& k, const Tensor& v);
inline Tensor kv_keys(const Tensor& kv) {
  return kv.slice(0, 0, kv.size(0) / 2);
}
inline Tensor kv_values(const Tensor& kv) {
  return kv.slice(0, kv.size(0) / 2, kv.size(0) / 2);
}

struct RingForward {
  Tensor out;  // [b, L, h, d] fp32
  Tensor lse;  // [b, h, L] fp32
};
// q [b, L, h, d]; kv packed. kv is used as one of the two ring buffers: its contents are
// overwritten by the time this returns.
RingForward ring_forward(const RingContext& ctx, const Tensor& q, Tensor kv);

struct RingBackward {
  Tensor dq;   // [b, L, h, d] fp32
  Tensor dkv;  // packed [2b, L, hkv, d] fp32: dK and dV of my own block, summed over the ring
};
// out and lse of the full attention (ring_forward's, or forward's output in the input dtype),
// dout like out. kv is overwritten as in ring_forward.
RingBackward ring_backward(const RingContext& ctx, const Tensor& q, Tensor kv, const Tensor& out,
                           const Tensor& lse, const Tensor& dout);

}  // namespace usp::detail
