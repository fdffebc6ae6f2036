#include "options.hpp"

#include <charconv>
#include <sstream>
#include <string_view>

#include "../common/flags.hpp"
#include "usp/error.hpp"

namespace kbench {
namespace {

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::string cur;
  for (char c : s) {
    if (c == ',') {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

std::int64_t to_int(const std::string& flag, const std::string& value, std::int64_t lo,
                    std::int64_t hi) {
  std::int64_t v = 0;
  const char* end = value.data() + value.size();
  const auto [p, ec] = std::from_chars(value.data(), end, v);
  if (value.empty() || ec != std::errc() || p != end)
    throw UsageError(flag + " expects an integer, got '" + value + "'");
  if (v < lo || v > hi) {
    std::ostringstream os;
    os << flag << " must be in [" << lo << ", " << hi << "], got " << v;
    throw UsageError(os.str());
  }
  return v;
}

usp::DType to_dtype(const std::string& flag, const std::string& value) {
  try {
    return usp::parse_dtype(value, flag);
  } catch (const usp::Error&) {
    throw UsageError(flag + ": unknown dtype '" + value + "' (expected fp32, bf16 or fp16)");
  }
}

}  // namespace

const char* pass_name(Pass p) {
  return p == Pass::fwd ? "fwd" : "bwd";
}

std::int64_t Options::seq_for(int d) const {
  if (seq_len) return *seq_len;
  if (quick) return 256;
  return d <= 16 ? 4096 : 8192;
}

Options parse_options(const std::vector<std::string>& args) {
  Options o;
  bool iters_set = false, repeats_set = false, warmup_set = false, square_set = false;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const usp::tools::FlagArg arg = usp::tools::split_flag(args[i]);
    const std::string& flag = arg.flag;
    const std::optional<std::string>& inline_value = arg.value;
    auto value = [&]() -> std::string {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size()) throw UsageError(flag + " needs a value");
      return args[++i];
    };
    auto no_value = [&]() {
      if (inline_value) throw UsageError(flag + " takes no value");
    };
    if (flag == "--help" || flag == "-h") {
      no_value();
      o.help = true;
    } else if (flag == "--head-size") {
      o.head_sizes.clear();
      for (const std::string& s : split(value()))
        o.head_sizes.push_back(static_cast<int>(to_int(flag, s, 1, 256)));
    } else if (flag == "--dtype") {
      o.dtypes.clear();
      for (const std::string& s : split(value())) o.dtypes.push_back(to_dtype(flag, s));
    } else if (flag == "--seq-len") {
      o.seq_len = to_int(flag, value(), 1, std::int64_t{1} << 20);
    } else if (flag == "--batch-size") {
      o.batch = to_int(flag, value(), 1, 1 << 16);
    } else if (flag == "--nheads") {
      o.heads = to_int(flag, value(), 1, 1 << 16);
    } else if (flag == "--causal") {
      no_value();
      o.masks = {usp::MaskMode::causal};
    } else if (flag == "--no-causal") {
      no_value();
      o.masks = {usp::MaskMode::none};
    } else if (flag == "--both") {
      no_value();
      o.masks = {usp::MaskMode::none, usp::MaskMode::causal};
    } else if (flag == "--fwd-only") {
      no_value();
      o.passes = {Pass::fwd};
    } else if (flag == "--bwd-only") {
      no_value();
      o.passes = {Pass::bwd};
    } else if (flag == "--threads") {
      o.threads = static_cast<int>(to_int(flag, value(), 1, 4096));
    } else if (flag == "--iters") {
      o.iters = static_cast<int>(to_int(flag, value(), 1, 1000000));
      iters_set = true;
    } else if (flag == "--repeats") {
      o.repeats = static_cast<int>(to_int(flag, value(), 1, 1000));
      repeats_set = true;
    } else if (flag == "--warmup") {
      o.warmup = static_cast<int>(to_int(flag, value(), 0, 1000));
      warmup_set = true;
    } else if (flag == "--matmul-size") {
      o.square = to_int(flag, value(), 16, 16384);
      square_set = true;
    } else if (flag == "--fp16-ref") {
      o.fp16_ref = to_dtype(flag, value());
      if (o.fp16_ref == usp::DType::f16) throw UsageError("--fp16-ref must be fp32 or bf16");
    } else if (flag == "--path") {
      const std::string p = value();
      if (p != "generic" && p != "avx2" && p != "avx512" && p != "amx" && p != "neon" &&
          p != "auto")
        throw UsageError("--path: unknown path '" + p +
                         "' (expected generic, avx2, avx512, amx, neon, auto)");
      o.path = p;
    } else if (flag == "--csv") {
      o.csv = value();
      if (o.csv.empty()) throw UsageError("--csv needs a file name");
    } else if (flag == "--no-matmul") {
      no_value();
      o.no_matmul = true;
    } else if (flag == "--quick") {
      no_value();
      o.quick = true;
    } else {
      throw UsageError("unknown flag '" + args[i] + "'");
    }
  }
  if (o.head_sizes.empty() || o.dtypes.empty()) throw UsageError("nothing to measure");
  if (o.quick) {
    if (!iters_set) o.iters = 1;
    if (!repeats_set) o.repeats = 1;
    if (!warmup_set) o.warmup = 0;
    if (!square_set) o.square = 256;
  }
  return o;
}

std::string help_text() {
  return R"(usp-kernel-bench: the CPU block-attention kernel against a oneDNN matmul, side by side.

For each case it times the kernel (usp::make_cpu_kernel) and, interleaved in the same process, two
oneDNN matmuls of the same dtype: a square one (--matmul-size³) and one shaped like the attention's
QKᵀ product (M = s, K = d, N = 512). The faster of the two is the reference rate.
  attention GFLOPS = 4·b·s²·h·d / time (halved for causal; backward counts 2.5× forward)
  ratio            = attention GFLOPS / matmul GFLOPS
Times are medians over --repeats, each the mean of --iters calls after --warmup calls.
oneDNN 2.6 has no f16 matmul on most CPUs; fp16 storage is then compared with --fp16-ref.
The defaults are the issue's problem (K/V larger than the caches; ~20-40 min for all cases on 2
cores). Smaller --batch-size/--nheads keep K/V cache-resident and flatter the kernel.

Usage: usp-kernel-bench [flags]
  --head-size LIST   head sizes d, comma-separated            (default 16,64,128)
  --dtype LIST       storage dtypes: fp32, bf16, fp16         (default fp32,bf16,fp16)
  --seq-len S        sequence length for every d     (default 8192, 4096 for d=16)
  --batch-size B     (default 2)       --nheads H   (default 16)
  --causal | --no-causal | --both      masks to run           (default --both)
  --fwd-only | --bwd-only              passes to run          (default both)
  --threads N        threads for the kernel AND for oneDNN    (default: all hardware threads)
  --iters N          calls per timing                          (default 1)
  --repeats N        timings per case; the median is reported  (default 3)
  --warmup N         untimed calls before timing               (default 1)
  --matmul-size N    edge of the square reference matmul       (default 2048)
  --fp16-ref DT      reference for fp16 when oneDNN lacks f16: fp32 or bf16 (default fp32)
  --path P           set USP_CPU_PATH=P (generic, avx2, avx512, amx, neon, auto) before making
                     the kernel; avx2 also holds oneDNN to AVX2 (DNNL_MAX_CPU_ISA=AVX2 unless
                     set), so that both sides run the same instruction set
  --no-matmul        skip the oneDNN reference (e.g. to profile the kernel alone)
  --quick            smoke test: s=256, 256³ matmul, 1 repeat, no warmup (explicit flags win)
  --csv FILE         also write the results as CSV
  --help             this text

Thread policy: the kernel and oneDNN each use --threads threads, one after the other, never at the
same time; the default is the number of hardware threads, so the tool never oversubscribes the
cores unless asked to. Run it on an otherwise idle machine; on a shared one, take medians of
several runs.

Exit status: 0 done, 1 a run-time error (message on stderr), 2 a bad command line.
)";
}

}  // namespace kbench
