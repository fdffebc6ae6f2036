#include "options.hpp"

#include <charconv>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>

#include "../common/flags.hpp"
#include "usp/error.hpp"

namespace usp::bench {

std::vector<std::string> split_list(const std::string& flag, const std::string& value) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (true) {
    const auto comma = value.find(',', start);
    std::string item = value.substr(start, comma == std::string::npos ? comma : comma - start);
    if (item.empty())
      throw UsageError(flag + ": empty item in list '" + value + "' (expected a,b,c)");
    out.push_back(item);
    if (comma == std::string::npos) break;
    start = comma + 1;
  }
  return out;
}

std::int64_t parse_int(const std::string& flag, const std::string& s, std::int64_t min,
                       std::int64_t max) {
  std::int64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size())
    throw UsageError(flag + ": '" + s + "' is not an integer");
  if (v < min || v > max)
    throw UsageError(flag + ": " + s + " is out of range (must be " + std::to_string(min) +
                     (max == std::numeric_limits<std::int64_t>::max()
                          ? " or more"
                          : " to " + std::to_string(max)) +
                     ")");
  return v;
}

std::vector<bool> parse_fwd_only(const std::string& flag, const std::string& value) {
  std::vector<bool> out;
  for (const auto& item : split_list(flag, value)) {
    if (item == "true" || item == "True" || item == "1") {
      out.push_back(true);
    } else if (item == "false" || item == "False" || item == "0") {
      out.push_back(false);
    } else if (item == "both") {
      out.push_back(true);
      out.push_back(false);
    } else {
      throw UsageError(flag + ": '" + item + "' is not true, false or both");
    }
  }
  return out;
}

std::vector<Degrees> parse_degrees(const std::string& flag, const std::string& value) {
  std::vector<Degrees> out;
  for (const auto& item : split_list(flag, value)) {
    const auto x = item.find_first_of("xX");
    if (x == std::string::npos || x == 0 || x + 1 == item.size())
      throw UsageError(flag + ": '" + item + "' is not ULYSSESxRING (e.g. 2x4)");
    Degrees d;
    d.ulysses = static_cast<int>(parse_int(flag + " (ulysses degree)", item.substr(0, x), 1, 4096));
    d.ring = static_cast<int>(parse_int(flag + " (ring degree)", item.substr(x + 1), 1, 4096));
    out.push_back(d);
  }
  return out;
}

DType parse_dtype(const std::string& flag, const std::string& v) {
  if (v == "fp16" || v == "f16" || v == "float16") return DType::f16;
  if (v == "bf16" || v == "bfloat16") return DType::bf16;
  if (v == "fp32" || v == "f32" || v == "float32") return DType::f32;
  throw UsageError(flag + ": '" + v + "' is not fp16, bf16 or fp32");
}

void parse_problem(const std::map<std::string, std::string>& values, BenchProblem& p) {
  auto value = [&](const char* f) -> const std::string* {
    const auto it = values.find(f);
    return it == values.end() ? nullptr : &it->second;
  };
  if (const auto* v = value("--batch-size"))
    p.batch = static_cast<int>(parse_int("--batch-size", *v, 1, 1 << 20));
  if (const auto* v = value("--nheads"))
    p.nheads = static_cast<int>(parse_int("--nheads", *v, 1, 1 << 16));
  const auto* kv = value("--kv-heads");
  p.kv_heads = kv ? static_cast<int>(parse_int("--kv-heads", *kv, 1, 1 << 16)) : p.nheads;
  if (const auto* v = value("--head-size"))
    p.head_size = static_cast<int>(parse_int("--head-size", *v, 1, 256));
  if (const auto* v = value("--dtype")) p.dtype = parse_dtype("--dtype", *v);
  if (const auto* v = value("--window")) {
    if (std::string e = tools::parse_window("--window", *v, p.window); !e.empty())
      throw UsageError(e);
  }
  if (const auto* v = value("--doc-lengths"))
    p.doc_len = parse_int("--doc-lengths", *v, 1, std::int64_t{1} << 40);
  if (const auto* v = value("--cu-seqlens")) {
    if (std::string e = tools::parse_int64_list("--cu-seqlens", *v, p.cu_seqlens); !e.empty())
      throw UsageError(e);
  }
  if (const auto* v = value("--head-chunks"))
    p.head_chunks = static_cast<int>(parse_int("--head-chunks", *v, 0, 1 << 16));
  if (p.doc_len > 0 && !p.cu_seqlens.empty())
    throw UsageError("--doc-lengths and --cu-seqlens both give the documents: use one");
}

