// Runs the built usp-kernel-bench (next to usp_tests in build/bin) on tiny cases.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace {

namespace fs = std::filesystem;

struct RunResult {
  int status = -1;     // exit code, or -1 when the process did not exit normally
  std::string output;  // stdout and stderr together
};

fs::path bench_binary() {
  return fs::read_symlink("/proc/self/exe").parent_path() / "usp-kernel-bench";
}

// Runs the tool with the given argument strings (joined by spaces; shell syntax allowed).
RunResult run_bench(std::initializer_list<std::string_view> parts) {
  std::string args;
  for (std::string_view p : parts) {
    args += p;
    args += ' ';
  }
  RunResult r;
  const fs::path bin = bench_binary();
  if (!fs::exists(bin)) {
    r.output = "missing binary " + bin.string();
    return r;
  }
  std::string cmd = "'";  // built by appending: GCC 12 warns falsely on chained operator+
  cmd += bin.string();
  cmd += "' ";
  cmd += args;
  cmd += " 2>&1";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  if (pipe == nullptr) {
    r.output = "popen failed for: " + cmd;
    return r;
  }
  char buf[4096];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, pipe)) > 0) r.output.append(buf, n);
  const int st = ::pclose(pipe);
  r.status = (st != -1 && WIFEXITED(st)) ? WEXITSTATUS(st) : -1;
  return r;
}

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// The attention GFLOPS cell of the table row that starts with `prefix`; -1 when absent.
double gflops_of(const std::string& out, const std::string& prefix) {
  const auto at = out.find(prefix);
  if (at == std::string::npos) return -1;
  std::istringstream cell(out.substr(at + prefix.size()));
  double v = -1;
  cell >> v;
  return v;
}

// The run exited with `status` and its output holds every one of `present` and none of `absent`.
void expect_run(const RunResult& r, int status, std::initializer_list<const char*> present,
                std::initializer_list<const char*> absent = {}) {
  EXPECT_EQ(r.status, status) << r.output;
  for (const char* p : present) EXPECT_TRUE(contains(r.output, p)) << p << "\n" << r.output;
  for (const char* a : absent) EXPECT_FALSE(contains(r.output, a)) << a << "\n" << r.output;
}

constexpr const char* kTiny = "--quick --seq-len 64 --nheads 2 --batch-size 1 --threads 1";

TEST(KernelBench, QuickRunPrintsHeaderAndTable) {
  const RunResult r = run_bench({kTiny, "--head-size 16 --dtype fp32,bf16 --fwd-only"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output,
                       "| d | dtype | mask | pass | attention GFLOPS | matmul GFLOPS | "
                       "ratio |"))
      << r.output;
  EXPECT_TRUE(contains(r.output, "- CPU: ")) << r.output;
  EXPECT_TRUE(contains(r.output, "- ISA (cpuid + OS): ")) << r.output;
  EXPECT_TRUE(contains(r.output, "- dispatch: ")) << r.output;
  EXPECT_TRUE(contains(r.output, "; kernel: cpu")) << r.output;
  EXPECT_TRUE(contains(r.output, "- matmul reference: oneDNN") ||
              contains(r.output, "- matmul reference: unavailable (oneDNN not found)"))
      << r.output;
  for (const char* row : {"| 16 | fp32 | full | fwd | ", "| 16 | fp32 | causal | fwd | ",
                          "| 16 | bf16 | full | fwd | ", "| 16 | bf16 | causal | fwd | "}) {
    EXPECT_GT(gflops_of(r.output, row), 0.0) << row << "\n" << r.output;
  }
  EXPECT_FALSE(contains(r.output, "| bwd |")) << r.output;
  if (contains(r.output, "- matmul reference: oneDNN")) {  // both reference shapes are listed
    EXPECT_TRUE(contains(r.output, "| matmul dtype | 256³ GFLOPS | M=s K=d N=512 GFLOPS |"))
        << r.output;
    // Every row was measured against a matmul: bf16's own where oneDNN has one on this CPU (it
    // needs AVX-512), else the --fp16-ref substitute (fp32), which the header then names.
    for (const char* row :
         {"| 16 | fp32 | full | fwd | fp32 | ", "| 16 | fp32 | causal | fwd | fp32 | "})
      EXPECT_GT(gflops_of(r.output, row), 0.0) << row << "\n" << r.output;
    if (contains(r.output, "  - bf16: n/a in this oneDNN")) {
      EXPECT_GT(gflops_of(r.output, "| 16 | bf16 | causal | fwd | fp32 | "), 0.0) << r.output;
    } else {
      EXPECT_GT(gflops_of(r.output, "| 16 | bf16 | causal | fwd | bf16 | "), 0.0) << r.output;
    }
  }
}

