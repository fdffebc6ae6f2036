#include "processes.hpp"

#include <algorithm>
#include <exception>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>

#include "../common/mpi_job.hpp"
#include "calibrate.hpp"
#include "machine.hpp"
#include "options.hpp"
#include "plan.hpp"
#include "run.hpp"
#include "runner.hpp"
#include "usp/backend.hpp"
#include "usp/comm_mpi.hpp"
#include "usp/cuda.hpp"
#include "usp/error.hpp"

namespace usp::bench {
namespace {

// The explicit --world value, or 0.
int world_flag(const std::vector<std::string>& args) {
  int w = 0;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--world" && i + 1 < args.size()) w = std::atoi(args[i + 1].c_str());
    if (args[i].rfind("--world=", 0) == 0) w = std::atoi(args[i].c_str() + 8);
  }
  return w;
}

std::string command_line(const std::vector<std::string>& args) {
  std::string s = "usp-bench";
  for (const std::string& a : args) s += " " + a;
  return s;
}

template <class T, class F>
std::string unique_list(const std::vector<RowConfig>& rows, F value) {
  std::vector<T> seen;
  std::ostringstream os;
  for (const RowConfig& c : rows) {
    const T v = value(c);
    if (std::find(seen.begin(), seen.end(), v) != seen.end()) continue;
    os << (seen.empty() ? "" : ",") << v;
    seen.push_back(v);
  }
  return os.str();
}

// What must be the same on every rank for the job to run the same rows.
tools::Fields run_fields(const Options& o, const Plan& plan) {
  const Problem& p = o.problem;
  const auto& rows = plan.rows;
  return {
      {"help", o.help ? "true" : "false"},
      {"backend", o.backend},
      {"preset", o.preset},
      {"ring_type", unique_list<std::string>(
                        rows, [](const RowConfig& c) { return ring_type_name(c.ring_type); })},
      {"seq_len", unique_list<std::int64_t>(rows, [](const RowConfig& c) { return c.seq_len; })},
      {"degrees", unique_list<std::string>(rows,
                                           [](const RowConfig& c) {
                                             return std::to_string(c.ulysses) + "x" +
                                                    std::to_string(c.ring);
                                           })},
      {"fwd_only", unique_list<std::string>(
                       rows, [](const RowConfig& c) { return c.fwd_only ? "true" : "false"; })},
      {"rows", std::to_string(rows.size())},
      {"batch_size", std::to_string(p.batch)},
      {"nheads", std::to_string(p.nheads)},
      {"kv_heads", std::to_string(p.kv_heads)},
      {"head_size", std::to_string(p.head_size)},
      {"dtype", dtype_name(p.dtype)},
      {"causal", p.causal ? "true" : "false"},
      {"seed", std::to_string(p.seed)},
      {"warmup", std::to_string(o.warmup)},
      {"iters", std::to_string(o.iters)},
      {"check", o.check ? "true" : "false"},
  };
}

// The world size every row needs when they agree, else the first row's.
int rows_world(const Plan& plan) {
  return plan.rows.empty() ? 1 : plan.rows.front().world();
}

}  // namespace

std::string backend_flag(const std::vector<std::string>& args) {
  std::string b;
  for (std::size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "--backend" && i + 1 < args.size()) b = args[i + 1];
    if (args[i].rfind("--backend=", 0) == 0) b = args[i].substr(10);
  }
  return b;
}

int main_processes(int* argc, char*** argv, const std::vector<std::string>& args) {
  const std::string backend = backend_flag(args);
  if (const std::string why = backend_unavailable_reason(backend); !why.empty()) {
    std::cerr << "usp-bench: error: " << why << "\n";
    return 2;
  }
  std::unique_ptr<MpiSession> session;
  std::unique_ptr<Communicator> control;  // host messages of the tool itself, never the attention's
  try {
    session = std::make_unique<MpiSession>(argc, argv);
    control = make_mpi_communicator();
    control->set_name("control");
  } catch (const std::exception& e) {
    std::cerr << "usp-bench: error: " << e.what() << "\n";
    return 1;
  }
  const int rank = session->rank(), size = session->size();
  const bool root = rank == 0;

  // 1. Parse and plan on every rank; agree on errors, then on the configuration.
  Options o;
  Plan plan;
  Machine m = detect_machine();
  m.host_ranks = tools::host_ranks(size);
  std::string error;
  try {
    o = parse_options(args);
    if (!o.help) {
      const int w = world_flag(args);
      if (w > 0 && w != size)
        throw UsageError("--world: " + std::to_string(w) + " but mpirun started " +
                         std::to_string(size) + " process" + (size == 1 ? "" : "es") +
                         " (with --backend " + o.backend + " the world is the mpirun job)");
      o.world = size;
      if (o.backend == "nccl") m.gpu = cuda::device_description(rank % cuda::device_count());
      if (o.calibrate) set_shortest_lengths(o);
      Options probe = o;
      probe.world = 0;
      plan = make_plan(probe, m);  // everything but the world size
      bool needs_more = false;
      for (const RowConfig& c : plan.rows) needs_more = needs_more || c.world() != 1;
      if (size == 1 && needs_more)
        throw UsageError("--backend " + o.backend +
                         " runs one process per rank: start it with `mpirun -np " +
                         std::to_string(rows_world(plan)) + " " + command_line(args) +
                         "` (this process is alone: world size 1)");
      plan = make_plan(o, m);
    }
  } catch (const UsageError& e) {
    error = e.what();
  } catch (const Error& e) {
    error = e.what();
  }
  try {
    const std::vector<std::string> errors = tools::allgather_strings(*control, "mpi", error);
    if (std::any_of(errors.begin(), errors.end(),
                    [](const std::string& e) { return !e.empty(); })) {
      if (root)
        for (const std::string& line : tools::error_lines(errors))
          std::cerr << "usp-bench: error: " << line << "\n";
      return 2;
    }
    const std::string mismatch = tools::disagreement(
        tools::allgather_fields(*control, run_fields(o, plan)), "the command line");
    if (!mismatch.empty()) {
      if (root) std::cerr << "usp-bench: error: " << mismatch << "\n";
      return 2;
    }
  } catch (const std::exception& e) {
    session->abort(1, e.what());
  }
  if (o.help) {
    if (root) std::cout << help_text();
    return 0;
  }
  // Rank 0 measures the rate while the others wait; every rank then chooses the same lengths.
  if (o.calibrate) {
    try {
      Calibration cal;
      if (root) cal = calibrate_cpu(o.problem, m.cores);
      cal = tools::allgather_value(*control, "mpi", cal).front();
      apply_length_choice(o, m, cal);
      plan = make_plan(o, m);
    } catch (const std::exception& e) {
      session->abort(1, e.what());
    }
  }

  // 2. Run, this process being one rank; agree on the exit code.
  int status = 0;
  std::unique_ptr<Communicator> world;
  try {
    world = make_world(backend);
    Ranks ranks;
    ranks.backend = o.backend;
    ranks.world = world.get();
    status = run(o, m, plan, ranks);
  } catch (const Error& e) {
    std::cerr << "usp-bench: error: rank " << rank << ": " << e.what() << "\n";
    status = e.kind() == ErrorKind::invalid_argument ? 2 : 1;
  } catch (const std::exception& e) {
    std::cerr << "usp-bench: error: rank " << rank << ": " << e.what() << "\n";
    status = 1;
  }
  return agree_exit_code(*session, *control, status);
}

}  // namespace usp::bench
