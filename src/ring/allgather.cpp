// The all-gather-KV strategy (see allgather.hpp).
#include "ring/allgather.hpp"

#include <utility>
#include <vector>

#include "ring/plan.hpp"
#include "ring/source_blocks.hpp"
#include "util/timing.hpp"

namespace usp::detail {
namespace {

constexpr int kTagGather = 7005;      // K/V blocks
constexpr int kTagGatherGrad = 7006;  // dK/dV partials, to the block's owner

// Every other rank's block I need (blocks[source]) being received, and mine being sent to every
// rank that needs it (with a window or documents some see nothing of it).
struct Gather {
  std::vector<Tensor> blocks;
  std::vector<Transfer> recvs, sends;
  std::vector<char> needed;  // needed[source]: my queries see some key of its block

  Gather(const RingContext& ctx, const Tensor& kv) {
    const int p = ctx.comm.size(), rank = ctx.comm.rank();
    const std::int64_t len = kv.size(1);
    blocks.resize(static_cast<std::size_t>(p));
    recvs.resize(static_cast<std::size_t>(p));
    needed.assign(static_cast<std::size_t>(p), 0);
    for (int s = 1; s < p; ++s) {  // the order of use: rank − 1, rank − 2, …
      const int src = ring_source(p, rank, s);
      if (!sees(ctx, rank, src, len)) continue;
      needed[static_cast<std::size_t>(src)] = 1;
      Tensor& b = blocks[static_cast<std::size_t>(src)];
      b = Tensor::empty(kv.shape(), kv.dtype(), ctx.alloc);
      recvs[static_cast<std::size_t>(src)] =
          post_recv(ctx.comm, b.data(), b.nbytes(), src, kTagGather, ctx.timings);
    }
    for (int s = 1; s < p; ++s) {  // rank + 1 uses mine first, then rank + 2, …
      const int dst = (rank + s) % p;
      if (sees(ctx, dst, rank, len))
        sends.push_back(post_send(ctx.comm, kv.data(), kv.nbytes(), dst, kTagGather, ctx.timings));
    }
  }
  bool need(int source) const { return needed[static_cast<std::size_t>(source)] != 0; }
  // The block of `source` (≠ me), once it is here.
  const Tensor& wait(int source) {
    recvs[static_cast<std::size_t>(source)].wait();
    return blocks[static_cast<std::size_t>(source)];
  }
  void release(int source) { blocks[static_cast<std::size_t>(source)] = Tensor(); }
  void wait_sends() {
    for (Transfer& t : sends) t.wait();
  }
};

}  // namespace

RingForward allgather_forward(const RingContext& ctx, const Tensor& q, Tensor kv) {
  const int p = ctx.comm.size(), rank = ctx.comm.rank();
  Gather gather(ctx, kv);
  ForwardFold fold(ctx, q);
  fold.add(kv, rank);
  for (int s = 1; s < p; ++s) {
    const int src = ring_source(p, rank, s);
    if (!gather.need(src)) continue;
    fold.add(gather.wait(src), src);
    gather.release(src);
  }
  gather.wait_sends();
  return fold.result();
}

RingBackward allgather_backward(const RingContext& ctx, const Tensor& q, Tensor kv,
                                const Tensor& out, const Tensor& lse, const Tensor& dout) {
  AttentionKernel& kern = ctx.kernel;
  const int p = ctx.comm.size(), rank = ctx.comm.rank();
  const auto grads_buffer = [&] {
    Tensor g = Tensor::empty(kv.shape(), DType::f32, ctx.alloc);
    kern.fill_zero(g);
    return g;
  };
  Gather gather(ctx, kv);
  // The partials of my block from every other rank, in the order they are computed.
  std::vector<Tensor> theirs(static_cast<std::size_t>(p));
  std::vector<Transfer> their_recvs(static_cast<std::size_t>(p));
  const std::int64_t len = kv.size(1);
  for (int s = 1; s < p; ++s) {
    const int from = (rank + s) % p;
    if (!sees(ctx, from, rank, len)) continue;  // it computes nothing against my block
    Tensor& g = theirs[static_cast<std::size_t>(from)];
    g = Tensor::empty(kv.shape(), DType::f32, ctx.alloc);
    their_recvs[static_cast<std::size_t>(from)] =
        post_recv(ctx.comm, g.data(), g.nbytes(), from, kTagGatherGrad, ctx.timings);
  }

  const BackwardInputs in{q, out, lse, dout};
  RingBackward res{Tensor::empty(q.shape(), DType::f32, ctx.alloc), grads_buffer()};
  kern.fill_zero(res.dq);
  backward_blocks(ctx, in, kv, rank, res.dq, res.dkv);
  std::vector<Tensor> mine_for(static_cast<std::size_t>(p));  // partials on their way home
  std::vector<Transfer> grad_sends;
  for (int s = 1; s < p; ++s) {
    const int src = ring_source(p, rank, s);
    if (!gather.need(src)) continue;
    Tensor& g = mine_for[static_cast<std::size_t>(src)];
    g = grads_buffer();
    backward_blocks(ctx, in, gather.wait(src), src, res.dq, g);
    gather.release(src);
    grad_sends.push_back(
        post_send(ctx.comm, g.data(), g.nbytes(), src, kTagGatherGrad, ctx.timings));
  }
  gather.wait_sends();
  kv = Tensor();
  for (int s = 1; s < p; ++s) {  // a fixed order: the same bits whatever arrives first
    const int from = (rank + s) % p;
    if (!theirs[static_cast<std::size_t>(from)].defined()) continue;
    their_recvs[static_cast<std::size_t>(from)].wait();
    kern.add(theirs[static_cast<std::size_t>(from)], res.dkv);
    theirs[static_cast<std::size_t>(from)] = Tensor();
  }
  for (Transfer& t : grad_sends) t.wait();
  return res;
}

}  // namespace usp::detail
