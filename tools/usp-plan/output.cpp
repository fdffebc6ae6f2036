#include "output.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>

namespace usp::plan {

std::string fmt(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

namespace {

std::string mb(std::uint64_t bytes) {
  return fmt(static_cast<double>(bytes) / (1 << 20), 1);
}

const char* true_false(bool v) {
  return v ? "True" : "False";
}

std::string double_ring_label(int inner) {
  return inner > 0 ? std::to_string(inner) : "-";
}

std::string problem_line(const BenchProblem& p, int world) {
  return "world " + std::to_string(world) + ", b " + std::to_string(p.batch) + ", h " +
         std::to_string(p.nheads) + ", kv heads " + std::to_string(p.kv_heads) + ", d " +
         std::to_string(p.head_size) + ", " + dtype_name(p.dtype) + ", " +
         (p.causal ? "causal" : "not causal");
}

}  // namespace

BenchProblem seed_problem() {
  return BenchProblem{};
}

std::vector<Candidate> seed_candidates(const MachineModel& m,
                                       std::vector<const bench::SeedRow*>& seed) {
  std::vector<Candidate> out;
  const BenchProblem p = seed_problem();
  for (const bench::SeedRow& s : bench::seed_rows()) {
    Candidate c;
    c.config = plan_config(s.config);
    c.refused = refusal(m, p, 8, c.config);
    if (c.refused.empty()) c.prediction = predict(m, p, c.config);
    out.push_back(c);
    seed.push_back(&s);
  }
  return out;
}

void write_csv(std::ostream& os, const std::vector<Candidate>& rows,
               const std::vector<const bench::SeedRow*>& seed) {
  os << "ring type,seq_len,ulysses_degree,ring_degree,fwd_only,latency(ms/iter),placement,"
        "double_ring,compute(ms),all-to-all(ms),exposed comm(ms),peak memory(MB/rank),refused";
  if (!seed.empty()) os << ",seed latency(ms/iter),predicted/seed";
  os << "\n";
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Candidate& c = rows[i];
    const PlanConfig& k = c.config;
    const bool ok = c.refused.empty();
    os << strategy_name(k.type) << ',' << k.seq_len << ',' << k.ulysses << ',' << k.ring << ','
       << true_false(k.fwd_only) << ',' << (ok ? fmt(c.prediction.latency_ms, 3) : "") << ','
       << placement_name(k.placement) << ',' << k.double_ring << ','
       << (ok ? fmt(c.prediction.compute_ms, 3) : "") << ','
       << (ok ? fmt(c.prediction.a2a_ms, 3) : "") << ','
       << (ok ? fmt(c.prediction.exposed_ms, 3) : "") << ','
       << (ok ? mb(c.prediction.memory_bytes) : "") << ",\"" << c.refused << '"';
    if (!seed.empty())
      os << ',' << fmt(seed[i]->latency_ms, 3) << ','
         << (ok ? fmt(c.prediction.latency_ms / seed[i]->latency_ms, 3) : "");
    os << "\n";
  }
}

void write_ranking(std::ostream& os, const MachineModel& m, const BenchProblem& p, int world,
                   const std::vector<Candidate>& ranked, int top) {
  os << "# usp-plan: " << problem_line(p, world) << "\n\nmachine: " << m.name;
  if (!m.description.empty()) os << " (" << m.description << ")";
  os << "\n";
  std::size_t i = 0;
  while (i < ranked.size()) {
    const std::int64_t len = ranked[i].config.seq_len;
    const bool fwd = ranked[i].config.fwd_only;
    std::size_t end = i;
    while (end < ranked.size() && ranked[end].config.seq_len == len &&
           ranked[end].config.fwd_only == fwd)
      ++end;
    os << "\n## seq_len " << len << ", " << (fwd ? "forward" : "forward + backward") << "\n\n";
    os << "| # | ring type | ulysses_degree | ring_degree | placement | double ring | "
          "latency(ms/iter) | compute(ms) | all-to-all(ms) | exposed comm(ms) | peak "
          "memory(MB/rank) |\n";
    os << "| ---: | :---- | :----: | :----: | :---- | :----: | ---: | ---: | ---: | ---: | ---: "
          "|\n";
    int shown = 0, refused = 0;
    std::string first_refusal;
    for (std::size_t j = i; j < end; ++j) {
      const Candidate& c = ranked[j];
      if (!c.refused.empty()) {
        if (refused++ == 0) first_refusal = c.config.describe() + ": " + c.refused;
        continue;
      }
      if (shown >= top) continue;
      ++shown;
      const PlanConfig& k = c.config;
      os << "| " << shown << " | " << strategy_name(k.type) << " | " << k.ulysses << " | " << k.ring
         << " | " << placement_name(k.placement) << " | " << double_ring_label(k.double_ring)
         << " | " << fmt(c.prediction.latency_ms, 3) << " | " << fmt(c.prediction.compute_ms, 3)
         << " | " << fmt(c.prediction.a2a_ms, 3) << " | " << fmt(c.prediction.exposed_ms, 3)
         << " | " << mb(c.prediction.memory_bytes) << " |\n";
    }
    const std::size_t feasible = end - i - static_cast<std::size_t>(refused);
    os << "\n" << feasible << " feasible configuration" << (feasible == 1 ? "" : "s");
    if (refused > 0) os << ", " << refused << " refused (first: " << first_refusal << ")";
    os << "\n";
    i = end;
  }
}

void write_seed_comparison(std::ostream& os, const MachineModel& m,
                           const std::vector<Candidate>& rows,
                           const std::vector<const bench::SeedRow*>& seed) {
  os << "# usp-plan: the seed's rows on machine " << m.name << "\n\n"
     << problem_line(seed_problem(), 8) << "\n\n";
  os << "| ring type | seq_len | ulysses_degree | ring_degree | fwd_only | predicted(ms/iter) | "
        "seed(ms/iter) | predicted/seed |\n";
  os << "| :----: | :----: | :----: | :----: | :----: | ---: | ---: | ---: |\n";
  std::vector<double> errs;
  double worst_long = 0;
  for (std::size_t i = 0; i < rows.size(); ++i) {
    const Candidate& c = rows[i];
    const double ratio = c.prediction.latency_ms / seed[i]->latency_ms;
    errs.push_back(std::abs(ratio - 1));
    if (c.config.seq_len >= 32768) worst_long = std::max(worst_long, std::abs(ratio - 1));
    os << "| " << strategy_name(c.config.type) << " | " << c.config.seq_len << " | "
       << c.config.ulysses << " | " << c.config.ring << " | " << true_false(c.config.fwd_only)
       << " | " << (c.refused.empty() ? fmt(c.prediction.latency_ms, 3) : c.refused) << " | "
       << fmt(seed[i]->latency_ms, 3) << " | " << fmt(ratio, 3) << " |\n";
  }
  std::sort(errs.begin(), errs.end());
  const std::size_t n = errs.size();
  const double median = n == 0 ? 0 : n % 2 ? errs[n / 2] : 0.5 * (errs[n / 2 - 1] + errs[n / 2]);
  os << "\nmedian |predicted/seed − 1| " << fmt(100 * median, 1)
     << " %; worst on rows of ≥ 32768 tokens " << fmt(100 * worst_long, 1) << " %\n";
}

}  // namespace usp::plan
