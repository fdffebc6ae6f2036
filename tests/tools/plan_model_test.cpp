// The cost model's structure: what each term responds to (deterministic machines, no timing).
#include <gtest/gtest.h>

#include "machine_model.hpp"
#include "measure.hpp"
#include "model.hpp"
#include "options.hpp"

namespace usp::plan {
namespace {

// Two nodes of four devices: fast links inside a node, a slow one between them.
MachineModel two_nodes() {
  MachineModel m;
  m.name = "two nodes";
  m.ranks_per_node = 4;
  m.kernels = {KernelRate{128, 100000, 1000, 0.8, 1000, 0.8, 1000, 10}};
  m.p2p = m.a2a = {100, 5};
  m.p2p_inter = m.a2a_inter = {2, 20};
  m.overlap = 1;
  return m;
}

PlanConfig cfg(Strategy t, std::int64_t s, int u, int r, bool fwd = true,
               Placement pl = Placement::ulysses_inner, int dr = 0) {
  return {t, s, u, r, fwd, pl, dr};
}

BenchProblem seed_like() {
  return BenchProblem{};
}

TEST(PlanModel, PureUlyssesHasNoRingTraffic) {
  const Prediction p = predict(two_nodes(), seed_like(), cfg(Strategy::zigzag, 8192, 8, 1));
  EXPECT_NEAR(p.exposed_ms, 0.0, 1e-9);
  EXPECT_GT(p.a2a_ms, 0.0);
  EXPECT_NEAR(p.latency_ms, p.compute_ms + p.a2a_ms, 1e-9);
}

TEST(PlanModel, PureRingHasNoAllToAll) {
  const Prediction p = predict(two_nodes(), seed_like(), cfg(Strategy::zigzag, 8192, 1, 8));
  EXPECT_NEAR(p.a2a_ms, 0.0, 1e-12);
}

TEST(PlanModel, DoubleRingKeepsSlowHopsOffTheInnerSteps) {
  // A ring of 8 over two nodes: with ulysses_inner and u = 1 ring rank i is rank i, so the single
  // ring crosses nodes and every step pays the slow link; inner rings of 4 stay in a node and
  // the one outer hop per phase overlaps the phase's steps.
  const MachineModel m = two_nodes();
  const BenchProblem p = seed_like();
  const double single = predict(m, p, cfg(Strategy::zigzag, 16384, 1, 8)).latency_ms;
  const double dr4 =
      predict(m, p, cfg(Strategy::zigzag, 16384, 1, 8, true, Placement::ulysses_inner, 4))
          .latency_ms;
  EXPECT_LT(dr4, single);
  // On one node the double ring saves nothing.
  MachineModel one = m;
  one.ranks_per_node = 0;
  EXPECT_GE(predict(one, p, cfg(Strategy::zigzag, 16384, 1, 8, true, Placement::ulysses_inner, 4))
                .latency_ms,
            predict(one, p, cfg(Strategy::zigzag, 16384, 1, 8)).latency_ms - 1e-9);
}

TEST(PlanModel, PlacementDecidesWhichGroupCrossesNodes) {
  // 4×2 on two nodes of 4: ulysses_inner keeps each all-to-all in a node (the ring hop crosses),
  // ring_inner puts the ulysses groups across nodes.
  const MachineModel m = two_nodes();
  const BenchProblem p = seed_like();
  const Prediction ui = predict(m, p, cfg(Strategy::zigzag, 8192, 4, 2));
  const Prediction ri =
      predict(m, p, cfg(Strategy::zigzag, 8192, 4, 2, true, Placement::ring_inner));
  EXPECT_LT(ui.a2a_ms, ri.a2a_ms);
  EXPECT_LT(ui.latency_ms, ri.latency_ms);
}

TEST(PlanModel, BasicIsUnbalancedUnderTheCausalMask) {
  // The last ring rank computes every block in full; zigzag spreads the same work evenly.
  MachineModel m = two_nodes();
  m.ranks_per_node = 0;
  const BenchProblem p = seed_like();
  const Prediction basic = predict(m, p, cfg(Strategy::basic, 65536, 1, 8));
  const Prediction zigzag = predict(m, p, cfg(Strategy::zigzag, 65536, 1, 8));
  EXPECT_GT(basic.compute_ms, 1.5 * zigzag.compute_ms);
}

TEST(PlanModel, RanksSharingCoresShareTheCompute) {
  // CPU ranks: 8 single-threaded ranks on 2 cores take 4 times as long as on 8 cores for a
  // balanced ring (each step's work spread over the cores), before the copies.
  MachineModel m;
  m.kernels = {KernelRate{128, 50, 0, 1, 0, 1, 0, 0}};
  m.p2p = m.a2a = m.p2p_inter = m.a2a_inter = {1e9, 0};
  m.cores = 8;
  const BenchProblem p = seed_like();
  const double eight = predict(m, p, cfg(Strategy::zigzag, 2048, 2, 4)).compute_ms;
  m.cores = 2;
  const double two = predict(m, p, cfg(Strategy::zigzag, 2048, 2, 4)).compute_ms;
  EXPECT_NEAR(two / eight, 4.0, 1e-6);
  m.core_share = 0.5;  // another job takes half the cores' time
  EXPECT_NEAR(predict(m, p, cfg(Strategy::zigzag, 2048, 2, 4)).compute_ms / two, 2.0, 1e-6);
  EXPECT_EQ(rank_threads(m, 8), 1);
  m.cores = 16;
  EXPECT_EQ(rank_threads(m, 8), 2);
}

TEST(PlanModel, KernelTimeFollowsTheRateCurve) {
  // One causal block per rank (r = 1), no transfers: flops / (causal_eff · peak · m / (m +
  // causal_half)); half_tokens is for full blocks only.
  MachineModel m;
  m.kernels = {KernelRate{128, 1000, 2048, 0.5, 512, 0.4, 100, 0}};
  m.a2a = {1e12, 0};
  const BenchProblem p{.batch = 1, .nheads = 2, .kv_heads = 2};
  const double s = 1024;
  const double flops = 4.0 * 1 * 1 * 128 * s * s * 0.5;  // h/u = 1 head per rank
  const double rate = 1000e9 * s / (s + 512) * 0.5;
  EXPECT_NEAR(predict(m, p, cfg(Strategy::basic, 1024, 2, 1)).compute_ms, flops / rate * 1e3, 1e-9);
  // The backward: 2.5 × the flops at bwd_eff × causal_eff · peak · m / (m + bwd_half).
  const double bwd_rate = 1000e9 * s / (s + 100) * 0.5 * 0.4;
  EXPECT_NEAR(predict(m, p, cfg(Strategy::basic, 1024, 2, 1, false)).compute_ms,
              (flops / rate + 2.5 * flops / bwd_rate) * 1e3, 1e-9);
}

TEST(PlanModel, AllgatherAndDoubleRingMemory) {
  const MachineModel m = two_nodes();
  const BenchProblem p = seed_like();
  const std::uint64_t kv_chunk = 2ull * 2 * (65536 / 8) * 16 * 128 * 2;  // k and v, fp16, u = 1
  const std::uint64_t zig = rank_memory(m, p, cfg(Strategy::zigzag, 65536, 1, 8));
  EXPECT_EQ(rank_memory(m, p, cfg(Strategy::allgather, 65536, 1, 8)), zig + 5 * kv_chunk);
  EXPECT_EQ(
      rank_memory(m, p, cfg(Strategy::zigzag, 65536, 1, 8, true, Placement::ulysses_inner, 4)),
      zig + 2 * kv_chunk);
}

TEST(PlanModel, RateCurveFit) {
  std::vector<std::pair<double, double>> pts;
  for (double tok : {128.0, 256.0, 512.0, 1024.0}) pts.emplace_back(tok, 80e9 * tok / (tok + 300));
  const CurveFit f = fit_rate_curve(pts);
  EXPECT_NEAR(f.peak, 80e9, 1e3);
  EXPECT_NEAR(f.half_tokens, 300, 1e-6);
  // Rates falling with size give no positive half: the best rate, flat.
  const CurveFit flat = fit_rate_curve({{128, 50}, {1024, 40}});
  EXPECT_EQ(flat.peak, 50);
  EXPECT_EQ(flat.half_tokens, 0);
}

TEST(PlanModel, MachineFileErrorsNameTheLineAndTheRule) {
  auto message = [](const std::string& text) {
    try {
      parse_machine(text, "m.txt");
    } catch (const bench::UsageError& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  EXPECT_EQ(message("p2p 1 2\nfoo 3\n"),
            "--machine: m.txt:2: unknown key 'foo' (expected description, cores, core_share, "
            "ranks_per_node, memory_gib, overlap, iteration_us, p2p, a2a, p2p_inter, a2a_inter or "
            "kernel)");
  EXPECT_EQ(message("p2p 1\n"), "--machine: m.txt:1: p2p takes 2 values, got 1");
  EXPECT_EQ(message("p2p 1 x\n"),
            "--machine: m.txt:1: p2p value 'x' is not a number ≥ 0 (see docs/usp-plan.md)");
  EXPECT_EQ(message("p2p 1 2\n"),
            "--machine: m.txt: needs at least one 'kernel' line and a 'p2p' line (see "
            "docs/usp-plan.md)");
  EXPECT_EQ(message("p2p 1 2\nkernel 128 1 0 1 0 1 0 0\noverlap 2\n"),
            "--machine: m.txt:3: overlap must be between 0 and 1, got 2");
  const MachineModel ok = parse_machine(
      "# comment\ndescription two boxes\np2p 10 3 # GB/s us\nkernel 64 1 0 1 0 1 0 0\n"
      "kernel 128 2 0 1 0 1 0 0\ncores 4\n",
      "m.txt");
  EXPECT_EQ(ok.description, "two boxes");
  EXPECT_EQ(ok.cores, 4);
  EXPECT_EQ(ok.a2a.gbs, 10);  // a2a and the inter-node links default to p2p
  EXPECT_EQ(ok.p2p_inter.latency_us, 3);
  EXPECT_EQ(ok.kernel(100).head_size, 128);
  EXPECT_EQ(ok.kernel(80).head_size, 64);
  EXPECT_THROW(load_machine("/nonexistent/machine.txt"), bench::UsageError);
}

}  // namespace
}  // namespace usp::plan
