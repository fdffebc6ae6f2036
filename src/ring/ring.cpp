// Ring attention, forward and backward (see ring.hpp), single and double ring. Per step: post the
// next transfer, compute the planned blocks of the K/V block in hand, wait, swap buffers.
#include "ring/ring.hpp"

#include <utility>

#include "ring/allgather.hpp"
#include "ring/plan.hpp"
#include "ring/source_blocks.hpp"
#include "usp/error.hpp"
#include "util/timing.hpp"

namespace usp::detail {
namespace {

constexpr int kTagKV = 7001;        // the K/V ring (the inner ring of a double ring)
constexpr int kTagDKV = 7002;       // the partial dK/dV ring, one step behind
constexpr int kTagKVOuter = 7003;   // the double ring's outer hop of K/V
constexpr int kTagDKVOuter = 7004;  // the double ring's outer hop of the dK/dV partials

// The ring ranks as `groups` inner rings of `inner` consecutive ranks, rank = g·inner + i (the
// single ring: one group of all ranks).
struct Rings {
  int inner, groups, g, i;
  int steps;  // inner steps a phase computes: `inner`, fewer on a single ring the mask cuts short
  Rings(int p, int rank, int inner_size) {
    USP_CHECK_ARG(inner_size >= 0 && (inner_size == 0 || p % inner_size == 0), "double ring ",
                  inner_size, " must be 0 (the single ring) or divide the ring size ", p);
    inner = inner_size == 0 ? p : inner_size;
    groups = p / inner;
    g = rank / inner;
    i = rank % inner;
    steps = inner;
  }
  bool outer() const { return groups > 1; }
  int inner_next() const { return g * inner + (i + 1) % inner; }
  int inner_prev() const { return g * inner + (i + inner - 1) % inner; }
  int outer_next() const { return (g + 1) % groups * inner + i; }
  int outer_prev() const { return (g + groups - 1) % groups * inner + i; }
  // The rank whose block this rank holds at inner step t of phase o.
  int source(int o, int t) const {
    return (g + groups - o) % groups * inner + (i + inner - t) % inner;
  }
};

// The K/V buffers of a (double) ring: the block a phase starts with, the next phase's (arriving
// on the outer ring) and the inner ring's; the single ring alternates between two.
class KvBuffers {
 public:
  KvBuffers(const Rings& rings, Tensor kv, Allocator& alloc)
      : outer_(rings.outer()), phase_(std::move(kv)) {
    const auto empty = [&] { return Tensor::empty(phase_.shape(), phase_.dtype(), alloc); };
    if (outer_) next_phase_ = empty();
    if (rings.steps > 1) inner_[0] = empty();
    if (outer_ && rings.steps > 2) inner_[1] = empty();
  }
  Tensor& phase() { return phase_; }
  Tensor& next_phase() { return next_phase_; }
  // The block computed at inner step t, and the buffer that receives the next one.
  Tensor& held(int t) {
    if (t == 0) return phase_;
    return outer_ ? inner_[(t - 1) % 2] : (t % 2 ? inner_[0] : phase_);
  }
  Tensor& incoming(int t) { return outer_ ? inner_[t % 2] : (t % 2 ? phase_ : inner_[0]); }
  void next() { std::swap(phase_, next_phase_); }
  void release() { phase_ = next_phase_ = inner_[0] = inner_[1] = Tensor(); }

