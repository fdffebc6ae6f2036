#include "processes.hpp"

#include <algorithm>
#include <iostream>
#include <sstream>

#include "../common/mpi_job.hpp"
#include "calibrate.hpp"
#include "machine.hpp"
#include "options.hpp"
#include "plan.hpp"
#include "row.hpp"
#include "run_plan.hpp"
#include "usp/backend.hpp"
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
  const BenchProblem& p = o.problem;
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
  Options o;
  Plan plan;
  Machine m = detect_machine();
  tools::MpiJob job;
  job.report = [](const std::string& what) { std::cerr << "usp-bench: error: " << what << "\n"; };
  job.setup_exit = 1;
  // Every rank parses and plans.
  job.prepare = [&](int rank, int size) {
    m.host_ranks = host_ranks(backend, size);
    o = parse_options(args);
    if (o.help) return;
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
  };
  job.fields = [&] { return run_fields(o, plan); };
  job.help = [&] { return o.help; };
  job.print_help = [] { std::cout << help_text(); };
  // Rank 0 measures the rate while the others wait; every rank then chooses the same lengths.
  job.agree_more = [&](Communicator& control) {
    if (!o.calibrate) return;
    Calibration cal;
    if (control.rank() == 0) cal = calibrate_cpu(o.problem, m.cores);
    cal = tools::allgather_value(control, "mpi", cal).front();
    apply_length_choice(o, m, cal);
    plan = make_plan(o, m);
  };
  job.run = [&](Communicator& world) {
    Ranks ranks;
    ranks.backend = o.backend;
    ranks.world = &world;
    return run_plan(o, m, plan, ranks);
  };
  job.failure_status = [](const std::exception& e) {
    const auto* err = dynamic_cast<const Error*>(&e);
    return err != nullptr && err->kind() == ErrorKind::invalid_argument ? 2 : 1;
  };
  return tools::run_mpi_job(argc, argv, backend, job);
}

}  // namespace usp::bench
