#include "calibrate.hpp"

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <thread>
#include <vector>

#include "data.hpp"
#include "memory_estimate.hpp"
#include "plan.hpp"
#include "usp/kernel.hpp"
#include "usp/memory.hpp"

namespace usp::bench {

Calibration calibrate_cpu(const BenchProblem& p, int threads) {
  using Clock = std::chrono::steady_clock;
  const auto start = Clock::now();
  Calibration cal;
  cal.threads = std::max(1, threads);
  BenchProblem shape = p;
  shape.batch = static_cast<int>(cal.batch);
  shape.nheads = shape.kv_heads = static_cast<int>(cal.heads);
  RowConfig one;
  one.seq_len = cal.seq_len;
  cal.flops = row_flops(shape, one);

  const Layout layout{.seq_len = cal.seq_len};
  auto& alloc = default_host_allocator();
  auto input = [&](TensorId id) {
    return make_shard(layout, 0, 0, id, p.seed, cal.batch, cal.heads, p.head_size, p.dtype, alloc);
  };
  const Tensor q = input(TensorId::q), k = input(TensorId::k), v = input(TensorId::v);
  const MaskMode mask = p.causal ? MaskMode::causal : MaskMode::none;
  const float scale = 1.0f / std::sqrt(static_cast<float>(p.head_size));

  // One single-threaded kernel per thread, all computing at once, as the ranks of a row do
  // (ranks ≥ cores: one kernel thread each, calls never waiting for a sibling thread).
  std::vector<std::vector<double>> times(static_cast<std::size_t>(cal.threads));
  std::barrier sync(cal.threads);
  std::exception_ptr failed;
  std::mutex failed_mutex;
  auto work = [&](std::size_t t) {
    try {
      // Its own caching allocator, as every rank has: the kernel's scratch comes back to it
      // without page faults on every call.
      HostAllocator mine;
      auto kernel = make_cpu_kernel(1, &mine);
      Tensor out =
          Tensor::empty({cal.batch, cal.seq_len, cal.heads, p.head_size}, DType::f32, mine);
      Tensor lse = Tensor::empty({cal.batch, cal.heads, cal.seq_len}, DType::f32, mine);
      kernel->forward(q, k, v, mask, scale, out, lse);  // untimed: first touch of the scratch
      sync.arrive_and_wait();
      const auto t0 = Clock::now();
      while (times[t].size() < 8 && Clock::now() - t0 < std::chrono::milliseconds(250)) {
        const auto c0 = Clock::now();
        kernel->forward(q, k, v, mask, scale, out, lse);
        times[t].push_back(std::chrono::duration<double>(Clock::now() - c0).count());
      }
    } catch (...) {
      const std::lock_guard<std::mutex> lock(failed_mutex);
      if (!failed) failed = std::current_exception();
      sync.arrive_and_drop();
    }
  };
  std::vector<std::thread> pool;
  for (std::size_t t = 1; t < times.size(); ++t) pool.emplace_back(work, t);
  work(0);
  for (std::thread& t : pool) t.join();
  if (failed) std::rethrow_exception(failed);

  // The machine's rate: the sum of every thread's, each from the median of its calls.
  for (std::vector<double>& v : times) {
    std::sort(v.begin(), v.end());
    const std::size_t n = v.size();
    const double median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    cal.calls += static_cast<int>(n);
    cal.call_s = std::max(cal.call_s, median);
    if (median > 0) cal.rate += cal.flops / median;
  }
  cal.total_s = std::chrono::duration<double>(Clock::now() - start).count();
  return cal;
}

namespace {

// The run's distinct rows, seq_len being which of L, 2L, 4L each runs at.
std::vector<RowConfig> ratio_rows(const Options& o) {
  std::vector<RowConfig> rows;
  for (Section s : o.sections) {
    s.seq_lens = {1, 2, 4};
    for (const RowConfig& c : s.rows())
      if (std::find(rows.begin(), rows.end(), c) == rows.end()) rows.push_back(c);
  }
  return rows;
}

}  // namespace

void set_shortest_lengths(Options& o, const LengthRule& rule) {
  const std::int64_t base = shortest_base(rule, length_granularity(ratio_rows(o)));
  for (Section& s : o.sections) s.seq_lens = {base, 2 * base, 4 * base};
}

void apply_length_choice(Options& o, const Machine& m, const Calibration& cal,
                         const LengthRule& rule) {
  const std::vector<RowConfig> rows = ratio_rows(o);
  // As run_plan() counts them for the progress line.
  auto flops = [&](const RowConfig& c) {
    const double f = row_flops(o.problem, c);
    const bool compared = o.vs_single_rank && c.world() > 1;
    return (o.check ? 2 * f : 0.0) + f * (o.warmup + o.iters) * o.repeats * (compared ? 2 : 1);
  };
  const std::uint64_t available = mem_available_bytes();
  auto fits = [&](const RowConfig& c) {
    return available == 0 || memory_need(o, m, c, threads_per_rank(o, c, m)).bytes <= available;
  };
  const LengthChoice choice = choose_lengths(cal.rate, rule, rows, flops, fits);
  for (Section& s : o.sections) s.seq_lens = choice.lengths;
  o.calibration = cal;
  o.length_choice = choice;
}

}  // namespace usp::bench
