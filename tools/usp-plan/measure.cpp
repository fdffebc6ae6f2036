#include "measure.hpp"

#include <algorithm>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstring>
#include <ctime>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#include "data.hpp"
#include "machine.hpp"
#include "memory_estimate.hpp"
#include "usp/comm.hpp"
#include "usp/kernel.hpp"
#include "usp/memory.hpp"

namespace usp::plan {
namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// CPU time of the calling thread: a kernel of one thread runs inline on its caller, so its calls'
// CPU time is the kernel's, whatever else the machine is running meanwhile.
double thread_cpu_s() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

// CPU and wall seconds of every timed loop, all threads: how much of the cores this process got.
struct Share {
  std::mutex mutex;
  double cpu_s = 0, wall_s = 0;
};
Share g_share;

double median_of(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n == 0 ? 0 : n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// `threads` threads at once, as ranks sharing the cores do: each prepares (untimed), then times
// `call` until `budget_s` has passed (at least 2 calls, at most 8). The median over threads of
// each thread's median call, in CPU seconds of the thread.
double concurrent_median(int threads, double budget_s,
                         const std::function<std::function<void()>(HostAllocator&)>& prepare) {
  std::vector<double> medians(static_cast<std::size_t>(threads));
  std::barrier sync(threads);
  std::exception_ptr failed;
  std::mutex failed_mutex;
  auto work = [&](std::size_t t) {
    try {
      HostAllocator mine;
      const std::function<void()> call = prepare(mine);
      call();  // untimed: first touch of the scratch
      sync.arrive_and_wait();
      std::vector<double> times;
      const auto t0 = Clock::now();
      const double cpu0 = thread_cpu_s();
      while (times.size() < 8 && (times.size() < 2 || seconds_since(t0) < budget_s)) {
        const double c0 = thread_cpu_s();
        call();
        times.push_back(thread_cpu_s() - c0);
      }
      medians[t] = median_of(times);
      const std::lock_guard<std::mutex> lock(g_share.mutex);
      g_share.cpu_s += thread_cpu_s() - cpu0;
      g_share.wall_s += seconds_since(t0);
    } catch (...) {
      const std::lock_guard<std::mutex> lock(failed_mutex);
      if (!failed) failed = std::current_exception();
      sync.arrive_and_drop();
    }
  };
  std::vector<std::thread> pool;
  for (std::size_t t = 1; t < medians.size(); ++t) pool.emplace_back(work, t);
  work(0);
  for (std::thread& t : pool) t.join();
  if (failed) std::rethrow_exception(failed);
  return median_of(medians);
}

// Seconds of one single-threaded kernel call on an m × m block (heads chosen so that a call is
// about 1 GFLOP, unless given), `threads` of them at once; the call's flops by the seed's formula
// (causal halved, backward ×2.5).
struct Timed {
  double seconds = 0, flops = 0;
};
Timed time_block(const BenchProblem& p, int threads, std::int64_t m, bool causal, bool backward,
                 std::int64_t heads = 0) {
  const double per_head = 4.0 * p.head_size * static_cast<double>(m) * static_cast<double>(m);
  if (heads == 0) heads = std::max<std::int64_t>(1, std::llround(1e9 / per_head));
  Timed t;
  t.flops = per_head * static_cast<double>(heads) * (causal ? 0.5 : 1.0) * (backward ? 2.5 : 1.0);
  const MaskMode mask = causal ? MaskMode::causal : MaskMode::none;
  const float scale = 1.0f / std::sqrt(static_cast<float>(p.head_size));
  t.seconds = concurrent_median(threads, 0.12, [&](HostAllocator& alloc) -> std::function<void()> {
    const Layout layout{.seq_len = m};
    auto input = [&](bench::TensorId id) {
      return bench::make_shard(layout, 0, 0, id, p.seed, 1, heads, p.head_size, p.dtype, alloc);
    };
    auto kernel = std::shared_ptr<AttentionKernel>(make_cpu_kernel(1, &alloc));
    auto q = std::make_shared<Tensor>(input(bench::TensorId::q));
    auto k = std::make_shared<Tensor>(input(bench::TensorId::k));
    auto v = std::make_shared<Tensor>(input(bench::TensorId::v));
    auto dout = std::make_shared<Tensor>(input(bench::TensorId::dout));
    auto f32 = [&](std::int64_t h) {
      return std::make_shared<Tensor>(Tensor::empty({1, m, h, p.head_size}, DType::f32, alloc));
    };
    auto out = f32(heads), dq = f32(heads), dk = f32(heads), dv = f32(heads);
    auto lse = std::make_shared<Tensor>(Tensor::empty({1, heads, m}, DType::f32, alloc));
    kernel->forward(*q, *k, *v, mask, scale, *out, *lse);
    if (!backward) return [=] { kernel->forward(*q, *k, *v, mask, scale, *out, *lse); };
    return
        [=] { kernel->backward(*q, *k, *v, *out, *lse, *dout, mask, scale, *dq, *dk, *dv, false); };
  });
  return t;
}

// One thread's copy rate (GB/s) with `threads` copying at once, 32 MiB buffers.
double copy_gbs(int threads) {
  static constexpr std::size_t bytes = std::size_t{32} << 20;
  const double s = concurrent_median(threads, 0.1, [](HostAllocator&) -> std::function<void()> {
    auto src = std::make_shared<std::vector<char>>(bytes, 1);
    auto dst = std::make_shared<std::vector<char>>(bytes, 0);
    return [=] { std::memcpy(dst->data(), src->data(), bytes); };
  });
  return s > 0 ? static_cast<double>(bytes) / s / 1e9 : 1.0;
}

// Half the round trip of an 8-byte message between two local ranks (μs), median of 200.
double local_latency_us() {
  std::vector<double> rtt;
  run_local(2, [&](Communicator& comm) {
    char buf[8] = {};
    for (int i = 0; i < 220; ++i) {
      const auto t0 = Clock::now();
      if (comm.rank() == 0) {
        comm.isend(buf, sizeof buf, 1, 7).wait();
        comm.irecv(buf, sizeof buf, 1, 8).wait();
        if (i >= 20) rtt.push_back(seconds_since(t0));
      } else {
        comm.irecv(buf, sizeof buf, 0, 7).wait();
        comm.isend(buf, sizeof buf, 0, 8).wait();
      }
    }
  });
  return 0.5 * median_of(rtt) * 1e6;
}

}  // namespace

CurveFit fit_rate_curve(const std::vector<std::pair<double, double>>& points) {
  // y = 1/rate = a + b·x with x = 1/m: peak = 1/a, half_tokens = b/a.
  double sx = 0, sy = 0, sxx = 0, sxy = 0, best = 0;
  const double n = static_cast<double>(points.size());
  for (const auto& [m, rate] : points) {
    const double x = 1 / m, y = 1 / rate;
    sx += x, sy += y, sxx += x * x, sxy += x * y;
    best = std::max(best, rate);
  }
  CurveFit f;
  const double den = n * sxx - sx * sx;
  const double b = den != 0 ? (n * sxy - sx * sy) / den : 0, a = (sy - b * sx) / n;
  if (a > 0 && b >= 0) {
    f.peak = 1 / a;
    f.half_tokens = b / a;
  } else {
    f.peak = best;
  }
  return f;
}

MachineModel calibrate_this_machine(const BenchProblem& p, std::ostream* log) {
  const auto start = Clock::now();
  const bench::Machine host = bench::detect_machine();
  MachineModel m;
  m.name = "this machine (calibrated)";
  m.description = host.cpu_model + ", " + std::to_string(host.cores) + " cores, local ranks";
  m.cores = host.cores;
  m.memory_bytes = bench::mem_available_bytes();
  m.overlap = 0;
  const int threads = host.cores;
  auto rate = [&](std::int64_t tokens, bool causal, bool backward) {
    const Timed t = time_block(p, threads, tokens, causal, backward);
    const double r = t.flops / t.seconds;
    if (log)
      *log << "calibrate: " << (backward ? "backward" : "forward") << ' '
           << (causal ? "causal" : "full") << ' ' << tokens << 'x' << tokens << ": " << r / 1e9
           << " GFLOPS per thread (" << threads << " at once)\n";
    return r;
  };
  std::vector<std::pair<double, double>> full, causal;
  for (std::int64_t tok : {128, 256, 512, 1024}) full.emplace_back(tok, rate(tok, false, false));
  for (std::int64_t tok : {256, 512, 1024, 2048}) causal.emplace_back(tok, rate(tok, true, false));
  const CurveFit fit = fit_rate_curve(full), cfit = fit_rate_curve(causal);
  KernelRate k;
  k.head_size = p.head_size;
  k.peak_gflops = fit.peak / 1e9;
  k.half_tokens = fit.half_tokens;
  k.causal_eff = cfit.peak / fit.peak;
  k.causal_half = cfit.half_tokens;
  std::vector<std::pair<double, double>> backward;
  for (std::int64_t tok : {512, 2048}) backward.emplace_back(tok, rate(tok, true, true));
  const CurveFit bfit = fit_rate_curve(backward);
  k.bwd_eff = bfit.peak / cfit.peak;
  k.bwd_half = bfit.half_tokens;
  k.call_us = 1e6 * time_block(p, threads, 32, false, false, 1).seconds;
  if (log) *log << "calibrate: a call of 32 tokens, one head: " << k.call_us << " us\n";
  m.kernels = {k};
  m.p2p = {copy_gbs(threads), local_latency_us()};
  m.core_share = g_share.wall_s > 0 ? std::min(1.0, g_share.cpu_s / g_share.wall_s) : 1.0;
  m.a2a = m.p2p;
  m.p2p_inter = m.p2p;
  m.a2a_inter = m.a2a;
  if (log)
    *log << "calibrate: copies " << m.p2p.gbs << " GB/s per thread, latency " << m.p2p.latency_us
         << " us; this process got " << m.core_share << " of the cores' time; "
         << seconds_since(start) << " s in all\n";
  return m;
}

}  // namespace usp::plan
