// usp-bench, tested through the built binary (build/bin/usp-bench, next to usp_tests).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "usp/backend.hpp"

namespace {

const char* const kHeader =
    "| ring type | seq_len | ulysses_degree | ring_degree | fwd_only | throughput(iters/s) | "
    "latency(ms/iter) | peak memory(MB/device) | speed(TFLOPS) |";
const char* const kAlign =
    "| :----: | :----: | :----: | :----: | :----: | :----: | :----: | :----: | :----: |";
// Tiny problems: every run below takes well under a second.
const char* const kTiny = "--seq-len 64,128 --head-size 16 --iters 1 --warmup 0";

std::string bench_path() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "usp-bench";
  std::string exe(buf, static_cast<std::size_t>(n));
  return exe.substr(0, exe.find_last_of('/')) + "/usp-bench";
}

std::string tmp_path(const std::string& name) {
  return testing::TempDir() + "usp_bench_" + std::to_string(getpid()) + "_" + name;
}

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream os;
  os << in.rdbuf();
  return os.str();
}

struct Result {
  int code = -1;
  std::string out, err;
};

Result run_bench(const std::string& args) {
  const std::string exe = bench_path();
  EXPECT_EQ(access(exe.c_str(), X_OK), 0) << exe << " is missing: build the usp-bench target";
  const std::string out = tmp_path("stdout"), err = tmp_path("stderr");
  const std::string cmd = "'" + exe + "' " + args + " >'" + out + "' 2>'" + err + "'";
  const int status = std::system(cmd.c_str());
  Result r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  std::remove(out.c_str());
  std::remove(err.c_str());
  return r;
}

// usp-bench with `args` plus --json into a temporary file `name`: its result and the JSON text.
struct JsonRun {
  Result r;
  std::string json;
};

JsonRun run_bench_json(const std::string& args, const std::string& name) {
  const std::string path = tmp_path(name);
  JsonRun run{run_bench(args + " --json '" + path + "'"), ""};
  run.json = slurp(path);
  std::remove(path.c_str());
  return run;
}

std::vector<std::string> lines_of(const std::string& s) {
  std::vector<std::string> v;
  std::istringstream is(s);
  for (std::string line; std::getline(is, line);) v.push_back(line);
  return v;
}

std::vector<std::string> cells(const std::string& row) {
  std::vector<std::string> out;
  std::istringstream is(row);
  std::string c;
  std::getline(is, c, '|');  // before the first bar
  while (std::getline(is, c, '|')) {
    const auto a = c.find_first_not_of(' '), b = c.find_last_not_of(' ');
    out.push_back(a == std::string::npos ? "" : c.substr(a, b - a + 1));
  }
  return out;
}

struct Table {
  std::string heading;  // the last "## " line above it
  std::string header;
  std::vector<std::vector<std::string>> rows;
};

// Every table whose header starts with the seed's header (extra columns allowed).
std::vector<Table> seed_tables(const std::string& out) {
  std::vector<Table> tables;
  const auto lines = lines_of(out);
  std::string heading;
  for (std::size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].rfind("## ", 0) == 0) heading = lines[i];
    if (lines[i].rfind(kHeader, 0) != 0) continue;
    Table t;
    t.heading = heading;
    t.header = lines[i];
    EXPECT_TRUE(i + 1 < lines.size() && lines[i + 1].rfind(kAlign, 0) == 0) << lines[i + 1];
    for (std::size_t j = i + 2; j < lines.size() && lines[j].rfind("| ", 0) == 0; ++j)
      t.rows.push_back(cells(lines[j]));
    tables.push_back(t);
  }
  return tables;
}

std::vector<std::string> csv_split(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false;
  for (char c : line) {
    if (c == '"') {
      quoted = !quoted;
    } else if (c == ',' && !quoted) {
      out.push_back(cur);
      cur.clear();
    } else {
      cur += c;
    }
  }
  out.push_back(cur);
  return out;
}

// A small strict JSON syntax check (objects, arrays, strings, numbers, true/false/null).
struct JsonChecker {
  const std::string& s;
  std::size_t i = 0;
  void ws() {
    while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  }
  bool lit(const char* w) {
    const std::string t = w;
    if (s.compare(i, t.size(), t) != 0) return false;
    i += t.size();
    return true;
  }
  bool str() {
    if (s[i] != '"') return false;
    for (++i; i < s.size(); ++i) {
      if (s[i] == '\\')
        ++i;
      else if (s[i] == '"')
        return ++i, true;
    }
    return false;
  }
  bool value() {
    ws();
    if (i >= s.size()) return false;
    const char c = s[i];
    if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++i;
      ws();
      if (s[i] == close) return ++i, true;
      while (true) {
        ws();
        if (c == '{') {
          if (!str()) return false;
          ws();
          if (s[i++] != ':') return false;
        }
        if (!value()) return false;
        ws();
        if (s[i] == ',') {
          ++i;
          continue;
        }
        if (s[i] == close) return ++i, true;
        return false;
      }
    }
    if (c == '"') return str();
    if (lit("true") || lit("false") || lit("null")) return true;
    const std::size_t start = i;
    while (i < s.size() && std::strchr("+-0123456789.eE", s[i])) ++i;
    return i > start;
  }
  bool document() {
    if (!value()) return false;
    ws();
    return i == s.size();
  }
};

