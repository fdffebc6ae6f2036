#include "model.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <sstream>

#include "memory_estimate.hpp"
#include "usp/backend.hpp"

namespace usp::plan {
namespace {

struct Block {
  double sq = 0, sk = 0;
  bool causal = false;
};

// The blocks ring rank i computes against the K/V of ring rank src (step j of a ring brings
// src = i − j): the variant's causal rule at the ring level (s_r tokens per ring rank).
std::vector<Block> blocks(Strategy t, bool causal, double sr, int i, int src) {
  if (!causal) return {{sr, sr, false}};
  if (t == Strategy::stripe) return {{sr, sr, true}};  // every step a shifted diagonal
  if (src == i) return {{sr, sr, true}};
  if (t == Strategy::basic) {
    if (src < i) return {{sr, sr, false}};
    return {};  // a later block: fully masked
  }
  // zigzag, allgather: all queries × the first half of the keys, or the second half of the
  // queries × all keys
  return {src < i ? Block{sr, sr / 2, false} : Block{sr / 2, sr, false}};
}

// What the model needs of one configuration, computed once.
struct Geometry {
  const MachineModel& m;
  const BenchProblem& p;
  const PlanConfig& c;
  const KernelRate& k;
  int u, r, threads;
  double sr;         // ring-level tokens per ring rank
  double heads;      // query heads per rank after the Ulysses exchange
  double kv_bytes;   // one ring rank's K/V block (k and v), dtype
  double dkv_bytes;  // its dK/dV partial, fp32
  bool cpu;          // ranks are threads sharing m.cores

  Geometry(const MachineModel& mm, const BenchProblem& pp, const PlanConfig& cc)
      : m(mm),
        p(pp),
        c(cc),
        k(mm.kernel(pp.head_size)),
        u(cc.ulysses),
        r(cc.ring),
        threads(rank_threads(mm, cc.world())),
        sr(static_cast<double>(cc.seq_len) / cc.ring),
        heads(static_cast<double>(pp.nheads) / cc.ulysses),
        cpu(mm.cores > 0) {
    const double hkv_r = std::max(pp.kv_heads / cc.ulysses, 1);
    kv_bytes = 2.0 * pp.batch * sr * hkv_r * pp.head_size * dtype_size(pp.dtype);
    dkv_bytes = kv_bytes / dtype_size(pp.dtype) * 4.0;
  }

  int rank_of(int ring_rank, int ulysses_rank) const {
    return c.placement == Placement::ulysses_inner ? ring_rank * u + ulysses_rank
                                                   : ulysses_rank * r + ring_rank;
  }
  int node(int rank) const { return m.ranks_per_node > 0 ? rank / m.ranks_per_node : 0; }
  // Whether some ring hop from ring rank i to ring rank (i + step) within its group crosses nodes.
  bool hop_crosses(int group, int step) const {
    for (int i = 0; i < r; ++i) {
      const int base = i / group * group, to = base + (i - base + step) % group;
      for (int v = 0; v < u; ++v)
        if (node(rank_of(i, v)) != node(rank_of(to, v))) return true;
    }
    return false;
  }
  const Link& ring_link(bool crosses) const { return crosses ? m.p2p_inter : m.p2p; }