 private:
  bool outer_;
  Tensor phase_, next_phase_, inner_[2];
};

// One hop: send `mine` to `to`, receive into `incoming` from `from`.
struct Shift {
  Transfer send, recv;
  void wait() {
    recv.wait();
    send.wait();
  }
};

Shift post_shift(const RingContext& ctx, const Tensor& mine, int to, Tensor& incoming, int from,
                 int tag) {
  Transfer recv = post_recv(ctx.comm, incoming.data(), incoming.nbytes(), from, tag, ctx.timings);
  Transfer send = post_send(ctx.comm, mine.data(), mine.nbytes(), to, tag, ctx.timings);
  return {std::move(send), std::move(recv)};
}

// At the start of phase o: this phase's block to the next group, the next phase's block from the
// previous one (none after the last phase).
Shift post_outer_hop(const RingContext& ctx, const Rings& rings, KvBuffers& bufs, int o) {
  if (o + 1 >= rings.groups) return {};
  return post_shift(ctx, bufs.phase(), rings.outer_next(), bufs.next_phase(), rings.outer_prev(),
                    kTagKVOuter);
}

// At inner step t: the block in hand to the next rank of my inner ring, the next block from the
// previous one (none at the last step).
Shift post_inner_hop(const RingContext& ctx, const Rings& rings, KvBuffers& bufs, int t) {
  if (t + 1 >= rings.steps) return {};
  return post_shift(ctx, bufs.held(t), rings.inner_next(), bufs.incoming(t), rings.inner_prev(),
                    kTagKV);
}

void check_ring_args(const Tensor& q, const Tensor& kv) {
  USP_CHECK_ARG(q.dim() == 4 && kv.dim() == 4, "ring: q ", q.describe(), " and kv ", kv.describe(),
                " must be 4-D");
  USP_CHECK_ARG(kv.is_contiguous() && kv.size(0) == 2 * q.size(0) && kv.size(1) == q.size(1),
                "ring: packed kv ", kv.describe(), " must be contiguous [2·b, L, hkv, d] for q ",
                q.describe());
}

}  // namespace

Tensor pack_kv(AttentionKernel& kernel, Allocator& alloc, const Tensor& k, const Tensor& v) {
  USP_CHECK_ARG(k.shape() == v.shape() && k.dtype() == v.dtype(), "k ", k.describe(), " and v ",
                v.describe(), " must have the same shape and dtype");
  Tensor::Dims shape = k.shape();
  shape[0] *= 2;
  Tensor kv = Tensor::empty(shape, k.dtype(), alloc);
  Tensor keys = kv_keys(kv), values = kv_values(kv);
  kernel.copy(k, keys);
  kernel.copy(v, values);
  return kv;
}

RingForward ring_forward(const RingContext& ctx, const Tensor& q, Tensor kv) {
  check_ring_args(q, kv);
  if (ctx.type == RingType::allgather) return allgather_forward(ctx, q, std::move(kv));
  Rings rings(ctx.comm.size(), ctx.comm.rank(), ctx.inner);
  if (!rings.outer()) rings.steps = needed_steps(ctx, q.size(1));
  ForwardFold fold(ctx, q);
  KvBuffers bufs(rings, std::move(kv), ctx.alloc);

  for (int o = 0; o < rings.groups; ++o) {
    Shift hop = post_outer_hop(ctx, rings, bufs, o);
    for (int t = 0; t < rings.steps; ++t) {
      Shift shift = post_inner_hop(ctx, rings, bufs, t);
      fold.add(bufs.held(t), rings.source(o, t));
      shift.wait();
    }
    hop.wait();
    if (o + 1 < rings.groups) bufs.next();
  }
  return fold.result();
}

RingBackward ring_backward(const RingContext& ctx, const Tensor& q, Tensor kv, const Tensor& out,
                           const Tensor& lse, const Tensor& dout) {
  check_ring_args(q, kv);
  if (ctx.type == RingType::allgather)
    return allgather_backward(ctx, q, std::move(kv), out, lse, dout);
  AttentionKernel& kern = ctx.kernel;
  Rings rings(ctx.comm.size(), ctx.comm.rank(), ctx.inner);
  if (!rings.outer()) rings.steps = needed_steps(ctx, q.size(1));
  const BackwardInputs in{q, out, lse, dout};
  const Tensor::Dims kv_shape = kv.shape();
  const auto grads_buffer = [&] { return Tensor::empty(kv_shape, DType::f32, ctx.alloc); };

  RingBackward res{Tensor::empty(q.shape(), DType::f32, ctx.alloc), Tensor()};
  kern.fill_zero(res.dq);
  KvBuffers bufs(rings, std::move(kv), ctx.alloc);
  // The partial dK/dV of the block in hand alternate between two fp32 buffers: one is computed
  // into (on top of what the ranks before added) while the other travels on the inner ring.
  Tensor dkv[2] = {grads_buffer(), rings.steps > 1 ? grads_buffer() : Tensor()};
  Transfer dkv_send, dkv_recv;
  // The double ring: a phase's partial, complete over my inner ring, leaves for the next group
  // (hop_out) while the previous group's partial of the next phase's block arrives (hop_in).
  Tensor hop_out = rings.outer() ? grads_buffer() : Tensor();
  Tensor hop_in = rings.outer() ? grads_buffer() : Tensor();
  Transfer hop_send, hop_recv;

  for (int o = 0; o < rings.groups; ++o) {
    Shift hop = post_outer_hop(ctx, rings, bufs, o);
    for (int t = 0; t < rings.steps; ++t) {
      Shift shift = post_inner_hop(ctx, rings, bufs, t);
      Tensor& grads = dkv[t % 2];  // dK/dV of the block in hand
      if (t == 0) {
        kern.fill_zero(grads);
      } else {
        dkv_recv.wait();
      }
      backward_blocks(ctx, in, bufs.held(t), rings.source(o, t), res.dq, grads);
      if (rings.steps > 1) {
        // The other buffer left at the previous step; once that send is done it may receive the
        // next block's partial grads (after the last step: the phase block's, home after
        // `inner` hops). A single ring cut short by the mask sends the last step's partial, now
        // complete, straight to its block's owner and gets its own from the rank that held it
        // last (on the full ring these are the next and previous ranks).
        int to = rings.inner_next(), from = rings.inner_prev();
        if (t + 1 == rings.steps && !rings.outer()) {
          to = rings.source(0, t);
          from = (ctx.comm.rank() + t) % ctx.comm.size();
        }
        Tensor& other = dkv[(t + 1) % 2];
        dkv_send.wait();
        dkv_recv = post_recv(ctx.comm, other.data(), other.nbytes(), from, kTagDKV, ctx.timings);
        dkv_send = post_send(ctx.comm, grads.data(), grads.nbytes(), to, kTagDKV, ctx.timings);
      }
      shift.wait();
    }
    if (rings.steps > 1) {
      dkv_recv.wait();
      dkv_send.wait();
    }
    // The phase block's dK/dV, summed over my inner ring: where the last inner receive landed.
    Tensor& partial = dkv[rings.steps > 1 ? rings.steps % 2 : 0];
    if (rings.outer()) {
      if (o > 0) {  // the earlier groups' sum of the same block
        hop_recv.wait();
        kern.add(hop_in, partial);
      }
      hop_send.wait();
      std::swap(hop_out, partial);
      hop_recv = post_recv(ctx.comm, hop_in.data(), hop_in.nbytes(), rings.outer_prev(),
                           kTagDKVOuter, ctx.timings);
      hop_send = post_send(ctx.comm, hop_out.data(), hop_out.nbytes(), rings.outer_next(),
                           kTagDKVOuter, ctx.timings);
    }
    hop.wait();
    if (o + 1 < rings.groups) bufs.next();
  }
  bufs.release();  // the K/V buffers are dead; only my block's grads are still on their way
  if (rings.outer()) {
    dkv[0] = dkv[1] = Tensor();
    hop_recv.wait();
    hop_send.wait();
    res.dkv = std::move(hop_in);  // the last phase's sum of my own block, from the last group
  } else {
    res.dkv = std::move(dkv[rings.steps > 1 ? rings.steps % 2 : 0]);
  }
  return res;
}

}  // namespace usp::detail
