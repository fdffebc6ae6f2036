#include "runner.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <mutex>

#include "data.hpp"
#include "usp/attention.hpp"
#include "usp/comm.hpp"
#include "usp/kernel.hpp"
#include "usp/memory.hpp"

namespace usp::bench {
namespace {

using Clock = std::chrono::steady_clock;

UspConfig usp_config(const Problem& p, const RowConfig& c) {
  UspConfig cfg;
  cfg.ring_type = c.ring_type;
  cfg.ulysses = c.ulysses;
  cfg.ring = c.ring;
  cfg.causal = p.causal;
  return cfg;
}

struct Shards {
  Tensor q, k, v, dout;
};

Shards make_shards(const Problem& p, const RowConfig& c, const Layout& layout, int ring_rank,
                   int ulysses_rank, Allocator& alloc) {
  Shards s;
  s.q = make_shard(layout, ring_rank, ulysses_rank, TensorId::q, p.seed, p.batch, p.nheads,
                   p.head_size, p.dtype, alloc);
  s.k = make_shard(layout, ring_rank, ulysses_rank, TensorId::k, p.seed, p.batch, p.kv_heads,
                   p.head_size, p.dtype, alloc);
  s.v = make_shard(layout, ring_rank, ulysses_rank, TensorId::v, p.seed, p.batch, p.kv_heads,
                   p.head_size, p.dtype, alloc);
  if (!c.fwd_only)
    s.dout = make_shard(layout, ring_rank, ulysses_rank, TensorId::dout, p.seed, p.batch, p.nheads,
                        p.head_size, p.dtype, alloc);
  return s;
}

// Global results of the single-rank run, as doubles in token order.
struct Reference {
  std::vector<double> out, lse, dq, dk, dv;
};

// Σ(a − ref)² and Σ ref² of one tensor, accumulated over ranks.
struct ErrSum {
  double err2 = 0, ref2 = 0;
  void add(const ErrSum& o) {
    err2 += o.err2;
    ref2 += o.ref2;
  }
  double rel() const { return ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2); }
};

// Compares a [b, s_local, heads, d] shard with the global [b, s, heads, d] reference.
ErrSum compare_rows(const Tensor& local, const std::vector<double>& ref, const Layout& layout,
                    int rr, int ur) {
  const auto a = to_doubles(local);
  const std::int64_t b = local.size(0), s_local = local.size(1);
  const std::int64_t row = local.size(2) * local.size(3);
  ErrSum e;
  for (std::int64_t bi = 0; bi < b; ++bi)
    for (std::int64_t i = 0; i < s_local; ++i) {
      const std::int64_t g = layout.global(rr, ur, i);
      const double* x = a.data() + (bi * s_local + i) * row;
      const double* y = ref.data() + (bi * layout.seq_len + g) * row;
      for (std::int64_t j = 0; j < row; ++j) {
        e.err2 += (x[j] - y[j]) * (x[j] - y[j]);
        e.ref2 += y[j] * y[j];
      }
    }
  return e;
}

// Compares a [b, h, s_local] lse shard with the global [b, h, s] reference.
ErrSum compare_lse(const Tensor& local, const std::vector<double>& ref, const Layout& layout,
                   int rr, int ur) {
  const auto a = to_doubles(local);
  const std::int64_t bh = local.size(0) * local.size(1), s_local = local.size(2);
  ErrSum e;
  for (std::int64_t j = 0; j < bh; ++j)
    for (std::int64_t i = 0; i < s_local; ++i) {
      const double x = a[static_cast<std::size_t>(j * s_local + i)];
      const double y = ref[static_cast<std::size_t>(j * layout.seq_len + layout.global(rr, ur, i))];
      if (std::isinf(x) && std::isinf(y) && (x < 0) == (y < 0)) continue;
      e.err2 += (x - y) * (x - y);
      e.ref2 += y * y;
    }
  return e;
}

}  // namespace

