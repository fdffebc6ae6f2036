// Command line of usp-bench: flags, presets (the seed's three tables) and their validation.
#pragma once

#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <vector>

#include "config.hpp"
#include "lengths.hpp"

namespace usp::bench {

// A malformed command line; main prints "usp-bench: error: <what>" and exits 2.
struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Degrees {
  int ulysses = 1;
  int ring = 1;
};

// One table: every combination of its lists is a row (ring type, degrees, fwd mode, seq_len, the
// last varying fastest — the seed's order).
struct Section {
  std::string title;  // markdown heading; empty for a single untitled table
  std::vector<RingType> ring_types;
  std::vector<std::int64_t> seq_lens;
  std::vector<Degrees> degrees;
  std::vector<bool> fwd_only;
  int double_ring = 0;  // every row's RowConfig::double_ring
  std::vector<RowConfig> rows() const;
};

struct Options {
  std::string preset;  // what selected the tables ("seed", "seed-degree", ..., or "custom")
  std::vector<Section> sections;
  bool scaled_lengths = false;  // lengths are this machine's defaults, not the seed's
  // No --seq-len and no --preset on a CPU backend: the lengths are chosen from the measured rate
  // (choose_lengths) before the rows run; until then the sections hold scaled_lengths().
  bool calibrate = false;
  std::optional<Calibration> calibration;     // set once measured
  std::optional<LengthChoice> length_choice;  // set once chosen
  BenchProblem problem;
  int warmup = 1;
  int iters = 2;
  std::string backend = "local";
  int threads = 0;  // per rank; 0 = max(1, cores / ranks of the row)
  int world = 0;    // 0 = each row's u·r
  bool check = false;
  bool breakdown = false;
  bool vs_single_rank = false;  // also time each row's global problem on one rank
  int repeats = 1;              // timed runs per row (3 with --vs-single-rank); median reported
  bool compare_seed = false;
  bool gflops = false;  // the speed(GFLOPS) column: by default with the CPU backends (local, mpi)
  bool progress = false;
  std::string csv_path, json_path, plot_path;
  bool help = false;
};

// The seed's global lengths and the ones the default run uses on this class of machine.
const std::vector<std::int64_t>& seed_lengths();
const std::vector<std::int64_t>& scaled_lengths();

// Pieces of the parser that usp-plan shares; each throws UsageError naming the flag and the rule.
std::vector<std::string> split_list(const std::string& flag, const std::string& value);  // a,b,c
std::int64_t parse_int(const std::string& flag, const std::string& s, std::int64_t min,
                       std::int64_t max = std::numeric_limits<std::int64_t>::max());
std::vector<bool> parse_fwd_only(const std::string& flag, const std::string& value);
std::vector<Degrees> parse_degrees(const std::string& flag, const std::string& value);  // 2x4,4x2
DType parse_dtype(const std::string& flag, const std::string& value);  // fp16, bf16, fp32
// The flags of args: each value flag's last value ("--flag value" or "--flag=value"); `on` is
// called with each switch in order. Throws UsageError for an unknown flag, a missing or empty
// value, or a value given to a switch.
std::map<std::string, std::string> scan_flags(const std::vector<std::string>& args,
                                              const std::set<std::string>& value_flags,
                                              const std::set<std::string>& switches,
                                              const std::function<void(const std::string&)>& on);
// --batch-size, --nheads, --kv-heads (default: --nheads), --head-size, --dtype from the flags'
// values (flag → its last value).
void parse_problem(const std::map<std::string, std::string>& values, BenchProblem& p);

// Parses argv[1..]; throws UsageError naming the flag, its value and the rule.
Options parse_options(const std::vector<std::string>& args);
std::string help_text();

}  // namespace usp::bench