TEST(KernelBench, BackwardAndFp16Rows) {
  const RunResult r = run_bench({kTiny, "--head-size 32 --dtype fp16 --bwd-only --causal"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_GT(gflops_of(r.output, "| 32 | fp16 | causal | bwd | "), 0.0) << r.output;
  EXPECT_FALSE(contains(r.output, "| full |")) << r.output;
  EXPECT_FALSE(contains(r.output, "| fwd |")) << r.output;
}

TEST(KernelBench, WritesCsv) {
  std::string path = ::testing::TempDir();
  path += "kbench_";
  path += std::to_string(::getpid());
  path += ".csv";
  const RunResult r = run_bench({kTiny, "--head-size 16,64 --dtype fp32 --no-causal --csv", path});
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream in(path);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  std::remove(path.c_str());
  ASSERT_EQ(lines.size(), 5u) << r.output;  // header + d{16,64} x {fwd,bwd}
  EXPECT_EQ(lines[0].rfind("d,dtype,mask,pass,b,s,h,threads,seconds,attention_gflops,", 0), 0u);
  EXPECT_EQ(lines[1].rfind("16,fp32,full,fwd,1,64,2,1,", 0), 0u) << lines[1];
  EXPECT_EQ(lines[4].rfind("64,fp32,full,bwd,1,64,2,1,", 0), 0u) << lines[4];
}

TEST(KernelBench, ForcedGenericPathIsReported) {
  const RunResult r =
      run_bench({kTiny, "--head-size 16 --dtype fp32 --fwd-only --no-causal --path generic"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "- dispatch: generic (USP_CPU_PATH=generic)")) << r.output;
}

TEST(KernelBench, NoMatmulSkipsTheReference) {
  const RunResult r =
      run_bench({kTiny, "--head-size 16 --dtype bf16 --fwd-only --causal --no-matmul"});
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "- matmul reference: skipped (--no-matmul)")) << r.output;
  EXPECT_GT(gflops_of(r.output, "| 16 | bf16 | causal | fwd | "), 0.0) << r.output;
  EXPECT_TRUE(contains(r.output, " | n/a | n/a |")) << r.output;
}

TEST(KernelBench, HelpExitsZero) {
  expect_run(run_bench({"--help"}), 0,
             {"Usage: usp-kernel-bench", "Thread policy:", "--head-size"});
}

TEST(KernelBench, UnknownFlagExitsTwo) {
  expect_run(run_bench({"--quick --bogus"}), 2, {"unknown flag '--bogus'", "--help"},
             {"| d | dtype |"});
}

TEST(KernelBench, BadValuesExitTwo) {
  struct Case {
    const char* args;
    const char* message;
  };
  for (const Case& c : {Case{"--head-size 0", "--head-size must be in [1, 256], got 0"},
                        Case{"--head-size 300", "--head-size must be in [1, 256], got 300"},
                        Case{"--dtype fp8", "--dtype: unknown dtype 'fp8'"},
                        Case{"--threads two", "--threads expects an integer, got 'two'"},
                        Case{"--iters", "--iters needs a value"},
                        Case{"--path sse", "--path: unknown path 'sse'"}}) {
    const RunResult r = run_bench({c.args});
    EXPECT_EQ(r.status, 2) << c.args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, c.message)) << c.args << "\n" << r.output;
  }
}

}  // namespace
