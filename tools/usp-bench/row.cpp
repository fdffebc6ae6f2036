#include "row.hpp"

#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>

#include "../common/rank_exchange.hpp"
#include "data.hpp"
#include "usp/attention.hpp"
#include "usp/backend.hpp"
#include "usp/comm.hpp"
#include "usp/error.hpp"
#include "usp/kernel.hpp"
#include "usp/memory.hpp"

namespace usp::bench {
namespace {

using Clock = std::chrono::steady_clock;

// CPU time of this process so far (every thread), in seconds.
double process_cpu_s() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  auto sec = [](const timeval& t) {
    return static_cast<double>(t.tv_sec) + 1e-6 * static_cast<double>(t.tv_usec);
  };
  return sec(u.ru_utime) + sec(u.ru_stime);
}

// The row's attention on `backend` with `threads` kernel threads per rank.
AttentionOptions attention_options(const std::string& backend, const BenchProblem& p,
                                   const RowConfig& c, int threads) {
  return {.backend = backend,
          .ulysses = c.ulysses,
          .ring = c.ring,
          .ring_type = c.ring_type,
          .causal = p.causal,
          .double_ring = c.double_ring,
          .window = p.window,
          .cu_seqlens = p.documents(c.seq_len),
          .head_chunks = p.head_chunks,
          .threads = threads};
}

struct Shards {
  Tensor q, k, v, dout;
};

// One shard in `alloc`: generated there directly in host memory, or generated in host staging
// memory and copied to the device (the staging is freed on return, so only device bytes count).
Tensor shard_in(const Layout& layout, int rr, int ur, TensorId id, const BenchProblem& p,
                std::int64_t heads, Allocator& alloc) {
  if (alloc.device() == Device::host)
    return make_shard(layout, rr, ur, id, p.seed, p.batch, heads, p.head_size, p.dtype, alloc);
  HostAllocator staging;
  const Tensor host =
      make_shard(layout, rr, ur, id, p.seed, p.batch, heads, p.head_size, p.dtype, staging);
  return copy_to(host, alloc);
}

Shards make_shards(const BenchProblem& p, const RowConfig& c, const Layout& layout, int ring_rank,
                   int ulysses_rank, Allocator& alloc) {
  Shards s;
  s.q = shard_in(layout, ring_rank, ulysses_rank, TensorId::q, p, p.nheads, alloc);
  s.k = shard_in(layout, ring_rank, ulysses_rank, TensorId::k, p, p.kv_heads, alloc);
  s.v = shard_in(layout, ring_rank, ulysses_rank, TensorId::v, p, p.kv_heads, alloc);
  if (!c.fwd_only)
    s.dout = shard_in(layout, ring_rank, ulysses_rank, TensorId::dout, p, p.nheads, alloc);
  return s;
}

// Runs fn on every rank of a world of `size` ranks: threads started now, or this process's rank.
void for_ranks(const Ranks& ranks, int size, const std::function<void(Communicator&)>& fn) {
  if (ranks.world == nullptr) {
    run_ranks(ranks.backend, size, fn);
    return;
  }
  USP_CHECK_ARG(ranks.world->size() == size, "this row needs ", size, " ranks but the job has ",
                ranks.world->size(), " processes");
  fn(*ranks.world);
}

// What each rank reports of a timed row (all-gathered; trivially copyable).
struct RankReport {
  double compute_s, comm_wait_s, comm_total_s, wall_s, cpu_s;
  std::int64_t bytes_sent;
  std::uint64_t peak_bytes;
};

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

RowResult run_row(const Ranks& ranks, const BenchProblem& p, const RowConfig& c, int threads,
                  int warmup, int iters) {
  const int world = c.world();
  RowResult res;
  res.threads = threads;
  res.iters = iters;
  res.ranks.resize(static_cast<std::size_t>(world));
  std::vector<double> wall(static_cast<std::size_t>(world), 0.0);

  for_ranks(ranks, world, [&](Communicator& comm) {
    RankReport mine{};
    {
      Attention att(comm, attention_options(ranks.backend, p, c, threads));
      Allocator& alloc = att.allocator();
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
      att.core().reset_timings();
      // One rank per process reads the process's CPU time (every thread of it): thread ranks
      // share one process, so their sum over ranks is the whole run's CPU time either way.
      const bool counts_cpu = ranks.world != nullptr || comm.rank() == 0;
      comm.barrier();
      const double cpu0 = counts_cpu ? process_cpu_s() : 0.0;
      const auto t0 = Clock::now();
      for (int i = 0; i < iters; ++i) iteration();
      comm.barrier();
      const auto t1 = Clock::now();
      const double cpu = counts_cpu ? process_cpu_s() - cpu0 : 0.0;
      const UspTimings t = att.timings();
      mine = RankReport{t.compute_s,
                        t.comm_wait_s,
                        t.comm_total_s,
                        std::chrono::duration<double>(t1 - t0).count(),
                        cpu,
                        t.bytes_sent,
                        alloc.stats().peak};
    }
    const std::vector<RankReport> all = tools::allgather_value(comm, ranks.backend, mine);
    if (comm.rank() != 0 && ranks.world == nullptr) return;  // thread ranks: rank 0 records
    for (std::size_t r = 0; r < all.size(); ++r) {
      RankStats& st = res.ranks[r];
      st.compute_s = all[r].compute_s;
      st.comm_wait_s = all[r].comm_wait_s;
      st.comm_total_s = all[r].comm_total_s;
      st.bytes_sent = all[r].bytes_sent;
      st.peak_bytes = all[r].peak_bytes;
      wall[r] = all[r].wall_s;
      res.cpu_s += all[r].cpu_s;
    }
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

double median(std::vector<double> v) {
  if (v.empty()) return 0.0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

RowConfig single_rank_row(const RowConfig& c) {
  RowConfig single = c;
  single.ulysses = 1;
  single.ring = 1;
  single.double_ring = 0;
  return single;
}

double check_tolerance(DType t, bool gradient) {
  if (t == DType::f32) return gradient ? 1e-4 : 1e-5;
  return 2e-2;
}

CheckResult check_row(const Ranks& ranks, const BenchProblem& p, const RowConfig& c, int threads,
                      int reference_threads) {
  // The single-rank run, where rank 0 lives (this process), before the distributed one.
  Reference ref;
  const RowConfig single = single_rank_row(c);
  if (ranks.root()) {
    run_ranks(tools::thread_backend(ranks.backend), 1, [&](Communicator& comm) {
      Attention att(comm, attention_options(ranks.backend, p, single, reference_threads));
      Allocator& alloc = att.allocator();
      const Shards in = make_shards(p, single, att.layout(c.seq_len), 0, 0, alloc);
      UspAttention::Output o = att.forward(in.q, in.k, in.v);
      ref.out = to_doubles(copy_to(o.out, default_host_allocator()));
      ref.lse = to_doubles(copy_to(o.lse, default_host_allocator()));
      if (!c.fwd_only) {
        UspAttention::Grads g = att.backward(in.q, in.k, in.v, o.out, o.lse, in.dout);
        ref.dq = to_doubles(copy_to(g.dq, default_host_allocator()));
        ref.dk = to_doubles(copy_to(g.dk, default_host_allocator()));
        ref.dv = to_doubles(copy_to(g.dv, default_host_allocator()));
      }
    });
  }

  constexpr int kTensors = 5;  // out, lse, dq, dk, dv
  static const char* const kNames[kTensors] = {"out", "lse", "dq", "dk", "dv"};
  struct Coord {
    int ring, ulysses;
  };
  struct Verdict {
    double max_rel_err;
    int worst, pass;
  };
  Verdict verdict{0, 0, 1};
  if (ranks.world) {
    // The other processes wait here for rank 0's single-rank run, however long it takes.
    const auto saved = ranks.world->timeout();
    ranks.world->set_timeout(std::max<std::chrono::milliseconds>(saved, std::chrono::hours(2)));
    try {
      ranks.world->barrier();
    } catch (...) {
      ranks.world->set_timeout(saved);
      throw;
    }
    ranks.world->set_timeout(saved);
  }
  for_ranks(ranks, c.world(), [&](Communicator& comm) {
    Attention att(comm, attention_options(ranks.backend, p, c, threads));
    Allocator& alloc = att.allocator();
    const Layout layout = att.layout(c.seq_len);
    const Coord me{att.mesh().coord.ring, att.mesh().coord.ulysses};
    const Shards in = make_shards(p, c, layout, me.ring, me.ulysses, alloc);
    Tensor results[kTensors];
    UspAttention::Output o = att.forward(in.q, in.k, in.v);
    if (!c.fwd_only) {
      UspAttention::Grads g = att.backward(in.q, in.k, in.v, o.out, o.lse, in.dout);
      results[2] = std::move(g.dq);
      results[3] = std::move(g.dk);
      results[4] = std::move(g.dv);
    }
    results[0] = std::move(o.out);
    results[1] = std::move(o.lse);
    const std::vector<Coord> coords = tools::allgather_value(comm, ranks.backend, me);

    // Rank 0 compares every rank's shards, one tensor at a time.
    const int n = c.fwd_only ? 2 : kTensors;
    const std::vector<double>* refs[kTensors] = {&ref.out, &ref.lse, &ref.dq, &ref.dk, &ref.dv};
    Verdict v{0, 0, 1};
    for (int i = 0; i < n; ++i) {
      const std::vector<Tensor> shards = tools::gather_to_root(comm, results[i], alloc, 7000 + i);
      results[i] = Tensor();
      if (comm.rank() != 0) continue;
      ErrSum sum;
      for (std::size_t j = 0; j < shards.size(); ++j)
        sum.add(i == 1
                    ? compare_lse(shards[j], *refs[i], layout, coords[j].ring, coords[j].ulysses)
                    : compare_rows(shards[j], *refs[i], layout, coords[j].ring, coords[j].ulysses));
      const double e = sum.rel();
      if (!(e <= check_tolerance(p.dtype, i >= 2))) v.pass = 0;
      if (i == 0 || e > v.max_rel_err || std::isnan(e)) {
        v.max_rel_err = e;
        v.worst = i;
      }
    }
    const Verdict root = tools::allgather_value(comm, ranks.backend, v).front();
    if (comm.rank() == 0 || ranks.world != nullptr) verdict = root;
  });

  CheckResult r;
  r.max_rel_err = verdict.max_rel_err;
  r.worst = kNames[verdict.worst];
  r.pass = verdict.pass != 0;
  return r;
}

}  // namespace usp::bench