std::vector<double> json_numbers(const std::string& json, const std::string& key) {
  std::vector<double> v;
  const std::string k = "\"" + key + "\": ";
  for (auto p = json.find(k); p != std::string::npos; p = json.find(k, p + 1))
    v.push_back(std::strtod(json.c_str() + p + k.size(), nullptr));
  return v;
}

double formula_flops(double b, double s, double h, double d, bool causal, bool fwd_only) {
  return 4 * b * s * s * h * d * (causal ? 0.5 : 1.0) * (fwd_only ? 1.0 : 3.5);
}

TEST(BenchCli, SeedPresetPrintsThreeTablesWithTheSeedHeader) {
  const Result r = run_bench(std::string("--preset seed ") + kTiny);
  ASSERT_EQ(r.code, 0) << r.err;
  const auto tables = seed_tables(r.out);
  ASSERT_EQ(tables.size(), 3u) << r.out;
  // The seed's columns, then speed(GFLOPS) (by default on the CPU).
  EXPECT_EQ(tables[0].header, std::string(kHeader) + " speed(GFLOPS) |");
  EXPECT_NE(tables[0].heading.find("seq_len and ring attention type"), std::string::npos);
  EXPECT_NE(tables[1].heading.find("seq_len and degree"), std::string::npos);
  EXPECT_NE(tables[2].heading.find("seq_len and backward"), std::string::npos);
  EXPECT_EQ(tables[0].rows.size(), 3u * 2u);  // 3 ring types × 2 lengths, 2x4, fwd
  EXPECT_EQ(tables[1].rows.size(), 2u * 2u);  // zigzag × {2x4, 4x2} × 2 lengths
  EXPECT_EQ(tables[2].rows.size(), 2u * 2u);  // zigzag 2x4 × {True, False} × 2 lengths
  // The seed's order and value formats.
  EXPECT_EQ(tables[0].rows[0][0], "basic");
  EXPECT_EQ(tables[0].rows[5][0], "zigzag");
  EXPECT_EQ(tables[1].rows[2][2], "4");
  EXPECT_EQ(tables[1].rows[2][3], "2");
  EXPECT_EQ(tables[2].rows[0][4], "True");
  EXPECT_EQ(tables[2].rows[3][4], "False");
  for (const auto& t : tables)
    for (const auto& row : t.rows) {
      ASSERT_EQ(row.size(), 10u);  // + speed(GFLOPS), by default on the CPU
      EXPECT_EQ(row[5].size() - row[5].find('.'), 4u) << row[5];  // 3 decimals
      EXPECT_EQ(row[6].size() - row[6].find('.'), 4u) << row[6];
      EXPECT_EQ(row[7].size() - row[7].find('.'), 2u) << row[7];  // 1 decimal
      EXPECT_EQ(row[8].size() - row[8].find('.'), 2u) << row[8];
      EXPECT_EQ(row[9].size() - row[9].find('.'), 3u) << row[9];  // 2 decimals
    }
  EXPECT_NE(r.out.find("- machine: "), std::string::npos);
  EXPECT_NE(r.out.find("- dtype: fp16"), std::string::npos);
  EXPECT_NE(r.out.find("- lengths: 64, 128\n"), std::string::npos);
  EXPECT_EQ(r.out.find("lengths chosen"), std::string::npos);  // explicit lengths: no calibration
}