RowResult run_row(const Problem& p, const RowConfig& c, int threads, int warmup, int iters) {
  const int world = c.world();
  RowResult res;
  res.threads = threads;
  res.iters = iters;
  res.ranks.resize(static_cast<std::size_t>(world));
  std::vector<double> wall(static_cast<std::size_t>(world), 0.0);

  run_local(world, [&](Communicator& comm) {
    HostAllocator alloc;
    auto kernel = make_cpu_kernel(threads);
    UspAttention att(comm, *kernel, alloc, usp_config(p, c));
    const Layout layout = att.layout(c.seq_len);
    const Shards in =
        make_shards(p, c, layout, att.mesh().coord.ring, att.mesh().coord.ulysses, alloc);
    auto iteration = [&] {
      UspAttention::Output o = att.forward(in.q, in.k, in.v);
      if (!c.fwd_only) {
        UspAttention::Grads g = att.backward(in.q, in.k, in.v, o.out, o.lse, in.dout);
      }
    };
    for (int i = 0; i < warmup; ++i) iteration();
    comm.barrier();
    alloc.reset_peak();
    att.reset_timings();
    comm.barrier();
    const auto t0 = Clock::now();
    for (int i = 0; i < iters; ++i) iteration();
    comm.barrier();
    const auto t1 = Clock::now();
    const UspTimings t = att.timings();
    RankStats& st = res.ranks[static_cast<std::size_t>(comm.rank())];
    st.compute_s = t.compute_s;
    st.comm_wait_s = t.comm_wait_s;
    st.comm_total_s = t.comm_total_s;
    st.bytes_sent = t.bytes_sent;
    st.peak_bytes = alloc.stats().peak;
    wall[static_cast<std::size_t>(comm.rank())] = std::chrono::duration<double>(t1 - t0).count();
  });

  res.wall_s = *std::max_element(wall.begin(), wall.end());
  res.throughput = res.wall_s > 0 ? iters / res.wall_s : 0.0;
  res.latency_ms = res.throughput > 0 ? 1000.0 / res.throughput : 0.0;
  res.flops = row_flops(p, c);
  res.tflops = tflops(res.flops, res.latency_ms);
  for (const RankStats& s : res.ranks) res.peak_bytes = std::max(res.peak_bytes, s.peak_bytes);
  res.peak_mb = static_cast<double>(res.peak_bytes) / (1024.0 * 1024.0);
  return res;
}

double check_tolerance(DType t, bool gradient) {
  if (t == DType::f32) return gradient ? 1e-4 : 1e-5;
  return 2e-2;
}

CheckResult check_row(const Problem& p, const RowConfig& c, int threads, int reference_threads) {
  Reference ref;
  RowConfig single = c;
  single.ulysses = 1;
  single.ring = 1;
  run_local(1, [&](Communicator& comm) {
    HostAllocator alloc;
    auto kernel = make_cpu_kernel(reference_threads);
    UspAttention att(comm, *kernel, alloc, usp_config(p, single));
    const Shards in = make_shards(p, single, att.layout(c.seq_len), 0, 0, alloc);
    UspAttention::Output o = att.forward(in.q, in.k, in.v);
    ref.out = to_doubles(o.out);
    ref.lse = to_doubles(o.lse);
    if (!c.fwd_only) {
      UspAttention::Grads g = att.backward(in.q, in.k, in.v, o.out, o.lse, in.dout);
      ref.dq = to_doubles(g.dq);
      ref.dk = to_doubles(g.dk);
      ref.dv = to_doubles(g.dv);
    }
  });

  constexpr int kTensors = 5;  // out, lse, dq, dk, dv
  std::mutex mu;
  ErrSum sums[kTensors];
  run_local(c.world(), [&](Communicator& comm) {
    HostAllocator alloc;
    auto kernel = make_cpu_kernel(threads);
    UspAttention att(comm, *kernel, alloc, usp_config(p, c));
    const Layout layout = att.layout(c.seq_len);
    const int rr = att.mesh().coord.ring, ur = att.mesh().coord.ulysses;
    const Shards in = make_shards(p, c, layout, rr, ur, alloc);
    UspAttention::Output o = att.forward(in.q, in.k, in.v);
    ErrSum mine[kTensors];
    mine[0] = compare_rows(o.out, ref.out, layout, rr, ur);
    mine[1] = compare_lse(o.lse, ref.lse, layout, rr, ur);
    if (!c.fwd_only) {
      UspAttention::Grads g = att.backward(in.q, in.k, in.v, o.out, o.lse, in.dout);
      mine[2] = compare_rows(g.dq, ref.dq, layout, rr, ur);
      mine[3] = compare_rows(g.dk, ref.dk, layout, rr, ur);
      mine[4] = compare_rows(g.dv, ref.dv, layout, rr, ur);
    }
    std::lock_guard<std::mutex> lock(mu);
    for (int i = 0; i < kTensors; ++i) sums[i].add(mine[i]);
  });

  static const char* const kNames[kTensors] = {"out", "lse", "dq", "dk", "dv"};
  CheckResult r;
  const int n = c.fwd_only ? 2 : kTensors;
  for (int i = 0; i < n; ++i) {
    const double e = sums[i].rel();
    if (!(e <= check_tolerance(p.dtype, i >= 2))) r.pass = false;
    if (i == 0 || e > r.max_rel_err || std::isnan(e)) {
      r.max_rel_err = e;
      r.worst = kNames[i];
    }
  }
  return r;
}

}  // namespace usp::bench
