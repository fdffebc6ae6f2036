// usp-plan, tested through the built binary (build/bin/usp-plan, next to this test).
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

namespace {

std::string plan_path() {
  char buf[4096];
  const ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return "usp-plan";
  const std::string exe(buf, static_cast<std::size_t>(n));
  return exe.substr(0, exe.find_last_of('/')) + "/usp-plan";
}

struct Result {
  int rc = -1;
  std::string out;  // stdout and stderr
};

Result run(const std::string& args) {
  Result r;
  FILE* p = popen((plan_path() + " " + args + " 2>&1").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf{};
  std::size_t n = 0;
  while ((n = fread(buf.data(), 1, buf.size(), p)) > 0) r.out.append(buf.data(), n);
  const int status = pclose(p);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

std::vector<std::string> lines(const std::string& s) {
  std::vector<std::string> out;
  std::istringstream in(s);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

TEST(PlanCli, SeedPresetCsvHasOneRowPerSeedRow) {
  const Result r = run("--machine seed --preset seed --csv");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto l = lines(r.out);
  ASSERT_EQ(l.size(), 31u);
  EXPECT_EQ(
      l[0].rfind("ring type,seq_len,ulysses_degree,ring_degree,fwd_only,latency(ms/iter),", 0), 0u);
  EXPECT_EQ(l[1].rfind("basic,4096,2,4,True,", 0), 0u) << l[1];
  EXPECT_EQ(l[19].rfind("zigzag,4096,4,2,True,", 0), 0u) << l[19];
  EXPECT_EQ(l[30].rfind("zigzag,128000,2,4,False,", 0), 0u) << l[30];
  // The seed's latency is the next-to-last column.
  EXPECT_NE(l[30].find(",854.512,"), std::string::npos) << l[30];
}

TEST(PlanCli, RankingTablePerLengthAndMode) {
  const Result r = run("--machine seed --seq-len 4096,128000 --fwd-only both --top 2");
  ASSERT_EQ(r.rc, 0) << r.out;
  for (const char* h : {"## seq_len 4096, forward\n", "## seq_len 4096, forward + backward\n",
                        "## seq_len 128000, forward\n", "## seq_len 128000, forward + backward\n"})
    EXPECT_NE(r.out.find(h), std::string::npos) << h;
  EXPECT_NE(r.out.find("| 2 | "), std::string::npos);
  EXPECT_EQ(r.out.find("| 3 | "), std::string::npos);
  EXPECT_NE(r.out.find("22 feasible configurations"), std::string::npos) << r.out;
}

TEST(PlanCli, RefusedConfigurationsAreCountedAndNamed) {
  // 12 heads: u = 8 cannot split them.
  const Result r = run("--machine seed --nheads 12 --seq-len 4096");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("refused (first: basic s=4096 8x1 fwd: --nheads: 12 heads cannot be split "
                       "over ulysses degree 8 (nheads must be divisible by u))"),
            std::string::npos)
      << r.out;
}

TEST(PlanCli, MachineFileIsReadAndWritten) {
  const std::string path = testing::TempDir() + "usp_plan_machine_" + std::to_string(getpid());
  FILE* f = fopen(path.c_str(), "w");
  ASSERT_NE(f, nullptr);
  fputs("description a test box\np2p 10 5\nkernel 128 50000 1000 0.8 1000 0.9 1000 20\n", f);
  fclose(f);
  const Result r = run("--machine " + path + " --seq-len 8192 --top 1");
  EXPECT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("machine: " + path + " (a test box)"), std::string::npos) << r.out;
  std::remove(path.c_str());
}

TEST(PlanCli, ErrorsNameTheFlagAndTheRule) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--machine seed --ring-type ring",
       "usp-plan: error: --ring-type: 'ring' is not basic, stripe, zigzag or allgather"},
      {"--machine seed --degrees 2x2",
       "usp-plan: error: --degrees: 2x2 needs 4 ranks but this run has 8 (ulysses_degree × "
       "ring_degree must equal --world)"},
      {"--machine seed --check",
       "usp-plan: error: --check: runs the configurations on this machine, which --machine seed "
       "does not describe (use --calibrate or a machine file measured here)"},
      {"--machine seed --calibrate",
       "usp-plan: error: --calibrate: measures this machine; it cannot be combined with "
       "--machine seed"},
      {"--machine nowhere.txt",
       "usp-plan: error: --machine: 'nowhere.txt' is neither 'seed' nor a readable machine file"},
      {"--machine seed --preset seed --seq-len 4096",
       "usp-plan: error: --seq-len: --preset seed fixes the seed's rows and problem (b 2, h 16, d "
       "128, fp16, causal, world 8); leave it out or drop --preset"},
      {"--machine seed --iters 3", "usp-plan: error: --iters: sets --check's runs; add --check"},
      {"--machine seed --placement outer",
       "usp-plan: error: --placement: 'outer' is not ulysses_inner or ring_inner"},
      {"--machine seed --top 0", "usp-plan: error: --top: 0 is out of range (must be 1 to 100000)"},
      {"--machine seed --memory-gib -1",
       "usp-plan: error: --memory-gib: '-1' is not a positive number of GiB"},
      {"--bogus", "usp-plan: error: unknown option '--bogus' (see --help)"},
      {"--fit-seed --csv",
       "usp-plan: error: --fit-seed: takes no other flag (it fits the built-in seed machine to "
       "the seed's table)"},
  };
  for (const auto& [args, message] : cases) {
    const Result r = run(args);
    EXPECT_EQ(r.rc, 2) << args;
    EXPECT_EQ(r.out, message + "\n") << args;
  }
}