TEST(BenchCli, GflopsColumnByDefaultOnTheCpu) {
  const std::string gflops = std::string(kHeader) + " speed(GFLOPS) |";
  const std::string align = std::string(kAlign) + " :----: |";
  for (const char* flags : {"", "--gflops", "--no-gflops --gflops", "--backend cpu"}) {
    const Result r = run_bench(std::string("--preset seed-degree ") + kTiny + " " + flags);
    ASSERT_EQ(r.code, 0) << flags << ": " << r.err;
    const auto tables = seed_tables(r.out);
    ASSERT_EQ(tables.size(), 1u) << flags;
    EXPECT_EQ(tables[0].header, gflops) << flags;
    EXPECT_NE(r.out.find(gflops + "\n" + align + "\n"), std::string::npos) << flags;
    for (const auto& row : tables[0].rows) {
      ASSERT_EQ(row.size(), 10u) << flags;
      // The same rate as the TFLOPS column, in GFLOPS with 2 decimals.
      EXPECT_NEAR(std::stod(row[9]) / 1000.0, std::stod(row[8]), 0.05 + 1e-9) << flags;
    }
    EXPECT_NE(r.out.find("(speed(GFLOPS): the same in GFLOPS)"), std::string::npos) << flags;
  }
  // --no-gflops (the last of the two wins): exactly the seed's columns.
  for (const char* flags : {"--no-gflops", "--gflops --no-gflops"}) {
    const Result r = run_bench(std::string("--preset seed-degree ") + kTiny + " " + flags);
    ASSERT_EQ(r.code, 0) << flags << ": " << r.err;
    const auto tables = seed_tables(r.out);
    ASSERT_EQ(tables.size(), 1u) << flags;
    EXPECT_EQ(tables[0].header, kHeader) << flags;
    for (const auto& row : tables[0].rows) EXPECT_EQ(row.size(), 9u) << flags;
    EXPECT_EQ(r.out.find("GFLOPS"), std::string::npos) << flags;
  }
}

// A run without --seq-len and --preset measures the CPU kernel and picks L, 2L, 4L from its rate
// (which L depends on the machine; the rule's structure does not).
TEST(BenchCli, LengthsWithoutSeqLenComeFromTheCalibration) {
  const JsonRun run = run_bench_json(
      "--ring-type zigzag --degrees 2x4 --head-size 16 --nheads 2 --batch-size 1 --iters 1 "
      "--warmup 0",
      "lengths.json");
  const Result& r = run.r;
  ASSERT_EQ(r.code, 0) << r.err;
  const auto tables = seed_tables(r.out);
  ASSERT_EQ(tables.size(), 1u) << r.out;
  ASSERT_EQ(tables[0].rows.size(), 3u);
  const std::int64_t l = std::stoll(tables[0].rows[0][1]);
  EXPECT_EQ(std::stoll(tables[0].rows[1][1]), 2 * l);
  EXPECT_EQ(std::stoll(tables[0].rows[2][1]), 4 * l);
  EXPECT_EQ(l % 16, 0) << l;                   // zigzag over 2x4: 2·u·r
  EXPECT_EQ((l / 16) & (l / 16 - 1), 0) << l;  // 16 × a power of two
  EXPECT_GE(l, 512);
  EXPECT_LE(4 * l, 8192);
  const std::string lengths =
      std::to_string(l) + ", " + std::to_string(2 * l) + ", " + std::to_string(4 * l);
  EXPECT_NE(r.out.find("- lengths scaled to this machine: " + lengths + " (the seed: "),
            std::string::npos)
      << r.out;
  const auto why = r.out.find("- lengths chosen from this machine's rate: ");
  ASSERT_NE(why, std::string::npos) << r.out;
  const std::string line = r.out.substr(why, r.out.find('\n', why) - why);
  EXPECT_NE(line.find("single-threaded CPU kernel"), std::string::npos) << line;
  EXPECT_NE(line.find("ran the forward (fp16, batch size 2, 16 heads, head size 16, 512 tokens"),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("the 3 rows × (0 warm-up + 1 timed iteration) compute"), std::string::npos)
      << line;
  EXPECT_NE(line.find("(rule: L, 2L, 4L with L = 16 × a power of two, L ≥ 512, 4L ≤ 8192"),
            std::string::npos)
      << line;

  const std::string& j = run.json;
  JsonChecker check{j};
  EXPECT_TRUE(check.document()) << "invalid JSON near offset " << check.i;
  EXPECT_NE(j.find("\"lengths\": [" + lengths + "]"), std::string::npos) << j;
  EXPECT_NE(j.find("\"granularity\": 16"), std::string::npos);
  EXPECT_NE(j.find("\"budget_s\": 40"), std::string::npos);
  ASSERT_EQ(json_numbers(j, "rate_gflops").size(), 1u);
  // The prediction is the seed's flops of the three rows (1 iteration each) at the rate.
  const auto rate = json_numbers(j, "rate_gflops"), predicted = json_numbers(j, "predicted_s");
  double flops = 0;
  for (std::int64_t s : {l, 2 * l, 4 * l})
    flops += formula_flops(1, static_cast<double>(s), 2, 16, true, true);
  const auto all_flops = json_numbers(j, "flops");  // the calibration's call, the choice's, rows'
  ASSERT_EQ(all_flops.size(), 2u + 3u);
  EXPECT_NEAR(all_flops[1], flops, 1e-8 * flops);
  ASSERT_EQ(predicted.size(), 1u);
  EXPECT_NEAR(predicted[0], flops / (rate[0] * 1e9), 1e-6 * predicted[0]);
}

