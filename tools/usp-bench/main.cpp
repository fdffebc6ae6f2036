// usp-bench: reproduces the seed's USP attention benchmark tables on this machine's ranks.
// See --help (and docs/usp-bench.md) for what is measured and how.
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "machine.hpp"
#include "options.hpp"
#include "plan.hpp"
#include "plot.hpp"
#include "progress.hpp"
#include "report.hpp"
#include "runner.hpp"
#include "usp/error.hpp"

namespace {

using namespace usp::bench;

int usage_error(const std::string& what) {
  std::cerr << "usp-bench: error: " << what << "\n";
  return 2;
}

void write_file(const char* flag, const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) USP_FAIL(io, flag, ": cannot write '", path, "'");
}

int run(const Options& o, const Machine& m, const Plan& plan) {
  RunData d{o, m, plan, std::vector<RowResult>(plan.rows.size()),
            std::vector<std::optional<CheckResult>>(plan.rows.size())};

  // Steps: the checks (one distributed + one single-rank run each), then the timed rows.
  std::vector<double> costs;
  for (const RowConfig& c : plan.rows)
    if (o.check) costs.push_back(2 * row_flops(o.problem, c));
  for (const RowConfig& c : plan.rows)
    costs.push_back(row_flops(o.problem, c) * (o.warmup + o.iters));
  const bool terminal = isatty(STDERR_FILENO) != 0;
  Progress progress(terminal || o.progress, terminal, costs);

  std::size_t step = 0;
  const RowConfig* current = nullptr;
  try {
    if (o.check) {
      int failed = 0;
      for (std::size_t i = 0; i < plan.rows.size(); ++i) {
        current = &plan.rows[i];
        progress.start(step++, "check " + current->describe());
        d.checks[i] = check_row(o.problem, *current, plan.threads[i], m.cores);
        if (!d.checks[i]->pass) ++failed;
      }
      if (failed > 0) {
        progress.finish();
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
      d.results[i] = run_row(o.problem, *current, plan.threads[i], o.warmup, o.iters);
    }
    current = nullptr;
    progress.finish();

    std::cout << markdown_report(d);
    std::cout.flush();
    if (!o.csv_path.empty()) write_file("--csv", o.csv_path, csv_report(d));
    if (!o.json_path.empty()) write_file("--json", o.json_path, json_report(d));
    if (!o.plot_path.empty()) write_plot(d, o.plot_path);
  } catch (const std::exception& e) {
    progress.finish();
    std::cerr << "usp-bench: error: "
              << (current ? "while running " + current->describe() + ": " : std::string())
              << e.what() << "\n";
    return 1;
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  Options options;
  Plan plan;
  const Machine machine = detect_machine();
  try {
    options = parse_options(args);
    if (options.help) {
      std::cout << help_text();
      return 0;
    }
    plan = make_plan(options, machine);
  } catch (const UsageError& e) {
    return usage_error(e.what());
  } catch (const usp::Error& e) {
    return usage_error(e.what());
  }
  return run(options, machine, plan);
}
