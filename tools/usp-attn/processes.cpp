#include "processes.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <string>
#include <vector>

#include "../common/mpi_job.hpp"
#include "options.hpp"
#include "problem.hpp"
#include "runner.hpp"
#include "usp/backend.hpp"
#include "usp/comm_mpi.hpp"
#include "usp/error.hpp"

namespace usp::attn_tool {
namespace {

std::string command_line(int argc, char** argv) {
  std::string s = "usp-attn";
  for (int i = 1; i < argc; ++i) s += std::string(" ") + argv[i];
  return s;
}

std::string num(double x) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.9g", x);
  return buf;
}

// What must be the same on every rank.
tools::Fields run_fields(const Options& o, const Problem& p) {
  return {{"help", o.help ? "true" : "false"},
          {"backend", o.backend},
          {"ulysses", std::to_string(o.ulysses)},
          {"ring", std::to_string(o.ring)},
          {"ring_type", ring_type_name(o.ring_type)},
          {"causal", o.causal ? "true" : "false"},
          {"dtype", dtype_name(o.dtype)},
          {"softmax_scale", num(p.scale)},
          {"backward", p.dout.defined() ? "true" : "false"},
          {"shape", std::to_string(p.batch) + "x" + std::to_string(p.seq) + "x" +
                        std::to_string(p.heads) + "x" + std::to_string(p.kv_heads) + "x" +
                        std::to_string(p.head_dim)}};
}

}  // namespace

const char* backend_flag(int argc, char** argv) {
  const char* b = "";
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--backend") == 0 && i + 1 < argc) b = argv[i + 1];
    if (std::strncmp(argv[i], "--backend=", 10) == 0) b = argv[i] + 10;
  }
  return b;
}

void report(const char* what) {
  std::string m = what;
  std::replace(m.begin(), m.end(), '\n', ' ');
  std::fprintf(stderr, "usp-attn: error: %s\n", m.c_str());
}

int main_processes(int argc, char** argv) {
  const std::string backend = backend_flag(argc, argv);
  if (const std::string why = backend_unavailable_reason(backend); !why.empty()) {
    report(why.c_str());
    return 2;
  }
  std::unique_ptr<MpiSession> session;
  std::unique_ptr<Communicator> control;  // the tool's own host messages
  try {
    session = std::make_unique<MpiSession>(&argc, &argv);
    control = make_mpi_communicator();
    control->set_name("control");
  } catch (const std::exception& e) {
    report(e.what());
    return 2;
  }
  const int rank = session->rank(), size = session->size();
  const bool root = rank == 0;

  // 1. Parse and read the inputs on every rank; agree on errors, then on the configuration.
  Options o;
  Problem p;
  std::string error;
  try {
    o = parse_options(argc, argv);
    if (!o.help) {
      const int ranks = o.ulysses * o.ring;
      if (size == 1 && ranks != 1)
        USP_FAIL(invalid_argument, "--backend ", o.backend,
                 " runs one process per rank: start it with `mpirun -np ", ranks, " ",
                 command_line(argc, argv), "` (this process is alone: world size 1)");
      USP_CHECK_ARG(ranks == size, "--ulysses ", o.ulysses, " x --ring ", o.ring, " = ", ranks,
                    " ranks but mpirun started ", size, " processes (--backend ", o.backend,
                    " runs one process per rank: ulysses x ring must equal the world size)");
      check_backend(o);
      p = load_problem(o);
      if (root) make_out_dir(o);
    }
  } catch (const std::exception& e) {
    error = e.what();
  }
  try {
    const std::vector<std::string> errors = tools::allgather_strings(*control, "mpi", error);
    if (std::any_of(errors.begin(), errors.end(),
                    [](const std::string& e) { return !e.empty(); })) {
      if (root)
        for (const std::string& line : tools::error_lines(errors)) report(line.c_str());
      return 2;
    }
    const std::string mismatch = tools::disagreement(
        tools::allgather_fields(*control, run_fields(o, p)), "the command line");
    if (!mismatch.empty()) {
      if (root) report(mismatch.c_str());
      return 2;
    }
  } catch (const std::exception& e) {
    session->abort(2, e.what());
  }
  if (o.help) {
    if (root) std::fputs(usage(), stdout);
    return 0;
  }

  // 2. Run, this process being one rank; rank 0 writes; agree on the exit code.
  int status = 0;
  std::unique_ptr<Communicator> world;
  try {
    world = make_world(backend);
    const Results r = run(o, p, world.get());
    if (root) write_results(o, p, r);
  } catch (const std::exception& e) {
    report(("rank " + std::to_string(rank) + ": " + e.what()).c_str());
    status = 2;
  }
  std::fflush(stdout);
  return agree_exit_code(*session, *control, status);
}

}  // namespace usp::attn_tool