namespace {

Section section(std::string title, std::vector<RingType> types, std::vector<Degrees> degrees,
                std::vector<bool> fwd) {
  Section s;
  s.title = std::move(title);
  s.ring_types = std::move(types);
  s.degrees = std::move(degrees);
  s.fwd_only = std::move(fwd);
  s.seq_lens = seed_lengths();
  return s;
}

std::vector<Section> preset_sections(const std::string& name) {
  const auto all = std::vector<RingType>{RingType::basic, RingType::stripe, RingType::zigzag};
  const auto zig = std::vector<RingType>{RingType::zigzag};
  const Section ring_type =
      section("seq_len and ring attention type (seq_len 与 ring attention type 的影响)", all,
              {{2, 4}}, {true});
  const Section degree =
      section("seq_len and degree (seq_len 与 degree 的影响)", zig, {{2, 4}, {4, 2}}, {true});
  const Section backward =
      section("seq_len and backward (seq_len 与 反向 的影响)", zig, {{2, 4}}, {true, false});
  if (name == "seed-ring-type") return {ring_type};
  if (name == "seed-degree") return {degree};
  if (name == "seed-backward") return {backward};
  if (name == "seed" || name == "scaled") return {ring_type, degree, backward};
  throw UsageError("--preset: unknown preset '" + name +
                   "' (expected seed, seed-ring-type, seed-degree, seed-backward or scaled)");
}

const std::set<std::string> kValueFlags = {
    "--preset",      "--ring-type", "--seq-len",     "--degrees",    "--fwd-only",
    "--batch-size",  "--nheads",    "--kv-heads",    "--head-size",  "--dtype",
    "--warmup",      "--iters",     "--backend",     "--threads",    "--seed",
    "--world",       "--csv",       "--json",        "--plot",       "--repeats",
    "--double-ring", "--window",    "--doc-lengths", "--cu-seqlens", "--head-chunks"};
const std::set<std::string> kSwitches = {
    "--causal",    "--no-causal", "--check", "--breakdown", "--compare-seed",  "--gflops",
    "--no-gflops", "--progress",  "--help",  "-h",          "--vs-single-rank"};

}  // namespace

const std::vector<std::int64_t>& seed_lengths() {
  static const std::vector<std::int64_t> v = {4096, 8192, 16384, 32768, 65536, 128000};
  return v;
}

const std::vector<std::int64_t>& scaled_lengths() {
  static const std::vector<std::int64_t> v = {1024, 2048, 4096};
  return v;
}

std::vector<RowConfig> Section::rows() const {
  std::vector<RowConfig> out;
  for (RingType t : ring_types)
    for (const Degrees& d : degrees)
      for (bool fwd : fwd_only)
        for (std::int64_t s : seq_lens) {
          RowConfig c;
          c.ring_type = t;
          c.seq_len = s;
          c.ulysses = d.ulysses;
          c.ring = d.ring;
          c.fwd_only = fwd;
          c.double_ring = double_ring;
          out.push_back(c);
        }
  return out;
}

std::map<std::string, std::string> scan_flags(const std::vector<std::string>& args,
                                              const std::set<std::string>& value_flags,
                                              const std::set<std::string>& switches,
                                              const std::function<void(const std::string&)>& on) {
  std::map<std::string, std::string> values;  // last occurrence wins
  for (std::size_t i = 0; i < args.size(); ++i) {
    auto [flag, value] = tools::split_flag(args[i]);
    if (switches.count(flag)) {
      if (value) throw UsageError(flag + " takes no value (got '" + *value + "')");
      on(flag);
      continue;
    }
    if (!value_flags.count(flag)) throw UsageError("unknown option '" + args[i] + "' (see --help)");
    if (!value) {
      if (i + 1 >= args.size()) throw UsageError(flag + " needs a value");
      value = args[++i];
    }
    if (value->empty()) throw UsageError(flag + ": empty value");
    values[flag] = *value;
  }
  return values;
}