TEST(BenchCli, PresetScaledKeepsItsFixedLengths) {
  const Result r = run_bench(
      "--preset scaled --head-size 16 --nheads 4 --batch-size 1 --iters 1 --warmup 0 "
      "--fwd-only true");
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("- lengths scaled to this machine: 1024, 2048, 4096 (the seed: "),
            std::string::npos)
      << r.out;
  EXPECT_EQ(r.out.find("lengths chosen"), std::string::npos) << r.out;
  EXPECT_EQ(seed_tables(r.out).size(), 3u);
}

TEST(BenchCli, SinglePresetsHaveTheirRows) {
  const std::map<std::string, std::size_t> expected = {
      {"seed-ring-type", 6}, {"seed-degree", 4}, {"seed-backward", 4}};
  for (const auto& [preset, rows] : expected) {
    const Result r = run_bench("--preset " + preset + " " + kTiny);
    ASSERT_EQ(r.code, 0) << preset << ": " << r.err;
    const auto tables = seed_tables(r.out);
    ASSERT_EQ(tables.size(), 1u) << preset;
    EXPECT_EQ(tables[0].rows.size(), rows) << preset;
  }
}

TEST(BenchCli, SpeedColumnsFollowTheSeedFormula) {
  const std::string csv = tmp_path("speed.csv");
  const Result r = run_bench(
      "--ring-type basic,zigzag --degrees 2x2 --fwd-only both --seq-len 64,96 --head-size 16 "
      "--nheads 4 --batch-size 3 --iters 2 --warmup 1 --no-causal --csv '" +
      csv + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto tables = seed_tables(r.out);
  ASSERT_EQ(tables.size(), 1u);
  ASSERT_EQ(tables[0].rows.size(), 2u * 2u * 2u);
  for (const auto& row : tables[0].rows) {
    ASSERT_EQ(row.size(), 10u);  // + speed(GFLOPS)
    const double s = std::stod(row[1]);
    const double throughput = std::stod(row[5]), latency = std::stod(row[6]);
    EXPECT_NEAR(throughput * latency, 1000.0, 1000.0 * 2e-3 + 0.5e-3 * throughput);
    const double flops = formula_flops(3, s, 4, 16, false, row[4] == "True");
    const double gflops = flops / (latency / 1000.0) / 1e9;
    EXPECT_NEAR(std::stod(row[9]), gflops, 0.005 + gflops * (0.0005 / latency));
  }
  // Full precision in the CSV.
  const auto lines = lines_of(slurp(csv));
  std::remove(csv.c_str());
  ASSERT_EQ(lines.size(), 1u + 8u);
  const auto head = csv_split(lines[0]);
  std::map<std::string, std::size_t> col;
  for (std::size_t i = 0; i < head.size(); ++i) col[head[i]] = i;
  for (const char* k : {"seq_len", "fwd_only", "latency_ms", "speed_tflops", "causal", "nheads"})
    ASSERT_TRUE(col.count(k)) << k;
  for (std::size_t i = 1; i < lines.size(); ++i) {
    const auto f = csv_split(lines[i]);
    ASSERT_EQ(f.size(), head.size()) << lines[i];
    EXPECT_EQ(f[col["causal"]], "False");
    const double flops =
        formula_flops(3, std::stod(f[col["seq_len"]]), 4, 16, false, f[col["fwd_only"]] == "True");
    const double expect = flops / (std::stod(f[col["latency_ms"]]) / 1000.0) / 1e12;
    EXPECT_NEAR(std::stod(f[col["speed_tflops"]]), expect, expect * 1e-6);
  }
}

TEST(BenchCli, PeakMemoryWithinTheDocumentedBound) {
  const JsonRun run = run_bench_json(
      "--preset seed-backward --seq-len 128,256 --head-size 32 --iters 1 "
      "--warmup 1",
      "mem.json");
  const Result& r = run.r;
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string& text = run.json;
  const auto peak = json_numbers(text, "peak_memory_bytes");
  const auto estimate = json_numbers(text, "estimate_memory_bytes");
  const auto seq = json_numbers(text, "seq_len");
  ASSERT_EQ(peak.size(), 4u);
  ASSERT_EQ(estimate.size(), 4u);
  for (std::size_t i = 0; i < peak.size(); ++i) {
    // At least the rank's own q, k, v shards (fp16, b 2, 16 heads, d 32, s/8 tokens) are live.
    const double inputs = 3.0 * 2 * (seq[i] / 8) * 16 * 32 * 2;
    EXPECT_GE(peak[i], inputs) << "row " << i;
    EXPECT_LE(peak[i], estimate[i]) << "row " << i;
  }
  // The markdown column is the same number in MB.
  const auto tables = seed_tables(r.out);
  ASSERT_EQ(tables.size(), 1u);
  for (std::size_t i = 0; i < 4; ++i)
    EXPECT_NEAR(std::stod(tables[0].rows[i][7]), peak[i] / (1 << 20), 0.05 + 1e-9);
  EXPECT_NE(r.out.find("measured/minimum"), std::string::npos);
}

TEST(BenchCli, CsvJsonAndPlotAreWritten) {
  const std::string csv = tmp_path("o.csv"), json = tmp_path("o.json"), svg = tmp_path("o.svg");
  const Result r = run_bench(std::string("--preset seed ") + kTiny + " --breakdown --progress" +
                             " --csv '" + csv + "' --json '" + json + "' --plot '" + svg + "'");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto csv_lines = lines_of(slurp(csv));
  EXPECT_EQ(csv_lines.size(), 1u + 6u + 4u + 4u);  // one line per table row
  const std::string j = slurp(json);
  JsonChecker check{j};
  EXPECT_TRUE(check.document()) << "invalid JSON near offset " << check.i;
  for (const char* key :
       {"\"machine\"", "\"config\"", "\"cpu_model\"", "\"tables\"", "\"ranks\"", "\"comm_hidden\""})
    EXPECT_NE(j.find(key), std::string::npos) << key;
  EXPECT_EQ(json_numbers(j, "latency_ms").size(), 14u);
  const std::string s = slurp(svg);
  EXPECT_EQ(s.rfind("<svg", 0), 0u);
  EXPECT_NE(s.find("throughput (iters/s"), std::string::npos);
  EXPECT_NE(s.find("seq_len (global tokens, log scale)"), std::string::npos);
  EXPECT_NE(s.find("zigzag 4×2 fwd"), std::string::npos);
  EXPECT_NE(s.find("zigzag 2×4 fwd+bwd"), std::string::npos);
  EXPECT_NE(r.out.find("## Breakdown per rank"), std::string::npos);
  EXPECT_NE(r.err.find("usp-bench: 10/10"), std::string::npos) << r.err;  // 10 distinct rows
  std::remove(csv.c_str());
  std::remove(json.c_str());
  std::remove(svg.c_str());
}

TEST(BenchCli, CheckAgreesWithTheSingleRankRun) {
  const Result r = run_bench(
      "--ring-type basic,stripe,zigzag --degrees 2x2,1x4 --fwd-only both --seq-len 48 "
      "--head-size 8 --nheads 4 --kv-heads 2 --dtype fp32 --iters 1 --warmup 0 --check");
  ASSERT_EQ(r.code, 0) << r.out << r.err;
  const auto tables = seed_tables(r.out);
  ASSERT_EQ(tables.size(), 1u);
  ASSERT_EQ(tables[0].rows.size(), 3u * 2u * 2u);
  for (const auto& row : tables[0].rows) {
    ASSERT_EQ(row.size(), 11u);  // + speed(GFLOPS), check
    const double err = std::stod(row[10]);
    EXPECT_LE(err, 1e-5) << row[10];  // fp32: out and lse 1e-5, grads 1e-4
  }
}

TEST(BenchCli, StrategiesAgreeWithTheSingleRankRun) {
  // allgather, and the double ring (inner rings of 2 within a ring of 4; on 2x2 one inner ring
  // of both, the single ring), each checked against the single-rank run.
  for (const char* flags : {"--ring-type allgather --degrees 2x2,1x4",
                            "--ring-type basic,zigzag --double-ring 2 --degrees 2x2,1x4"}) {
    const Result r = run_bench(std::string(flags) +
                               " --fwd-only both --seq-len 48 --head-size 8 --nheads 4 "
                               "--kv-heads 2 --dtype fp32 --iters 1 --warmup 0 --check");
    ASSERT_EQ(r.code, 0) << flags << r.out << r.err;
    const auto tables = seed_tables(r.out);
    ASSERT_EQ(tables.size(), 1u);
    for (const auto& row : tables[0].rows) {
      ASSERT_EQ(row.size(), 11u);
      EXPECT_EQ(row[0], std::string(flags).find("double") != std::string::npos
                            ? (row[0].rfind("basic", 0) == 0 ? "basic/dr2" : "zigzag/dr2")
                            : "allgather");
      EXPECT_LE(std::stod(row[10]), 1e-5) << flags << " " << row[0] << " " << row[10];
    }
  }
}

TEST(BenchCli, WindowsAndDocumentsAgreeWithTheSingleRankRun) {
  for (const char* flags : {"--window 9,0 --ring-type zigzag,stripe,allgather",
                            "--doc-lengths 7 --batch-size 1 --ring-type basic,zigzag",
                            "--cu-seqlens 0,1,20,21,48 --batch-size 1 --window 5,-1"}) {
    const Result r = run_bench(std::string(flags) +
                               " --degrees 2x2,1x4 --fwd-only both --seq-len 48 --head-size 8 "
                               "--nheads 4 --kv-heads 2 --dtype fp32 --iters 1 --warmup 0 --check");
    ASSERT_EQ(r.code, 0) << flags << r.out << r.err;
    const auto tables = seed_tables(r.out);
    ASSERT_EQ(tables.size(), 1u);
    EXPECT_FALSE(tables[0].rows.empty());
    for (const auto& row : tables[0].rows)
      EXPECT_LE(std::stod(row[10]), 1e-5) << flags << " " << row[0] << " " << row[10];
  }
}

// The cells of the first markdown table line that starts with `prefix`.
std::vector<std::string> table_line(const std::string& out, const std::string& prefix) {
  for (const std::string& line : lines_of(out)) {
    if (line.rfind(prefix, 0) != 0) continue;
    std::vector<std::string> cells;
    std::stringstream ss(line.substr(1));
    for (std::string cell; std::getline(ss, cell, '|');) {
      const auto a = cell.find_first_not_of(' '), b = cell.find_last_not_of(' ');
      cells.push_back(a == std::string::npos ? "" : cell.substr(a, b - a + 1));
    }
    return cells;
  }
  return {};
}

TEST(BenchCli, VsSingleRankTimesTheSameProblemOnOneRankAlternately) {
  const JsonRun run = run_bench_json(
      "--degrees 2x2,1x1 --threads 1 --seq-len 64 --head-size 16 --nheads 4 --fwd-only false "
      "--iters 1 --warmup 0 --vs-single-rank",
      "vs.json");
  const Result& r = run.r;
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("- every row timed 3 times"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("## Against a single rank"), std::string::npos) << r.out;
  // 4 ranks × 1 thread against one rank with 4 threads; the 1x1 row has no comparison.
  const auto cells = table_line(r.out, "| zigzag | 64 | 2 | 2 | False | 4 × 1 | 4 |");
  ASSERT_EQ(cells.size(), 12u) << r.out;
  EXPECT_EQ(table_line(r.out, "| zigzag | 64 | 1 | 1 | False | 1 × 1 |").size(), 0u) << r.out;
  const std::string runs = cells[10];
  EXPECT_EQ(std::count(runs.begin(), runs.end(), ','), 4) << runs;  // 3 + 3 runs
  EXPECT_NE(runs.find(" / "), std::string::npos) << runs;

  const std::string& j = run.json;
  JsonChecker check{j};
  EXPECT_TRUE(check.document()) << "invalid JSON near offset " << check.i;
  const auto ratio = json_numbers(j, "ratio");
  const auto row = json_numbers(j, "row_median_ms"), single = json_numbers(j, "single_median_ms");
  ASSERT_EQ(ratio.size(), 1u) << j;
  ASSERT_EQ(row.size(), 1u);
  ASSERT_EQ(single.size(), 1u);
  EXPECT_GT(single[0], 0.0);
  EXPECT_NEAR(ratio[0], row[0] / single[0], 1e-6 * ratio[0]);
  EXPECT_NEAR(std::stod(cells[9]), ratio[0], 0.0005 + 1e-9);
  const auto cpu_ratio = json_numbers(j, "cpu_ratio");
  ASSERT_EQ(cpu_ratio.size(), 1u);
  EXPECT_GT(cpu_ratio[0], 0.0);
  EXPECT_NEAR(std::stod(cells[11]), cpu_ratio[0], 0.0005 + 1e-9);
  // The configuration's, one per row and the comparison's.
  EXPECT_EQ(json_numbers(j, "threads").size(), 1u + 2u + 1u);
  EXPECT_NE(j.find("\"single_latency_ms\": ["), std::string::npos);
  EXPECT_NE(j.find("\"vs_single_rank\": null"), std::string::npos);  // the 1x1 row

  const Result two = run_bench(
      "--degrees 2x1 --threads 1 --seq-len 32 --head-size 8 --nheads 2 --iters 1 --warmup 0 "
      "--vs-single-rank --repeats 2");
  ASSERT_EQ(two.code, 0) << two.err;
  const auto c2 = table_line(two.out, "| zigzag | 32 | 2 | 1 | True | 2 × 1 | 2 |");
  ASSERT_EQ(c2.size(), 12u) << two.out;
  EXPECT_EQ(std::count(c2[10].begin(), c2[10].end(), ','), 2) << c2[10];  // 2 + 2 runs
}

TEST(BenchCli, BadCommandLinesExit2WithOneLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--bogus", "unknown option '--bogus'"},
      {"--seq-len abc", "--seq-len: 'abc' is not an integer"},
      {"--seq-len 1024,", "--seq-len: empty item"},
      {"--degrees 2by4", "--degrees: '2by4' is not ULYSSESxRING"},
      {"--fwd-only maybe", "--fwd-only: 'maybe' is not true, false or both"},
      {"--dtype fp8", "--dtype: 'fp8' is not fp16, bf16 or fp32"},
      {"--iters 0", "--iters: 0 is out of range"},
      {"--iters", "--iters needs a value"},
      {"--preset nope", "--preset: unknown preset 'nope'"},
      {"--backend quantum", "--backend: 'quantum' is not local, mpi, cuda-local or nccl"},
      {"--preset seed --degrees 3x3", "3x3 needs 9 ranks but this run has 8"},
      {"--ring-type zigzag --degrees 2x4 --seq-len 1000",
       "--seq-len: 1000 cannot be split by zigzag over 2x4"},
      {"--degrees 3x1 --seq-len 96", "--nheads: 16 heads cannot be split over ulysses degree 3"},
      {"--seq-len 8388608", "not enough memory for zigzag s=8388608 2x4 fwd"},
      {"--plot out.pdf", "--plot: 'out.pdf' must end in .svg or .png"},
      {"--csv /nonexistent/dir/x.csv", "--csv: cannot write"},
      {"--repeats 0", "--repeats: 0 is out of range"},
      {"--ring-type spiral", "--ring-type: 'spiral' is not basic, stripe, zigzag or allgather"},
      {"--double-ring 3 --degrees 2x4 --seq-len 64",
       "--double-ring: 3 cannot run zigzag over 2x4 (the inner ring size must divide the ring "
       "degree 4)"},
      {"--ring-type allgather --double-ring 2 --degrees 2x4 --seq-len 64",
       "--double-ring: 2 cannot run allgather over 2x4 (allgather gathers K/V in one step"},
      {"--double-ring 0", "--double-ring: 0 is out of range"},
      {"--window 3", "--window: '3' is not LEFT,RIGHT"},
      {"--window -2,0", "--window: -2,0 must hold values >= -1"},
      {"--doc-lengths 64", "--doc-lengths: cu_seqlens needs batch size 1"},
      {"--cu-seqlens 0,10,20 --batch-size 1 --seq-len 64",
       "--cu-seqlens: cu_seqlens must end at the sequence length 64, ends at 20"},
      {"--cu-seqlens 0,x", "--cu-seqlens: 'x' is not an integer"},
      {"--doc-lengths 8 --cu-seqlens 0,64", "--doc-lengths and --cu-seqlens both give"},
  };
  for (const auto& [args, message] : cases) {
    const Result r = run_bench(args);
    EXPECT_EQ(r.code, 2) << args;
    EXPECT_EQ(r.out, "") << args;
    EXPECT_EQ(r.err.rfind("usp-bench: error: ", 0), 0u) << args << ": " << r.err;
    EXPECT_NE(r.err.find(message), std::string::npos) << args << ": " << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << ": " << r.err;
  }
}

