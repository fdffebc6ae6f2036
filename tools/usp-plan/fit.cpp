#include "fit.hpp"

#include <algorithm>
#include <cmath>
#include <random>

#include "output.hpp"

namespace usp::plan {

double SeedScore::objective() const {
  return median + 0.5 * std::max(0.0, worst_long - 0.25) + (order_kept ? 0 : 1) + 0.3 * mean;
}

SeedScore score_seed(const MachineModel& m) {
  std::vector<const bench::SeedRow*> seed;
  const std::vector<Candidate> rows = seed_candidates(m, seed);
  std::vector<double> errs;
  SeedScore s;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const double e = std::abs(rows[i].prediction.latency_ms / seed[i]->latency_ms - 1);
    errs.push_back(e);
    s.mean += e / static_cast<double>(rows.size());
    if (rows[i].config.seq_len >= 32768) s.worst_long = std::max(s.worst_long, e);
  }
  std::sort(errs.begin(), errs.end());
  const std::size_t n = errs.size();
  s.median = n % 2 ? errs[n / 2] : 0.5 * (errs[n / 2 - 1] + errs[n / 2]);
  const BenchProblem p = seed_problem();
  auto at = [&](Strategy t, int u, int r) {
    return predict(m, p, {t, 128000, u, r, true, Placement::ulysses_inner, 0}).latency_ms;
  };
  const double basic = at(Strategy::basic, 2, 4);
  s.order_kept = basic > at(Strategy::stripe, 2, 4) && basic > at(Strategy::zigzag, 2, 4) &&
                 at(Strategy::zigzag, 4, 2) < at(Strategy::zigzag, 2, 4);
  return s;
}

MachineModel fit_seed(const MachineModel& start, int iterations) {
  struct Param {
    double MachineModel::*top = nullptr;
    double KernelRate::*kernel = nullptr;
    double Link::*link = nullptr;
    Link MachineModel::*which = nullptr;
    double lo, hi;
  };
  const std::vector<Param> params = {
      {nullptr, &KernelRate::peak_gflops, nullptr, nullptr, 30000, 147000},
      {nullptr, &KernelRate::half_tokens, nullptr, nullptr, 0, 20000},
      {nullptr, &KernelRate::causal_eff, nullptr, nullptr, 0.3, 1},
      {nullptr, &KernelRate::causal_half, nullptr, nullptr, 0, 20000},
      {nullptr, &KernelRate::bwd_eff, nullptr, nullptr, 0.2, 1},
      {nullptr, &KernelRate::bwd_half, nullptr, nullptr, 0, 20000},
      {nullptr, &KernelRate::call_us, nullptr, nullptr, 0, 2000},
      {nullptr, nullptr, &Link::gbs, &MachineModel::p2p, 0.5, 26},
      {nullptr, nullptr, &Link::latency_us, &MachineModel::p2p, 0, 6000},
      {nullptr, nullptr, &Link::gbs, &MachineModel::a2a, 0.5, 26},
      {nullptr, nullptr, &Link::latency_us, &MachineModel::a2a, 0, 6000},
      {&MachineModel::overlap, nullptr, nullptr, nullptr, 0, 1},
  };
  auto ref = [](MachineModel& m, const Param& p) -> double& {
    if (p.top) return m.*p.top;
    if (p.kernel) return m.kernels.front().*p.kernel;
    return (m.*p.which).*p.link;
  };
  std::mt19937_64 rng(20260101);
  std::uniform_real_distribution<double> unit(0, 1);
  MachineModel best = start;
  double best_score = score_seed(best).objective();
  for (int it = 0; it < iterations; ++it) {
    MachineModel m = best;
    const Param& p = params[static_cast<std::size_t>(unit(rng) * params.size()) % params.size()];
    double& v = ref(m, p);
    // Mostly a multiplicative step of about ±30 %, sometimes a jump anywhere in the bounds.
    v = unit(rng) < 0.8 ? v * std::exp(0.6 * (unit(rng) - 0.5)) : p.lo + unit(rng) * (p.hi - p.lo);
    v = std::clamp(v, p.lo, p.hi);
    const double s = score_seed(m).objective();
    if (s < best_score) best_score = s, best = m;
  }
  best.p2p_inter = best.p2p;
  best.a2a_inter = best.a2a;
  return best;
}

}  // namespace usp::plan