TEST(PlanCli, HelpDocumentsEveryFlag) {
  const Result r = run("--help");
  ASSERT_EQ(r.rc, 0);
  for (const char* f :
       {"--machine",  "--calibrate",  "--write-machine", "--memory-gib", "--world",
        "--seq-len",  "--batch-size", "--nheads",        "--kv-heads",   "--head-size",
        "--dtype",    "--causal",     "--no-causal",     "--fwd-only",   "--ring-type",
        "--degrees",  "--placement",  "--double-ring",   "--top",        "--csv",
        "--preset",   "--check",      "--warmup",        "--iters",      "--repeats",
        "--fit-seed", "--help"})
    EXPECT_NE(r.out.find(f), std::string::npos) << f;
}

TEST(PlanCli, MemoryRefusesWhatDoesNotFit) {
  // 4M tokens with backward needs more than 24 GiB per rank on every configuration.
  const Result r = run("--machine seed --seq-len 4194304 --fwd-only false --csv");
  ASSERT_EQ(r.rc, 0) << r.out;
  const auto l = lines(r.out);
  ASSERT_GT(l.size(), 1u);
  for (std::size_t i = 1; i < l.size(); ++i)
    EXPECT_NE(l[i].find("not enough memory for "), std::string::npos) << l[i];
  const Result ok =
      run("--machine seed --seq-len 4194304 --fwd-only false --csv --memory-gib 4096");
  EXPECT_EQ(ok.out.find("not enough memory"), std::string::npos);
}

TEST(PlanCli, CalibrateWritesAMachineAndCheckRunsTheBest) {
  // A tiny problem and one configuration (whatever this machine's rates, it is the best): the
  // calibration (its kernel calls are sized by flops) and one run, a few seconds.
  const std::string path = testing::TempDir() + "usp_plan_calibrated_" + std::to_string(getpid());
  const Result r =
      run("--calibrate --write-machine " + path +
          " --seq-len 64 --head-size 16 --nheads 8 --world 4 --degrees 4x1 --ring-type basic "
          "--check --top 2 "
          "--repeats 1 --warmup 0 --iters 1");
  ASSERT_EQ(r.rc, 0) << r.out;
  EXPECT_NE(r.out.find("calibrate: forward full 128x128: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("machine: this machine (calibrated)"), std::string::npos);
  EXPECT_NE(r.out.find("## --check: predicted against measured on this machine (local ranks, "
                       "warm-up 0, 1 iteration, median of 1 round-robin repeat)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("| 1 | basic s=64 4x1 fwd | "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("| | measured fastest: predicted #"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("During these runs the process got "), std::string::npos) << r.out;
  // The written machine reads back.
  const Result again = run("--machine " + path +
                           " --seq-len 64 --head-size 16 --nheads 8 "
                           "--world 4 --top 1");
  EXPECT_EQ(again.rc, 0) << again.out;
  EXPECT_NE(again.out.find("| 1 | basic | 4 | 1 | "), std::string::npos) << again.out;
  std::remove(path.c_str());
}

}  // namespace
