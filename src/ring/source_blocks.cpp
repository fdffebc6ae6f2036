// The blocks of one source rank's K/V (see source_blocks.hpp).
#include "ring/source_blocks.hpp"

#include <utility>

#include "ring/plan.hpp"
#include "util/timing.hpp"

namespace usp::detail {

bool sees(const RingContext& ctx, int rank, int source, std::int64_t len) {
  if (ctx.mask == nullptr) return true;
  return BlockMask(ctx.mask, ctx.layout.ring_positions(rank), ctx.layout.ring_positions(source))
      .any_visible(len, len);
}

int needed_steps(const RingContext& ctx, std::int64_t len) {
  const int p = ctx.comm.size();
  if (ctx.mask == nullptr) return p;
  int last = 0;
  for (int s = 1; s < p; ++s)
    for (int r = 0; r < p; ++r)
      if (sees(ctx, r, ring_source(p, r, s), len)) {
        last = s;
        break;
      }
  return last + 1;
}

std::vector<SourceTask> source_tasks(const RingContext& ctx, int source, std::int64_t len) {
  std::vector<SourceTask> tasks;
  if (ctx.mask != nullptr) {
    const BlockMask m(ctx.mask, ctx.layout.ring_positions(ctx.comm.rank()),
                      ctx.layout.ring_positions(source));
    if (m.any_visible(len, len)) tasks.push_back({{0, len, 0, len, MaskMode::none}, m});
    return tasks;
  }
  for (const BlockTask& t :
       plan_blocks(ctx.type, ctx.comm.size(), ctx.comm.rank(), source, ctx.causal, len))
    tasks.push_back({t, t.mask});
  return tasks;
}

ForwardFold::ForwardFold(const RingContext& ctx, const Tensor& q)
    : ctx_(ctx),
      q_(q),
      res_{Tensor::empty({q.size(0), q.size(1), q.size(2), q.size(3)}, DType::f32, ctx.alloc),
           Tensor::empty({q.size(0), q.size(2), q.size(1)}, DType::f32, ctx.alloc)},
      acc_(ctx.kernel, ctx.alloc,
           accumulate_chunk_rows(ctx.kernel.device(), q.size(0), q.size(2), q.size(1))) {}

void ForwardFold::add(const Tensor& kv, int source) {
  AttentionKernel& kern = ctx_.kernel;
  const std::int64_t len = q_.size(1);
  const Tensor keys = kv_keys(kv), values = kv_values(kv);
  for (const SourceTask& task : source_tasks(ctx_, source, len)) {
    // Named references (not structured bindings): the lambdas below capture them.
    const BlockTask& t = task.block;
    const BlockMask& mask = task.mask;
    const Tensor qb = q_.slice(1, t.q_begin, t.q_len);
    const Tensor kb = keys.slice(1, t.k_begin, t.k_len);
    const Tensor vb = values.slice(1, t.k_begin, t.k_len);
    if (!filled_ && t.q_len == len) {  // the first block covers every row: write in place
      timed(ctx_.timings.compute_s,
            [&] { kern.forward(qb, kb, vb, mask, ctx_.scale, res_.out, res_.lse); });
      filled_ = true;
      continue;
    }
    fill();
    Tensor oa = res_.out.slice(1, t.q_begin, t.q_len), la = res_.lse.slice(2, t.q_begin, t.q_len);
    timed(ctx_.timings.compute_s, [&] { acc_.add(qb, kb, vb, mask, ctx_.scale, oa, la); });
  }
}

void ForwardFold::fill() {
  if (filled_) return;
  ctx_.kernel.fill_zero(res_.out);
  ctx_.kernel.fill_neg_inf(res_.lse);
  filled_ = true;
}

RingForward ForwardFold::result() {
  fill();
  return std::move(res_);
}

void backward_blocks(const RingContext& ctx, const BackwardInputs& in, const Tensor& kv, int source,
                     Tensor& dq, Tensor& dkv) {
  const Tensor keys = kv_keys(kv), values = kv_values(kv);
  const Tensor dkeys = kv_keys(dkv), dvalues = kv_values(dkv);
  for (const SourceTask& task : source_tasks(ctx, source, in.q.size(1))) {
    const BlockTask& t = task.block;
    const BlockMask& mask = task.mask;
    const Tensor qb = in.q.slice(1, t.q_begin, t.q_len);
    const Tensor ob = in.out.slice(1, t.q_begin, t.q_len);
    const Tensor dob = in.dout.slice(1, t.q_begin, t.q_len);
    const Tensor lb = in.lse.slice(2, t.q_begin, t.q_len);
    const Tensor kb = keys.slice(1, t.k_begin, t.k_len);
    const Tensor vb = values.slice(1, t.k_begin, t.k_len);
    Tensor dqb = dq.slice(1, t.q_begin, t.q_len);
    Tensor dkb = dkeys.slice(1, t.k_begin, t.k_len);
    Tensor dvb = dvalues.slice(1, t.k_begin, t.k_len);
    timed(ctx.timings.compute_s, [&] {
      ctx.kernel.backward(qb, kb, vb, ob, lb, dob, mask, ctx.scale, dqb, dkb, dvb,
                          /*accumulate=*/true);
    });
  }
}

}  // namespace usp::detail
