#include "check.hpp"

#include <string>

#include "machine.hpp"
#include "measure.hpp"
#include "model.hpp"
#include "output.hpp"
#include "row.hpp"
#include "usp/error.hpp"

namespace usp::plan {
namespace {

struct Entry {
  const Candidate* c = nullptr;
  int rank = 0;                      // within its group, 1 = predicted fastest
  std::vector<double> wall_ms;       // per repeat
  std::vector<double> cpu_ms;        // CPU time per iteration / cores, per repeat
  std::vector<double> predicted_ms;  // per repeat: from that round's calibration
  std::string failed;
};

}  // namespace

int run_check(const PlanOptions& o, const MachineModel& m, const std::vector<Candidate>& ranked,
              std::ostream& os) {
  const int cores = bench::detect_machine().cores;
  // The best o.top feasible configurations of each group, in rank order.
  std::vector<Entry> entries;
  for (std::size_t i = 0; i < ranked.size();) {
    std::size_t end = i;
    while (end < ranked.size() && ranked[end].config.seq_len == ranked[i].config.seq_len &&
           ranked[end].config.fwd_only == ranked[i].config.fwd_only)
      ++end;
    int rank = 0;
    for (std::size_t j = i; j < end && rank < o.top; ++j)
      if (ranked[j].refused.empty()) entries.push_back({&ranked[j], ++rank, {}, {}, {}, ""});
    i = end;
  }
  // Round robin over the configurations, o.repeats times, so that a change in the machine's load
  // falls on all of them alike; the median of each. A calibrated machine is calibrated again
  // before every round after the first, and each round's runs are predicted from its own
  // calibration: a shared machine's speed drifts by more than the model's error.
  bench::Ranks ranks;
  ranks.backend = "local";
  int rc = 0;
  const bool recalibrate = o.machine.empty();
  for (int rep = 0; rep < o.repeats; ++rep) {
    const MachineModel round =
        rep > 0 && recalibrate ? calibrate_this_machine(o.problem, nullptr) : m;
    for (Entry& e : entries) {
      e.predicted_ms.push_back(predict(round, o.problem, e.c->config).latency_ms);
      const auto row = bench_row(e.c->config);
      if (!row || !e.failed.empty()) continue;
      try {
        const bench::RowResult r = bench::run_row(ranks, o.problem, *row,
                                                  rank_threads(m, row->world()), o.warmup, o.iters);
        e.wall_ms.push_back(r.latency_ms);
        e.cpu_ms.push_back(1e3 * r.cpu_s / r.iters / cores);
      } catch (const Error& ex) {
        e.failed = ex.what();
        rc = 1;
      }
    }
  }

  os << "\n## --check: predicted against measured on this machine (local ranks, warm-up "
     << o.warmup << ", " << o.iters << " iteration" << (o.iters == 1 ? "" : "s") << ", median of "
     << o.repeats << " round-robin repeat" << (o.repeats == 1 ? "" : "s")
     << (recalibrate && o.repeats > 1 ? "; predicted: the median over the rounds' calibrations"
                                      : "")
     << ")\n\n";
  os << "| # | configuration | predicted(ms/iter) | measured(ms/iter) | measured/predicted | "
        "CPU time/cores(ms/iter) |\n";
  os << "| ---: | :---- | ---: | ---: | ---: | ---: |\n";
  for (std::size_t i = 0; i < entries.size(); ++i) {
    const Entry& e = entries[i];
    const double predicted =
        e.predicted_ms.empty() ? e.c->prediction.latency_ms : bench::median(e.predicted_ms);
    os << "| " << e.rank << " | " << e.c->config.describe() << " | " << fmt(predicted, 3) << " | ";
    const std::string gap = bench_gap(e.c->config);
    if (!gap.empty()) {
      os << "not run: " << gap << " | | |\n";
    } else if (!e.failed.empty()) {
      os << "failed: " << e.failed << " | | |\n";
    } else {
      const double wall = bench::median(e.wall_ms);
      os << fmt(wall, 3) << " | " << fmt(wall / predicted, 3) << " | "
         << fmt(bench::median(e.cpu_ms), 3) << " |\n";
    }
    // After a group's last row: which of its rows ran fastest.
    const bool last = i + 1 == entries.size() || entries[i + 1].rank == 1;
    if (!last) continue;
    const Entry* best = nullptr;
    for (std::size_t j = i + 1; j-- > 0;) {
      const Entry& x = entries[j];
      if (!x.wall_ms.empty() && (!best || bench::median(x.wall_ms) < bench::median(best->wall_ms)))
        best = &x;
      if (x.rank == 1) break;
    }
    if (best)
      os << "| | measured fastest: predicted #" << best->rank << ", " << best->c->config.describe()
         << " | | | | |\n";
  }
  double cpu = 0, wall = 0;
  for (const Entry& e : entries)
    for (std::size_t k = 0; k < e.wall_ms.size(); ++k) cpu += e.cpu_ms[k], wall += e.wall_ms[k];
  if (wall > 0)
    os << "\nDuring these runs the process got " << fmt(cpu / wall, 3) << " of the cores' time ("
       << fmt(m.core_share, 3) << " during the calibration).\n";
  return rc;
}

}  // namespace usp::plan