// A backend this build or machine lacks exits 2 with the library's reason as the one line.
TEST(BenchBackends, UnavailableBackendExits2WithTheReason) {
  int checked = 0;
  for (const char* backend : {"cuda-local", "nccl", "mpi"}) {
    if (usp::backend_available(backend)) continue;
    ++checked;
    const Result r = run_bench(std::string("--backend ") + backend + " " + kTiny);
    EXPECT_EQ(r.code, 2) << backend << ": " << r.err;
    EXPECT_EQ(r.out, "") << backend;
    EXPECT_EQ(r.err, "usp-bench: error: " + usp::backend_unavailable_reason(backend) + "\n")
        << backend;
  }
  if (checked == 0) GTEST_SKIP() << "every backend is available on this machine";
}

TEST(BenchBackends, CudaLocalWithoutAGpuNamesWhatIsMissing) {
  if (usp::backend_available("cuda-local")) GTEST_SKIP() << "a GPU is available";
  const Result r = run_bench(std::string("--backend cuda-local ") + kTiny);
  EXPECT_EQ(r.code, 2);
  EXPECT_NE(r.err.find("usp-bench: error: backend 'cuda-local' "), std::string::npos) << r.err;
  EXPECT_TRUE(r.err.find("GPU") != std::string::npos || r.err.find("CUDA") != std::string::npos)
      << r.err;
}

