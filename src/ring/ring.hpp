// The ring attention driver over one ring group, generic over the block kernel and the
// communicator. Tensors are in ring-local order (layout.hpp); the step plans (plan.hpp) say what
// each step computes.
//
// K and V travel together in one packed buffer kv [2b, L, hkv, d] (keys in rows [0, b), values in
// [b, 2b)), so each step is one message. The ring passes the packed buffer to rank + 1 and
// receives the next one from rank − 1; the transfer for step s + 1 is posted before step s is
// computed (double buffering), so an asynchronous backend overlaps it with the kernel.
#pragma once

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
