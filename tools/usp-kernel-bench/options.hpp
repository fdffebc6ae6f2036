// Command-line flags of usp-kernel-bench.
#pragma once

#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "usp/dtype.hpp"
#include "usp/kernel.hpp"

namespace kbench {

// A bad command line: main prints the message and exits with status 2.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class Pass { fwd, bwd };
const char* pass_name(Pass p);

struct Options {
  std::vector<int> head_sizes{16, 64, 128};
  std::vector<usp::DType> dtypes{usp::DType::f32, usp::DType::bf16, usp::DType::f16};
  std::vector<usp::MaskMode> masks{usp::MaskMode::none, usp::MaskMode::causal};
  std::vector<Pass> passes{Pass::fwd, Pass::bwd};
  std::optional<std::int64_t> seq_len;  // default: 8192, 4096 for d = 16 (--quick: 256)
  std::int64_t batch = 2;
  std::int64_t heads = 16;
  int threads = 0;  // 0: all hardware threads
  int iters = 1;
  int repeats = 3;
  int warmup = 1;
  std::int64_t square = 2048;             // edge of the square reference matmul
  std::int64_t shaped_n = 512;            // N of the attention-shaped reference matmul
  usp::DType fp16_ref = usp::DType::f32;  // reference for fp16 storage when oneDNN has no f16
  std::optional<std::string> path;        // sets USP_CPU_PATH before the kernel is made
  std::string csv;
  bool quick = false;
  bool no_matmul = false;  // skip the reference (profiling the kernel alone)
  bool help = false;

  // The sequence length used for head size d.
  std::int64_t seq_for(int d) const;
};

// Parses argv (without argv[0]); throws UsageError naming the flag and the problem.
Options parse_options(const std::vector<std::string>& args);

// The --help text (flags, defaults, thread policy).
std::string help_text();

}  // namespace kbench