TEST(BenchBackends, CpuIsTheLocalBackend) {
  const Result r =
      run_bench(std::string("--backend cpu --degrees 2x2 --seq-len 64 --head-size 16 "
                            "--iters 1 --warmup 0 --threads 1"));
  ASSERT_EQ(r.code, 0) << r.err;
  EXPECT_NE(r.out.find("- backend: local (each row runs ulysses_degree × ring_degree ranks as "
                       "threads of this process; 1 kernel thread per rank)"),
            std::string::npos)
      << r.out;
}

TEST(BenchCli, HelpDocumentsTheFormula) {
  const Result r = run_bench("--help");
  EXPECT_EQ(r.code, 0);
  EXPECT_NE(r.out.find("F = 4·b·s²·h·d, halved when causal"), std::string::npos);
  EXPECT_NE(r.out.find("×3.5 for fwd + bwd"), std::string::npos);
  EXPECT_NE(r.out.find("ranks × threads ≤ cores"), std::string::npos);
  EXPECT_NE(r.out.find("--compare-seed"), std::string::npos);
  EXPECT_NE(r.out.find("--vs-single-rank"), std::string::npos);
  EXPECT_NE(r.out.find("USP_CPU_SLOTS"), std::string::npos);
  EXPECT_NE(r.out.find("USP_CPU_PIN"), std::string::npos);
}

