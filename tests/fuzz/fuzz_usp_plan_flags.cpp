// libFuzzer target: usp-plan's flag parser (tools/usp-plan/cli.cpp). The fuzz input is the
// command line after argv[0], one argument per line (fuzz_args.hpp). Acceptable rejections are
// UsageError and usp::Error of kind invalid_argument (main reports both as a usage error, exit 2);
// an accepted command line must describe a valid space to rank.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "cli.hpp"
#include "fuzz_args.hpp"
#include "usp/error.hpp"

namespace {

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_usp_plan_flags: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  usp::plan::PlanOptions o;
  try {
    o = usp::plan::parse_plan_options(usp_fuzz::split_args(data, size));
  } catch (const usp::bench::UsageError&) {
    return 0;
  } catch (const usp::Error& e) {
    if (e.kind() != usp::ErrorKind::invalid_argument) finding("usp::Error not invalid_argument");
    return 0;
  }
  if (o.help || o.fit_seed) return 0;
  const usp::plan::Space& s = o.space;
  if (s.world < 1) finding("world < 1");
  for (auto len : s.seq_lens)
    if (len < 1) finding("seq_len < 1");
  for (const auto& d : s.degrees)
    if (d.ulysses < 1 || d.ring < 1 || d.ulysses * d.ring != s.world)
      finding("a degree that is not a factorisation of the world");
  for (int inner : s.double_rings)
    if (inner < 0) finding("double ring < 0");
  if (o.top < 1 || o.warmup < 0 || o.iters < 1 || o.repeats < 1) finding("counts out of range");
  if (o.memory_gib < 0) finding("memory < 0");
  const auto& p = o.problem;
  if (p.batch < 1 || p.nheads < 1 || p.kv_heads < 1 || p.head_size < 1 || p.head_size > 256)
    finding("problem size out of range");
  return 0;
}