Options parse_options(const std::vector<std::string>& args) {
  std::optional<bool> causal, gflops;
  Options o;
  std::map<std::string, std::string> values =
      scan_flags(args, kValueFlags, kSwitches, [&](const std::string& flag) {
        if (flag == "--causal") causal = true;
        if (flag == "--no-causal") causal = false;
        if (flag == "--check") o.check = true;
        if (flag == "--breakdown") o.breakdown = true;
        if (flag == "--vs-single-rank") o.vs_single_rank = true;
        if (flag == "--compare-seed") o.compare_seed = true;
        if (flag == "--gflops") gflops = true;
        if (flag == "--no-gflops") gflops = false;
        if (flag == "--progress") o.progress = true;
        if (flag == "--help" || flag == "-h") o.help = true;
      });
  if (o.help) return o;

  auto has = [&](const char* f) { return values.count(f) > 0; };
  const bool sweep_flags =
      has("--ring-type") || has("--seq-len") || has("--degrees") || has("--fwd-only");
  if (has("--preset")) {
    o.preset = values["--preset"];
    o.sections = preset_sections(o.preset);
    o.world = 8;
    if (o.preset == "scaled") {
      for (auto& s : o.sections) s.seq_lens = scaled_lengths();
      o.scaled_lengths = true;
    }
  } else if (!sweep_flags) {
    o.preset = "scaled";
    o.sections = preset_sections("seed");
    for (auto& s : o.sections) s.seq_lens = scaled_lengths();
    o.scaled_lengths = true;
    o.calibrate = true;
    o.world = 8;
  } else {
    o.preset = "custom";
    Section s;
    s.ring_types = {RingType::zigzag};
    s.seq_lens = scaled_lengths();
    s.degrees = {{2, 4}};
    s.fwd_only = {true};
    o.sections = {s};
    o.scaled_lengths = true;
    o.calibrate = true;
  }

  if (has("--ring-type")) {
    std::vector<RingType> types;
    for (const auto& item : split_list("--ring-type", values["--ring-type"])) {
      try {
        types.push_back(parse_ring_type(item));
      } catch (const Error&) {
        throw UsageError("--ring-type: '" + item + "' is not basic, stripe, zigzag or allgather");
      }
    }
    for (auto& s : o.sections) s.ring_types = types;
  }
  if (has("--double-ring")) {
    const int inner =
        static_cast<int>(parse_int("--double-ring", values["--double-ring"], 1, 4096));
    for (auto& s : o.sections) s.double_ring = inner;
  }
  if (has("--seq-len")) {
    std::vector<std::int64_t> lens;
    for (const auto& item : split_list("--seq-len", values["--seq-len"]))
      lens.push_back(parse_int("--seq-len", item, 1, std::int64_t{1} << 40));
    for (auto& s : o.sections) s.seq_lens = lens;
    o.scaled_lengths = false;
    o.calibrate = false;
  }
  if (has("--degrees")) {
    const auto d = parse_degrees("--degrees", values["--degrees"]);
    for (auto& s : o.sections) s.degrees = d;
  }
  if (has("--fwd-only")) {
    const auto f = parse_fwd_only("--fwd-only", values["--fwd-only"]);
    for (auto& s : o.sections) s.fwd_only = f;
  }

  parse_problem(values, o.problem);
  BenchProblem& p = o.problem;
  if (causal) p.causal = *causal;
  if (has("--seed")) p.seed = static_cast<std::uint64_t>(parse_int("--seed", values["--seed"], 0));
  if (has("--warmup"))
    o.warmup = static_cast<int>(parse_int("--warmup", values["--warmup"], 0, 1000000));
  if (has("--iters"))
    o.iters = static_cast<int>(parse_int("--iters", values["--iters"], 1, 1000000));
  if (has("--backend")) {
    const std::string& v = values["--backend"];
    if (v != "local" && v != "cpu" && v != "mpi" && v != "cuda-local" && v != "nccl")
      throw UsageError("--backend: '" + v + "' is not local, mpi, cuda-local or nccl");
    o.backend = v == "cpu" ? "local" : v;
  }
  const bool cpu = o.backend == "local" || o.backend == "mpi";
  o.calibrate = o.calibrate && cpu;  // the GPU backends keep scaled_lengths()
  o.gflops = gflops.value_or(cpu);
  if (has("--threads"))
    o.threads = static_cast<int>(parse_int("--threads", values["--threads"], 1, 1024));
  o.repeats = has("--repeats")
                  ? static_cast<int>(parse_int("--repeats", values["--repeats"], 1, 1000))
                  : (o.vs_single_rank ? 3 : 1);
  if (o.vs_single_rank && (o.backend == "mpi" || o.backend == "nccl"))
    throw UsageError(
        "--vs-single-rank: the single-rank run is timed in this process, between "
        "the row's runs; use --backend local or cuda-local (--backend " +
        o.backend + " runs one process per rank)");
  if (has("--world")) o.world = static_cast<int>(parse_int("--world", values["--world"], 1, 4096));
  if (has("--csv")) o.csv_path = values["--csv"];
  if (has("--json")) o.json_path = values["--json"];
  if (has("--plot")) {
    o.plot_path = values["--plot"];
    const auto ends = [&](const char* ext) {
      const std::string e = ext;
      return o.plot_path.size() > e.size() &&
             o.plot_path.compare(o.plot_path.size() - e.size(), e.size(), e) == 0;
    };
    if (!ends(".svg") && !ends(".png"))
      throw UsageError("--plot: '" + o.plot_path + "' must end in .svg or .png");
  }
  return o;
}

}  // namespace usp::bench
