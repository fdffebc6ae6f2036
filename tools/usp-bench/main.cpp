// usp-bench: reproduces the seed's USP attention benchmark tables on this machine's ranks.
// See --help (and docs/usp-bench.md) for what is measured and how.
#include <iostream>
#include <string>
#include <vector>

#include "calibrate.hpp"
#include "machine.hpp"
#include "options.hpp"
#include "plan.hpp"
#include "processes.hpp"
#include "row.hpp"
#include "run_plan.hpp"
#include "usp/backend.hpp"
#include "usp/cuda.hpp"
#include "usp/error.hpp"

namespace {

using namespace usp::bench;

int usage_error(const std::string& what) {
  std::cerr << "usp-bench: error: " << what << "\n";
  return 2;
}

// Ranks as threads of this process: local, cuda-local.
int main_threads(const std::vector<std::string>& args) {
  Options options;
  Plan plan;
  Machine machine = detect_machine();
  try {
    options = parse_options(args);
    if (options.help) {
      std::cout << help_text();
      return 0;
    }
    const std::string why = usp::backend_unavailable_reason(options.backend);
    if (!why.empty()) return usage_error(why);
    if (options.backend == "cuda-local") machine.gpu = usp::cuda::device_description(0);
    if (options.calibrate) set_shortest_lengths(options);
    plan = make_plan(options, machine);  // every error before the calibration runs
    if (options.calibrate) {
      apply_length_choice(options, machine, calibrate_cpu(options.problem, machine.cores));
      plan = make_plan(options, machine);
    }
  } catch (const UsageError& e) {
    return usage_error(e.what());
  } catch (const usp::Error& e) {
    return usage_error(e.what());
  }
  Ranks ranks;
  ranks.backend = options.backend;
  return run_plan(options, machine, plan, ranks);
}

}  // namespace

int main(int argc, char** argv) {
  const std::vector<std::string> args(argv + 1, argv + argc);
  const std::string backend = backend_flag(args);
  if (backend == "mpi" || backend == "nccl") return main_processes(&argc, &argv, args);
  return main_threads(args);
}