  // One block's seconds on one thread (CPU ranks) or on the rank's device.
  double block_s(const Block& b, bool bwd) const {
    const double mtok = std::min(b.sq, b.sk);
    double flops = 4.0 * p.batch * heads * p.head_size * b.sq * b.sk * (b.causal ? 0.5 : 1.0);
    const double half = bwd ? k.bwd_half : b.causal ? k.causal_half : k.half_tokens;
    double rate = k.peak_gflops * 1e9 * mtok / (mtok + half) * (b.causal ? k.causal_eff : 1);
    if (bwd) {
      flops *= 2.5;
      rate *= k.bwd_eff;
    }
    return k.call_us * 1e-6 + flops / rate;
  }
  double work(int i, int src, bool bwd) const {
    double s = 0;
    for (const Block& b : blocks(c.type, p.causal, sr, i, src)) s += block_s(b, bwd);
    return s;
  }
  // A step's time from each ring rank's work on one thread: the slowest rank on its threads, or,
  // when the ranks share fewer cores, every rank's work spread over the cores.
  double combine(const std::vector<double>& w) const {
    const double slowest = *std::max_element(w.begin(), w.end());
    if (!cpu) return slowest;
    double sum = 0;
    for (double x : w) sum += x;
    return std::max(slowest / threads, u * sum / (m.cores * m.core_share));
  }
  // A device step: compute and a concurrent transfer, `overlap` of the shorter one hidden.
  double overlapped(double compute, double transfer) const {
    return std::max(compute, transfer) + (1 - m.overlap) * std::min(compute, transfer);
  }
};

struct Phase {
  double total = 0, compute = 0;
};

// A (single or double) ring pass: r steps; at step j ring rank i holds the K/V of i − j. Forward:
// the next K/V block travels during each step but the last; backward: the dK/dV partial of the
// previous step travels with it and the last partial's hop follows the last step.
Phase ring_pass(const Geometry& g, bool bwd) {
  const int r = g.r;
  const int inner = g.c.double_ring > 0 ? g.c.double_ring : r;
  const Link& in_link = g.ring_link(g.hop_crosses(inner, 1));
  const Link& out_link = g.ring_link(inner < r && g.hop_crosses(r, inner));
  Phase out;
  double phase_time = 0, outer_s = 0;
  for (int j = 0; j < r; ++j) {
    const int k = j % inner;  // step within the phase
    const bool last = j == r - 1;
    double bytes = 0;
    if (!last && k < inner - 1) bytes += g.kv_bytes;  // the next inner step's block
    if (bwd && j > 0) bytes += g.dkv_bytes;
    if (k == 0) {  // the phase's outer hop, posted at its start
      outer_s = 0;
      if (inner < r && j + inner < r)
        outer_s = out_link.seconds(g.kv_bytes + (bwd ? g.dkv_bytes : 0));
    }
    std::vector<double> w(static_cast<std::size_t>(r));
    for (int i = 0; i < r; ++i)
      w[static_cast<std::size_t>(i)] = g.work(i, ((i - j) % r + r) % r, bwd);
    const double compute = g.combine(w);
    out.compute += g.cpu ? compute : *std::max_element(w.begin(), w.end());
    const double x = bytes > 0 ? in_link.seconds(bytes) : 0;
    if (g.cpu) {
      // The ranks' threads copy the payloads: more work, shared like the kernels'.
      std::vector<double> wx = w;
      for (double& v : wx) v += x + (k == 0 ? outer_s : 0);
      phase_time += g.combine(wx);
    } else {
      phase_time += g.overlapped(compute, x);
    }
    if (k == inner - 1 || last) {
      out.total += g.cpu ? phase_time : g.overlapped(phase_time, outer_s);
      phase_time = 0;
    }
  }
  if (bwd && r > 1) out.total += in_link.seconds(g.dkv_bytes);  // the last partial's hop home
  return out;
}

// allgather: the r − 1 other K/V blocks posted at once, arriving one after another on the
// rank's link; each block is computed as it arrives (the own block first). Backward: each
// block's dK/dV partial is sent to its owner as soon as it is computed, on the same link.
Phase allgather_pass(const Geometry& g, bool bwd) {
  const int r = g.r;
  const Link& link = g.ring_link(r > 1 && g.hop_crosses(r, 1));
  Phase out;
  if (g.cpu) {
    std::vector<double> w(static_cast<std::size_t>(r)), c(static_cast<std::size_t>(r));
    for (int i = 0; i < r; ++i) {
      for (int j = 0; j < r; ++j)
        c[static_cast<std::size_t>(i)] += g.work(i, ((i - j) % r + r) % r, bwd);
      w[static_cast<std::size_t>(i)] =
          c[static_cast<std::size_t>(i)] +
          (r - 1) * (link.seconds(g.kv_bytes) + (bwd ? link.seconds(g.dkv_bytes) : 0));
    }
    out.compute = g.combine(c);
    out.total = g.combine(w);
    return out;
  }
  for (int i = 0; i < r; ++i) {
    double done = 0, compute = 0, link_free = 0;
    for (int j = 0; j < r; ++j) {
      const double arrives =
          j == 0 ? 0 : link.latency_us * 1e-6 + j * g.kv_bytes / (link.gbs * 1e9);
      const double w = g.work(i, ((i - j) % r + r) % r, bwd);
      compute += w;
      done = std::max(done, arrives) + w;
      if (bwd && j > 0) link_free = std::max(link_free, done) + link.seconds(g.dkv_bytes);
    }
    out.total = std::max(out.total, std::max(done, link_free));
    out.compute = std::max(out.compute, compute);
  }
  return out;
}

// The Ulysses all-to-alls of one pass (to the ring side and back): bytes one rank sends.
double a2a_seconds(const Geometry& g, bool bwd) {
  if (g.u == 1) return 0;
  const BenchProblem& p = g.p;
  const double n = static_cast<double>(g.c.seq_len) / g.c.world(), es = dtype_size(p.dtype);
  const double f = (g.u - 1.0) / g.u;
  const double q = p.batch * n * p.nheads * p.head_size * es * f;
  const double kv = p.batch * n * std::max(p.kv_heads / g.u, 1) * p.head_size * es * (g.u - 1.0);
  const double lse = p.batch * n * p.nheads * 4.0 * f;
  bool crosses = false;
  for (int i = 0; i < g.r && !crosses; ++i)
    for (int v = 1; v < g.u; ++v)
      crosses = crosses || g.node(g.rank_of(i, v)) != g.node(g.rank_of(i, 0));
  const Link& link = crosses ? g.m.a2a_inter : g.m.a2a;
  // forward: q, k, v there, out and lse back; backward: q, k, v, out, dout and lse there, dq, dk,
  // dv back
  const double there = bwd ? 3 * q + 2 * kv + lse : q + 2 * kv, back = bwd ? q + 2 * kv : q + lse;
  const double s = link.seconds(there) + link.seconds(back);
  if (!g.cpu) return s;
  return g.combine(std::vector<double>(static_cast<std::size_t>(g.r), s));
}

}  // namespace

const char* strategy_name(Strategy s) {
  switch (s) {
    case Strategy::basic:
      return "basic";
    case Strategy::stripe:
      return "stripe";
    case Strategy::zigzag:
      return "zigzag";
    case Strategy::allgather:
      return "allgather";
  }
  return "?";
}

std::optional<Strategy> parse_strategy(std::string_view s) {
  for (Strategy t : {Strategy::basic, Strategy::stripe, Strategy::zigzag, Strategy::allgather})
    if (s == strategy_name(t)) return t;
  return std::nullopt;
}

const char* placement_name(Placement p) {
  return p == Placement::ulysses_inner ? "ulysses_inner" : "ring_inner";
}

std::string PlanConfig::describe() const {
  std::ostringstream os;
  os << strategy_name(type) << " s=" << seq_len << ' ' << ulysses << 'x' << ring << ' '
     << (fwd_only ? "fwd" : "fwd+bwd");
  if (placement == Placement::ring_inner) os << " ring_inner";
  if (double_ring > 0) os << " double-ring " << double_ring;
  return os.str();
}

const KernelRate& MachineModel::kernel(int head_size) const {
  return *std::min_element(
      kernels.begin(), kernels.end(), [&](const KernelRate& a, const KernelRate& b) {
        return std::abs(a.head_size - head_size) < std::abs(b.head_size - head_size);
      });
}

bench::RowConfig row_shape(const PlanConfig& c) {
  bench::RowConfig row;
  row.ring_type = c.type == Strategy::basic       ? RingType::basic
                  : c.type == Strategy::stripe    ? RingType::stripe
                  : c.type == Strategy::allgather ? RingType::allgather
                                                  : RingType::zigzag;
  row.double_ring = c.double_ring;
  row.seq_len = c.seq_len;
  row.ulysses = c.ulysses;
  row.ring = c.ring;
  row.fwd_only = c.fwd_only;
  return row;
}

PlanConfig plan_config(const bench::RowConfig& row) {
  return {*parse_strategy(ring_type_name(row.ring_type)),
          row.seq_len,
          row.ulysses,
          row.ring,
          row.fwd_only,
          Placement::ulysses_inner,
          row.double_ring};
}

int rank_threads(const MachineModel& m, int world) {
  return m.cores > 0 ? default_threads(world, m.cores) : 1;
}

std::uint64_t rank_memory(const MachineModel& m, const BenchProblem& p, const PlanConfig& c) {
  const bench::RowConfig row = row_shape(c);
  auto bytes = static_cast<std::int64_t>(bench::memory_model(p, row).estimate);
  if (m.cores > 0)
    bytes +=
        static_cast<std::int64_t>(bench::kernel_scratch_bytes(p, row, rank_threads(m, c.world())));
  return static_cast<std::uint64_t>(std::max<std::int64_t>(bytes, 0));
}

Prediction predict(const MachineModel& m, const BenchProblem& p, const PlanConfig& c) {
  const Geometry g(m, p, c);
  Prediction out;
  double total = m.iteration_us * 1e-6, compute = 0, a2a = 0;
  for (bool bwd : {false, true}) {
    if (bwd && c.fwd_only) break;
    const Phase ph = c.type == Strategy::allgather ? allgather_pass(g, bwd) : ring_pass(g, bwd);
    const double x = a2a_seconds(g, bwd);
    total += ph.total + x;
    compute += ph.compute;
    a2a += x;
  }
  out.latency_ms = total * 1e3;
  out.compute_ms = compute * 1e3;
  out.a2a_ms = a2a * 1e3;
  out.exposed_ms = std::max(0.0, (total - compute - a2a - m.iteration_us * 1e-6) * 1e3);
  out.memory_bytes = rank_memory(m, p, c);
  return out;
}

}  // namespace usp::plan
