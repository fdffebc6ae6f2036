// Ring attention, forward and backward (see ring.hpp). Per step: post the next transfer, compute
// the planned blocks of the K/V block in hand, wait, swap buffers.
#include "ring/ring.hpp"

#include <utility>

#include "ring/block_accumulate.hpp"
#include "ring/plan.hpp"
#include "usp/error.hpp"
#include "util/timing.hpp"

namespace usp::detail {
namespace {

constexpr int kTagKV = 7001;   // the K/V ring
constexpr int kTagDKV = 7002;  // the partial dK/dV ring, one step behind

int next_rank(const Communicator& c) {
  return (c.rank() + 1) % c.size();
}
int prev_rank(const Communicator& c) {
  return (c.rank() + c.size() - 1) % c.size();
}

// One hop of the ring: send mine to rank + 1, receive the next block from rank − 1.
struct Shift {
  Transfer send, recv;
  void wait() {
    recv.wait();
    send.wait();
  }
};

Shift post_shift(const RingContext& ctx, const Tensor& mine, Tensor& incoming, int tag) {
  Transfer recv = post_recv(ctx.comm, incoming.data(), incoming.nbytes(), prev_rank(ctx.comm), tag,
                            ctx.timings);
  Transfer send =
      post_send(ctx.comm, mine.data(), mine.nbytes(), next_rank(ctx.comm), tag, ctx.timings);
  return {std::move(send), std::move(recv)};
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
  AttentionKernel& kern = ctx.kernel;
  const int p = ctx.comm.size(), rank = ctx.comm.rank();
  const std::int64_t b = q.size(0), len = q.size(1), h = q.size(2), d = q.size(3);

  RingForward res{Tensor::empty({b, len, h, d}, DType::f32, ctx.alloc),
                  Tensor::empty({b, h, len}, DType::f32, ctx.alloc)};
  bool filled = false;  // accumulators hold a valid (possibly empty) result
  // Later blocks are folded into the accumulator: by the kernel itself when it can
  // (forward_accumulate), else a chunk of query rows at a time through an fp32 scratch.
  BlockAccumulator acc(kern, ctx.alloc, accumulate_chunk_rows(kern.device(), b, h, len));
  Tensor spare = p > 1 ? Tensor::empty(kv.shape(), kv.dtype(), ctx.alloc) : Tensor();

  for (int step = 0; step < p; ++step) {
    Shift shift;
    if (step + 1 < p) shift = post_shift(ctx, kv, spare, kTagKV);

    const Tensor keys = kv_keys(kv), values = kv_values(kv);
    for (const BlockTask& t : plan_step(ctx.type, p, rank, step, ctx.causal, len)) {
      const Tensor qb = q.slice(1, t.q_begin, t.q_len);
      const Tensor kb = keys.slice(1, t.k_begin, t.k_len);
      const Tensor vb = values.slice(1, t.k_begin, t.k_len);
      if (!filled && t.q_len == len) {  // the first block covers every row: write in place
        timed(ctx.timings.compute_s,
              [&] { kern.forward(qb, kb, vb, t.mask, ctx.scale, res.out, res.lse); });
        filled = true;
        continue;
      }
      if (!filled) {
        kern.fill_zero(res.out);
        kern.fill_neg_inf(res.lse);
        filled = true;
      }
      Tensor oa = res.out.slice(1, t.q_begin, t.q_len), la = res.lse.slice(2, t.q_begin, t.q_len);
      timed(ctx.timings.compute_s, [&] { acc.add(qb, kb, vb, t.mask, ctx.scale, oa, la); });
    }

    shift.wait();
    if (step + 1 < p) std::swap(kv, spare);
  }
  if (!filled) {
    kern.fill_zero(res.out);
    kern.fill_neg_inf(res.lse);
  }
  return res;
}

RingBackward ring_backward(const RingContext& ctx, const Tensor& q, Tensor kv, const Tensor& out,
                           const Tensor& lse, const Tensor& dout) {
  check_ring_args(q, kv);
  AttentionKernel& kern = ctx.kernel;
  const int p = ctx.comm.size(), rank = ctx.comm.rank();
  const std::int64_t b = q.size(0), len = q.size(1), h = q.size(2), d = q.size(3);

  RingBackward res{Tensor::empty({b, len, h, d}, DType::f32, ctx.alloc), Tensor()};
  kern.fill_zero(res.dq);
  Tensor spare = p > 1 ? Tensor::empty(kv.shape(), kv.dtype(), ctx.alloc) : Tensor();
  // The partial dK/dV of the block in hand alternate between two fp32 buffers: one is computed
  // into (on top of what the ranks before added) while the other travels on.
  Tensor dkv[2] = {Tensor::empty(kv.shape(), DType::f32, ctx.alloc),
                   p > 1 ? Tensor::empty(kv.shape(), DType::f32, ctx.alloc) : Tensor()};
  Transfer dkv_send, dkv_recv;

  for (int step = 0; step < p; ++step) {
    Shift shift;
    if (step + 1 < p) shift = post_shift(ctx, kv, spare, kTagKV);

    Tensor& grads = dkv[step % 2];  // dK/dV of block (rank − step) mod p
    if (step == 0) {
      kern.fill_zero(grads);
    } else {
      dkv_recv.wait();
    }
    const Tensor keys = kv_keys(kv), values = kv_values(kv);
    const Tensor dkeys = kv_keys(grads), dvalues = kv_values(grads);
    for (const BlockTask& t : plan_step(ctx.type, p, rank, step, ctx.causal, len)) {
      const Tensor qb = q.slice(1, t.q_begin, t.q_len);
      const Tensor ob = out.slice(1, t.q_begin, t.q_len);
      const Tensor dob = dout.slice(1, t.q_begin, t.q_len);
      const Tensor lb = lse.slice(2, t.q_begin, t.q_len);
      const Tensor kb = keys.slice(1, t.k_begin, t.k_len);
      const Tensor vb = values.slice(1, t.k_begin, t.k_len);
      Tensor dqb = res.dq.slice(1, t.q_begin, t.q_len);
      Tensor dkb = dkeys.slice(1, t.k_begin, t.k_len);
      Tensor dvb = dvalues.slice(1, t.k_begin, t.k_len);
      timed(ctx.timings.compute_s, [&] {
        kern.backward(qb, kb, vb, ob, lb, dob, t.mask, ctx.scale, dqb, dkb, dvb,
                      /*accumulate=*/true);
      });
    }

    if (p > 1) {
      // The other buffer left at the previous step; once that send is done it may receive the
      // next block's partial grads (after the last step: my own block's, home after p hops).
      Tensor& other = dkv[(step + 1) % 2];
      dkv_send.wait();
      dkv_recv = post_recv(ctx.comm, other.data(), other.nbytes(), prev_rank(ctx.comm), kTagDKV,
                           ctx.timings);
      dkv_send = post_send(ctx.comm, grads.data(), grads.nbytes(), next_rank(ctx.comm), kTagDKV,
                           ctx.timings);
    }

    shift.wait();
    if (step + 1 < p) std::swap(kv, spare);
  }
  kv = Tensor();  // the K/V buffers are dead; only my block's grads are still on their way
  spare = Tensor();
  if (p > 1) {
    dkv_recv.wait();
    dkv_send.wait();
  }
  res.dkv = std::move(dkv[p > 1 ? p % 2 : 0]);  // where the last receive landed
  return res;
}

}  // namespace usp::detail