TEST(BenchCli, MemoryRefusalCountsTheKernelScratch) {
  // 2x4 at 8M tokens: each rank's kernel calls need GiBs of scratch on top of its tensors.
  const Result r = run_bench("--seq-len 8388608 --fwd-only false");
  EXPECT_EQ(r.code, 2);
  const std::string mark = " GiB of it kernel scratch";
  const auto at = r.err.find(mark);
  ASSERT_NE(at, std::string::npos) << r.err;
  const auto start = r.err.rfind(' ', at - 1) + 1;
  EXPECT_GT(std::stod(r.err.substr(start, at - start)), 0.5) << r.err;
}

TEST(BenchCli, CompareSeedLeavesOtherProblemsBlank) {
  // A problem that is not the seed's (head size 16) has no seed row to compare with.
  const Result r = run_bench(
      "--ring-type zigzag --degrees 4x2 --seq-len 4096 --head-size 16 "
      "--nheads 4 --batch-size 1 --iters 1 --warmup 0 --compare-seed");
  ASSERT_EQ(r.code, 0) << r.err;
  const auto tables = seed_tables(r.out);
  ASSERT_EQ(tables.size(), 1u);
  ASSERT_EQ(tables[0].rows.size(), 1u);
  ASSERT_EQ(tables[0].rows[0].size(), 12u);  // + speed(GFLOPS), seed latency, ours/seed
  EXPECT_EQ(tables[0].rows[0][10], "-");
  EXPECT_EQ(tables[0].rows[0][11], "-");
  EXPECT_NE(tables[0].header.find("| seed latency(ms/iter) | ours/seed |"), std::string::npos);
}

}  // namespace

