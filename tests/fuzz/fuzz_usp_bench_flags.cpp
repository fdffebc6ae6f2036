// libFuzzer target: usp-bench's flag parser (tools/usp-bench/options.cpp). The fuzz input is the
// command line after argv[0], one argument per line (fuzz_args.hpp). Acceptable rejections are
// UsageError and usp::Error of kind invalid_argument (main reports both as a usage error, exit 2);
// an accepted command line must describe a non-empty, valid set of rows.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "fuzz_args.hpp"
#include "options.hpp"
#include "usp/error.hpp"

namespace {

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "fuzz_usp_bench_flags: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  usp::bench::Options o;
  try {
    o = usp::bench::parse_options(usp_fuzz::split_args(data, size));
  } catch (const usp::bench::UsageError&) {
    return 0;
  } catch (const usp::Error& e) {
    if (e.kind() != usp::ErrorKind::invalid_argument) finding("usp::Error not invalid_argument");
    return 0;
  }
  if (o.help) return 0;
  if (o.sections.empty()) finding("no sections");
  for (const auto& s : o.sections) {
    if (s.ring_types.empty() || s.seq_lens.empty() || s.degrees.empty() || s.fwd_only.empty())
      finding("a section with an empty list");
    for (auto len : s.seq_lens)
      if (len < 1) finding("seq_len < 1");
    for (const auto& d : s.degrees)
      if (d.ulysses < 1 || d.ring < 1) finding("degree < 1");
    // Expanding the rows is cheap only for small tables; the lists themselves are checked above.
    const std::size_t n =
        s.ring_types.size() * s.seq_lens.size() * s.degrees.size() * s.fwd_only.size();
    if (n <= 4096 && s.rows().size() != n) finding("rows() does not expand every combination");
  }
  const auto& p = o.problem;
  if (p.batch < 1 || p.nheads < 1 || p.kv_heads < 1 || p.head_size < 1 || p.head_size > 256)
    finding("problem size out of range");
  if (o.warmup < 0 || o.iters < 1 || o.repeats < 1 || o.threads < 0 || o.world < 0)
    finding("counts out of range");
  return 0;
}
