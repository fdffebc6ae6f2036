// libFuzzer target: usp-kernel-bench's flag parser (tools/usp-kernel-bench/options.cpp). The fuzz
// input is the command line after argv[0], one argument per line (fuzz_args.hpp). The only
// acceptable rejection is kbench::UsageError; an accepted command line must be in range.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "fuzz_args.hpp"
#include "options.hpp"

namespace {

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_usp_kernel_bench_flags: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  kbench::Options o;
  try {
    o = kbench::parse_options(usp_fuzz::split_args(data, size));
  } catch (const kbench::UsageError&) {
    return 0;
  }
  if (o.head_sizes.empty() || o.dtypes.empty() || o.masks.empty() || o.passes.empty())
    finding("nothing to measure accepted");
  for (int d : o.head_sizes)
    if (d < 1 || d > 256) finding("head size out of range");
  for (int d : {16, 64, 128})
    if (o.seq_for(d) < 1) finding("sequence length < 1");
  if (o.batch < 1 || o.heads < 1 || o.threads < 0 || o.iters < 1 || o.repeats < 1 || o.warmup < 0 ||
      o.square < 16)
    finding("counts out of range");
  if (o.fp16_ref == usp::DType::f16) finding("--fp16-ref fp16 accepted");
  return 0;
}
