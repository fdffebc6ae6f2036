// usp-attn: runs USP attention on .npy inputs and writes the results as .npy, so that any
// framework can check its numbers against this library (and the other way round).
#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>

#include "inputs.hpp"
#include "options.hpp"
#include "processes.hpp"
#include "runner.hpp"

namespace usp::attn_tool {
namespace {

// Ranks as threads of this process (local, cuda-local).
int main_threads(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  if (o.help) {
    std::fputs(usage(), stdout);
    return 0;
  }
  check_backend(o);
  const NpyInputs p = load_inputs(o);
  make_out_dir(o);
  write_results(o, p, run(o, p, nullptr));
  return 0;
}

}  // namespace
}  // namespace usp::attn_tool

int main(int argc, char** argv) {
  const std::string backend = usp::attn_tool::backend_flag(argc, argv);
  if (backend == "mpi" || backend == "nccl") return usp::attn_tool::main_processes(argc, argv);
  try {
    return usp::attn_tool::main_threads(argc, argv);
  } catch (const std::exception& e) {
    usp::attn_tool::report(e.what());
  } catch (...) {
    usp::attn_tool::report("unknown failure");
  }
  return 2;
}
