// libFuzzer target: usp-attn's flag parser (tools/usp-attn/options.cpp). The fuzz input is the
// command line after argv[0], one argument per line (fuzz_args.hpp). The only acceptable rejection
// is usp::Error of kind invalid_argument; an accepted command line must satisfy the rules that
// usage() states.
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "fuzz_args.hpp"
#include "options.hpp"
#include "usp/error.hpp"

namespace {

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_usp_attn_flags: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::vector<std::string> args = usp_fuzz::split_args(data, size);
  std::vector<const char*> argv{"usp-attn"};
  for (const auto& a : args) argv.push_back(a.c_str());
  argv.push_back(nullptr);  // argv[argc] is a null pointer, as in main()
  const int argc = static_cast<int>(argv.size()) - 1;

  usp::attn_tool::Options o;
  try {
    o = usp::attn_tool::parse_options(argc, argv.data());
  } catch (const usp::Error& e) {
    if (e.kind() != usp::ErrorKind::invalid_argument) finding("usp::Error not invalid_argument");
    return 0;
  }
  if (o.help) return 0;
  if (o.q.empty() || o.k.empty() || o.v.empty() || o.out_dir.empty())
    finding("accepted without a required option");
  if (o.ulysses < 1 || o.ring < 1 || o.ulysses * o.ring > 1024) finding("degrees out of range");
  if (o.threads < 0 || o.threads > 1024) finding("--threads out of range");
  if (!std::isfinite(o.scale) || o.scale < 0) finding("--softmax-scale not finite and >= 0");
  if (o.backend != "local" && o.backend != "mpi" && o.backend != "cuda-local" &&
      o.backend != "nccl")
    finding("unknown backend accepted");
  return 0;
}
