#include "processes.hpp"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../common/mpi_job.hpp"
#include "inputs.hpp"
#include "options.hpp"
#include "runner.hpp"
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
tools::Fields run_fields(const Options& o, const NpyInputs& p) {
  return {{"help", o.help ? "true" : "false"},
          {"backend", o.backend},
          {"ulysses", std::to_string(o.ulysses)},
          {"ring", std::to_string(o.ring)},
          {"ring_type", ring_type_name(o.ring_type)},
          {"double_ring", std::to_string(o.double_ring)},
          {"head_chunks", std::to_string(o.head_chunks)},
          {"window", std::to_string(o.window.left) + "," + std::to_string(o.window.right)},
          {"cu_seqlens", std::to_string(o.cu_seqlens.size())},
          {"causal", o.causal ? "true" : "false"},
          {"check_finite", o.check_finite ? "true" : "false"},
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
  Options o;
  NpyInputs p;
  tools::MpiJob job;
  job.report = [](const std::string& what) { report(what.c_str()); };
  // Every rank reads the inputs and checks the command line.
  job.prepare = [&](int rank, int size) {
    o = parse_options(argc, argv);
    if (o.help) return;
    const int ranks = o.ulysses * o.ring;
    if (size == 1 && ranks != 1)
      USP_FAIL(invalid_argument, "--backend ", o.backend,
               " runs one process per rank: start it with `mpirun -np ", ranks, " ",
               command_line(argc, argv), "` (this process is alone: world size 1)");
    USP_CHECK_ARG(ranks == size, "--ulysses ", o.ulysses, " x --ring ", o.ring, " = ", ranks,
                  " ranks but mpirun started ", size, " processes (--backend ", o.backend,
                  " runs one process per rank: ulysses x ring must equal the world size)");
    check_backend(o);
    p = load_inputs(o);
    if (rank == 0) make_out_dir(o);
  };
  job.fields = [&] { return run_fields(o, p); };
  job.help = [&] { return o.help; };
  job.print_help = [] { std::fputs(usage(), stdout); };
  // This process is one rank; rank 0 writes.
  job.run = [&](Communicator& world) {
    const Results r = run(o, p, &world);
    if (world.rank() == 0) write_results(o, p, r);
    return 0;
  };
  return tools::run_mpi_job(&argc, &argv, backend_flag(argc, argv), job);
}

}  // namespace usp::attn_tool
