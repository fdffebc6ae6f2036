#include "cli.hpp"

#include <map>
#include <optional>
#include <set>

namespace usp::plan {
namespace {

using bench::UsageError;

const std::set<std::string> kValueFlags = {
    "--machine",    "--write-machine", "--preset",   "--world",      "--seq-len",
    "--batch-size", "--nheads",        "--kv-heads", "--head-size",  "--dtype",
    "--fwd-only",   "--ring-type",     "--degrees",  "--placement",  "--double-ring",
    "--top",        "--warmup",        "--iters",    "--memory-gib", "--repeats"};
const std::set<std::string> kSwitches = {"--calibrate", "--fit-seed",  "--csv",  "--check",
                                         "--causal",    "--no-causal", "--help", "-h"};

}  // namespace

PlanOptions parse_plan_options(const std::vector<std::string>& args) {
  std::optional<bool> causal;
  bool calibrate = false;
  PlanOptions o;
  std::map<std::string, std::string> values =
      bench::scan_flags(args, kValueFlags, kSwitches, [&](const std::string& flag) {
        if (flag == "--calibrate") calibrate = true;
        if (flag == "--fit-seed") o.fit_seed = true;
        if (flag == "--csv") o.csv = true;
        if (flag == "--check") o.check = true;
        if (flag == "--causal") causal = true;
        if (flag == "--no-causal") causal = false;
        if (flag == "--help" || flag == "-h") o.help = true;
      });
  if (o.help) return o;
  if (o.fit_seed && args.size() > 1)
    throw UsageError(
        "--fit-seed: takes no other flag (it fits the built-in seed machine to the seed's table)");
  auto has = [&](const char* f) { return values.count(f) > 0; };

  if (has("--machine")) o.machine = values["--machine"];
  if (calibrate && has("--machine"))
    throw UsageError("--calibrate: measures this machine; it cannot be combined with --machine " +
                     o.machine);
  if (has("--write-machine")) {
    if (has("--machine"))
      throw UsageError("--write-machine: writes the rates --calibrate measures; with --machine " +
                       o.machine + " nothing is measured");
    o.write_machine = values["--write-machine"];
  }
  if (o.check && o.machine == "seed")
    throw UsageError(
        "--check: runs the configurations on this machine, which --machine seed does not "
        "describe (use --calibrate or a machine file measured here)");

  if (has("--memory-gib")) {
    const std::string& v = values["--memory-gib"];
    std::size_t used = 0;
    try {
      o.memory_gib = std::stod(v, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != v.size() || !(o.memory_gib > 0))
      throw UsageError("--memory-gib: '" + v + "' is not a positive number of GiB");
  }

  Space& s = o.space;
  if (has("--preset")) {
    if (values["--preset"] != "seed")
      throw UsageError("--preset: unknown preset '" + values["--preset"] + "' (expected seed)");
    for (const char* f :
         {"--world", "--seq-len", "--batch-size", "--nheads", "--kv-heads", "--head-size",
          "--dtype", "--fwd-only", "--ring-type", "--degrees", "--placement", "--double-ring"})
      if (has(f))
        throw UsageError(std::string(f) +
                         ": --preset seed fixes the seed's rows and problem (b 2, h 16, d 128, "
                         "fp16, causal, world 8); leave it out or drop --preset");
    if (causal)
      throw UsageError(std::string(*causal ? "--causal" : "--no-causal") +
                       ": --preset seed fixes the seed's problem (causal)");
    if (o.check)
      throw UsageError("--check: runs the ranking's best rows; it does not take --preset");
    o.preset_seed = true;
    s.world = 8;
    return o;
  }

  if (has("--world"))
    s.world = static_cast<int>(bench::parse_int("--world", values["--world"], 1, 4096));
  s.seq_lens = {2048};
  if (has("--seq-len")) {
    s.seq_lens.clear();
    for (const auto& item : bench::split_list("--seq-len", values["--seq-len"]))
      s.seq_lens.push_back(bench::parse_int("--seq-len", item, 1, std::int64_t{1} << 40));
  }
  bench::parse_problem(values, o.problem);
  if (causal) o.problem.causal = *causal;
  if (has("--fwd-only")) s.fwd_only = bench::parse_fwd_only("--fwd-only", values["--fwd-only"]);
  if (has("--ring-type"))
    for (const auto& item : bench::split_list("--ring-type", values["--ring-type"])) {
      const auto t = parse_strategy(item);
      if (!t)
        throw UsageError("--ring-type: '" + item + "' is not basic, stripe, zigzag or allgather");
      s.types.push_back(*t);
    }
  if (has("--degrees")) {
    s.degrees = bench::parse_degrees("--degrees", values["--degrees"]);
    for (const bench::Degrees& d : s.degrees)
      if (d.ulysses * d.ring != s.world)
        throw UsageError("--degrees: " + std::to_string(d.ulysses) + "x" + std::to_string(d.ring) +
                         " needs " + std::to_string(d.ulysses * d.ring) +
                         " ranks but this run has " + std::to_string(s.world) +
                         " (ulysses_degree × ring_degree must equal --world)");
  }
  if (has("--placement"))
    for (const auto& item : bench::split_list("--placement", values["--placement"])) {
      if (item == "ulysses_inner")
        s.placements.push_back(Placement::ulysses_inner);
      else if (item == "ring_inner")
        s.placements.push_back(Placement::ring_inner);
      else
        throw UsageError("--placement: '" + item + "' is not ulysses_inner or ring_inner");
    }
  if (has("--double-ring"))
    for (const auto& item : bench::split_list("--double-ring", values["--double-ring"]))
      s.double_rings.push_back(static_cast<int>(bench::parse_int("--double-ring", item, 0, 4096)));
  const bool top_given = has("--top");
  if (top_given)
    o.top = static_cast<int>(bench::parse_int("--top", values["--top"], 1, 100000));
  else if (o.check)
    o.top = 3;
  if (has("--warmup"))
    o.warmup = static_cast<int>(bench::parse_int("--warmup", values["--warmup"], 0, 1000000));
  if (has("--iters"))
    o.iters = static_cast<int>(bench::parse_int("--iters", values["--iters"], 1, 1000000));
  if (has("--repeats"))
    o.repeats = static_cast<int>(bench::parse_int("--repeats", values["--repeats"], 1, 1000));
  for (const char* f : {"--warmup", "--iters", "--repeats"})
    if (has(f) && !o.check) throw UsageError(std::string(f) + ": sets --check's runs; add --check");
  if (o.csv && o.check)
    throw UsageError("--check: prints its table as markdown; run it without --csv");
  return o;
}

}  // namespace usp::plan
