// Runs a plan's rows and prints/writes the report.
#include "run_plan.hpp"

#include <unistd.h>

#include <algorithm>
#include <exception>
#include <fstream>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "plot.hpp"
#include "progress.hpp"
#include "report.hpp"
#include "usp/error.hpp"

namespace usp::bench {
namespace {

void write_file(const char* flag, const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) USP_FAIL(io, flag, ": cannot write '", path, "'");
}

bool compared(const Options& o, const RowConfig& c) {
  return o.vs_single_rank && c.world() > 1;
}

// The row's `repeats` timed runs (alternating with the single-rank run under --vs-single-rank);
// `result` is the run of median latency.
void timed_row(const Options& o, const Ranks& ranks, const RowConfig& c, int threads,
               RowResult& result, std::optional<SingleRankComparison>& single) {
  std::vector<RowResult> runs;
  if (compared(o, c)) {
    single.emplace();
    single->threads = threads * c.world();  // the same total kernel threads
  }
  for (int k = 0; k < o.repeats; ++k) {
    runs.push_back(run_row(ranks, o.problem, c, threads, o.warmup, o.iters));
    if (!single) continue;
    const RowResult one =
        run_row(ranks, o.problem, single_rank_row(c), single->threads, o.warmup, o.iters);
    single->row_ms.push_back(runs.back().latency_ms);
    single->single_ms.push_back(one.latency_ms);
    single->row_cpu_ms.push_back(1000.0 * runs.back().cpu_s / o.iters);
    single->single_cpu_ms.push_back(1000.0 * one.cpu_s / o.iters);
  }
  std::sort(runs.begin(), runs.end(),
            [](const RowResult& a, const RowResult& b) { return a.latency_ms < b.latency_ms; });
  result = std::move(runs[(runs.size() - 1) / 2]);
  if (!single) return;
  single->row_median_ms = median(single->row_ms);
  single->single_median_ms = median(single->single_ms);
  single->ratio =
      single->single_median_ms > 0 ? single->row_median_ms / single->single_median_ms : 0.0;
  const double cpu_single = median(single->single_cpu_ms);
  single->cpu_ratio = cpu_single > 0 ? median(single->row_cpu_ms) / cpu_single : 0.0;
}

}  // namespace

int run_plan(const Options& o, const Machine& m, const Plan& plan, const Ranks& ranks) {
  RunData d{o,
            m,
            plan,
            std::vector<RowResult>(plan.rows.size()),
            std::vector<std::optional<CheckResult>>(plan.rows.size()),
            std::vector<std::optional<SingleRankComparison>>(plan.rows.size())};
  const bool root = ranks.root();
  const std::string where = ranks.world ? "rank " + std::to_string(ranks.world->rank()) + ": " : "";

  // Steps: the checks (one distributed + one single-rank run each), then the timed rows.
  std::vector<double> costs;
  for (const RowConfig& c : plan.rows)
    if (o.check) costs.push_back(2 * row_flops(o.problem, c));
  for (const RowConfig& c : plan.rows)
    costs.push_back(row_flops(o.problem, c) * (o.warmup + o.iters) * o.repeats *
                    (compared(o, c) ? 2 : 1));
  const bool terminal = isatty(STDERR_FILENO) != 0;
  Progress progress(root && (terminal || o.progress), terminal, costs);

  std::size_t step = 0;
  const RowConfig* current = nullptr;
  try {
    if (o.check) {
      int failed = 0;
      for (std::size_t i = 0; i < plan.rows.size(); ++i) {
        current = &plan.rows[i];
        progress.start(step++, "check " + current->describe());
        d.checks[i] = check_row(ranks, o.problem, *current, plan.threads[i], m.cores);
        if (!d.checks[i]->pass) ++failed;
      }
      if (failed > 0) {
        progress.finish();
        if (!root) return 1;
        std::cout << check_report(d);
        std::cout.flush();
        std::cerr << "usp-bench: error: --check failed: " << failed << " of " << plan.rows.size()
                  << " rows differ from the single-rank run by more than the "
                  << usp::dtype_name(o.problem.dtype) << " tolerance ("
                  << check_tolerance(o.problem.dtype, false) << ")\n";
        return 1;
      }
    }
    for (std::size_t i = 0; i < plan.rows.size(); ++i) {
      current = &plan.rows[i];
      progress.start(step++, current->describe());
      timed_row(o, ranks, *current, plan.threads[i], d.results[i], d.singles[i]);
    }
    current = nullptr;
    progress.finish();

    if (!root) return 0;
    std::cout << markdown_report(d);
    std::cout.flush();
    if (!o.csv_path.empty()) write_file("--csv", o.csv_path, csv_report(d));
    if (!o.json_path.empty()) write_file("--json", o.json_path, json_report(d));
    if (!o.plot_path.empty()) write_plot(d, o.plot_path);
  } catch (const std::exception& e) {
    progress.finish();
    std::cerr << "usp-bench: error: " << where
              << (current ? "while running " + current->describe() + ": " : std::string())
              << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace usp::bench
