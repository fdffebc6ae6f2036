// usp-plan: ranks every feasible configuration (u, r, ring type, placement, double ring) of a
// world and problem on a described machine by a cost model of one iteration; --check runs the
// best ones here. See --help and docs/usp-plan.md.
#include <fstream>
#include <iostream>
#include <string>
#include <vector>

#include "check.hpp"
#include "cli.hpp"
#include "fit.hpp"
#include "machine_model.hpp"
#include "measure.hpp"
#include "output.hpp"
#include "usp/error.hpp"

namespace {

using namespace usp::plan;

int usage_error(const std::string& what) {
  std::cerr << "usp-plan: error: " << what << "\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  PlanOptions o;
  MachineModel m;
  std::ofstream machine_out;
  try {
    o = parse_plan_options(args);
    if (o.help) {
      std::cout << plan_help_text();
      return 0;
    }
    if (o.fit_seed) {
      const MachineModel fitted = fit_seed(seed_machine(), 200000);
      const SeedScore s = score_seed(fitted);
      std::cout << machine_text(fitted) << "# median " << s.median << ", worst >= 32768 tokens "
                << s.worst_long << ", mean " << s.mean << ", order kept "
                << (s.order_kept ? "yes" : "no") << "\n";
      return 0;
    }
    if (!o.write_machine.empty()) {
      machine_out.open(o.write_machine);
      if (!machine_out)
        throw usp::bench::UsageError("--write-machine: cannot write '" + o.write_machine + "'");
    }
    if (!o.machine.empty()) m = load_machine(o.machine);
  } catch (const usp::bench::UsageError& e) {
    return usage_error(e.what());
  }
  const BenchProblem problem = o.preset_seed ? seed_problem() : o.problem;
  if (o.machine.empty()) {
    try {
      m = calibrate_this_machine(problem, &std::cerr);
    } catch (const usp::Error& e) {
      std::cerr << "usp-plan: error: the calibration failed: " << e.what() << "\n";
      return 1;
    }
    if (machine_out.is_open()) machine_out << machine_text(m);
  }
  if (o.memory_gib > 0) m.memory_bytes = static_cast<std::uint64_t>(o.memory_gib * (1u << 30));

  if (o.preset_seed) {
    std::vector<const usp::bench::SeedRow*> seed;
    const std::vector<Candidate> rows = seed_candidates(m, seed);
    if (o.csv)
      write_csv(std::cout, rows, seed);
    else
      write_seed_comparison(std::cout, m, rows, seed);
    return 0;
  }
  const std::vector<Candidate> ranked = rank_space(m, problem, o.space);
  if (o.csv) {
    write_csv(std::cout, ranked);
    return 0;
  }
  write_ranking(std::cout, m, problem, o.space.world, ranked, o.top);
  return o.check ? run_check(o, m, ranked, std::cout) : 0;
}