namespace usp {
namespace {

TEST(BenchCli, BackwardMinimumCountsTheDkDvBuffersAndMeetsTheTarget) {
  const JsonRun run = run_bench_json(
      "--ring-type zigzag --degrees 2x4,4x2 --seq-len 256 --fwd-only false --head-size 32 "
      "--iters 1 --warmup 1",
      "mem_bwd.json");
  const Result& r = run.r;
  ASSERT_EQ(r.code, 0) << r.err;
  const std::string& text = run.json;
  const auto minimum = json_numbers(text, "min_memory_bytes");
  const auto peak = json_numbers(text, "peak_memory_bytes");
  const auto ring = json_numbers(text, "ring_degree");
  ASSERT_EQ(minimum.size(), 2u);
  ASSERT_EQ(ring.size(), 2u);
  for (std::size_t i = 0; i < 2; ++i) {
    // fp16, b 2, h = hkv = 16, d 32, s 256 on 8 ranks: shards of 32 tokens.
    const double u = 8 / ring[i], shard = 2.0 * 32 * 16 * 32 * 2, lse = 2.0 * 16 * 32 * 4;
    const double kv_ring = 2.0 * (256 / ring[i]) * (16 / u) * 32;  // elements of k (or v)
    const double want = 4 * shard + lse + 2 * 2 * 2 * kv_ring      // q, k, v, out, lse, K/V buffers
                        + 4 * shard                                // dout, dq, dk, dv
                        + 2 * 4 * 2 * kv_ring;                     // fp32 dK/dV buffers in flight
    EXPECT_EQ(minimum[i], want) << "row " << i;
    // The target, plus the CPU kernel's per-call workspace (one kernel thread per rank here),
    // which the rank's allocator counts too; the largest call is a whole ring block.
    const auto len = static_cast<std::int64_t>(256 / ring[i]),
               heads = static_cast<std::int64_t>(16 / u);
    const double kernel =
        static_cast<double>(cpu_kernel_scratch_bytes(true, 2, len, len, heads, heads, 32, 1));
    EXPECT_LE(peak[i], 1.2 * minimum[i] + kernel) << "row " << i;
  }
}

}  // namespace
}  // namespace usp
