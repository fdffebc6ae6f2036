// End-to-end checks of the usp-attn tool: random .npy inputs → the built binary → results
// compared with the float64 reference; bad inputs exit with status 2 and one stderr line.
#include <fcntl.h>
#include <gtest/gtest.h>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include "../../tools/common/flags.hpp"

#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "kernel/reference/reference.hpp"
#include "usp/backend.hpp"
#include "usp/error.hpp"
#include "usp/kernel.hpp"
#include "usp/npy.hpp"
#include "usp/tensor.hpp"

extern char** environ;

namespace usp {
namespace {

namespace fs = std::filesystem;

// The tool is built next to the test executable (build/bin); USP_ATTN_BIN overrides.
fs::path tool_path() {
  if (const char* env = std::getenv("USP_ATTN_BIN"); env != nullptr && *env != '\0') return env;
  std::error_code ec;
  const fs::path self = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return {};
  return self.parent_path() / "usp-attn";
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

struct RunResult {
  int status = -1;  // exit status, or -1 when the process did not exit normally
  std::string out, err;
};

class UspAttnToolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    tool_ = tool_path();
    if (tool_.empty() || !fs::exists(tool_)) {
      GTEST_SKIP() << "usp-attn binary not found at '" << tool_.string()
                   << "' (build the usp-attn target, or set USP_ATTN_BIN)";
    }
    static int counter = 0;
    dir_ = fs::temp_directory_path() /
           ("usp_attn_tool_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (dir_.empty()) return;
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  RunResult run(const std::vector<std::string>& args) const {
    std::vector<std::string> argv_s = {tool_.string()};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string out_file = path("stdout.txt"), err_file = path("stderr.txt");
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 1, out_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&fa, 2, err_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid_t pid = 0;
    const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    RunResult r;
    if (rc != 0) {
      ADD_FAILURE() << "posix_spawn failed: " << std::strerror(rc);
      return r;
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.out = slurp(out_file);
    r.err = slurp(err_file);
    return r;
  }

  // Random normal values written as float32 (or float64) .npy; returns what the tool will read.
  Tensor write_random(const std::string& name, const Tensor::Dims& shape, bool f64) {
    std::normal_distribution<double> dist(0.0, 1.0);
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    std::vector<double> v(static_cast<std::size_t>(n));
    for (auto& x : v) x = dist(rng_);
    if (f64) {
      write_npy_f64(path(name), shape, v);
    } else {
      Tensor t = Tensor::empty(shape, DType::f32);
      for (std::size_t i = 0; i < v.size(); ++i) t.data_as<float>()[i] = static_cast<float>(v[i]);
      write_npy(path(name), t);
    }
    return read_npy(path(name));
  }

  // Asserts status 2, empty stdout, and exactly one stderr line "usp-attn: error: ..." holding
  // `fragment`.
  void expect_usage_error(const std::vector<std::string>& args, const std::string& fragment) {
    const RunResult r = run(args);
    EXPECT_EQ(r.status, 2) << r.err;
    EXPECT_EQ(r.out, "");
    EXPECT_EQ(r.err.rfind("usp-attn: error: ", 0), 0u) << r.err;
    ASSERT_FALSE(r.err.empty());
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << "more than one line: " << r.err;
    EXPECT_NE(r.err.find(fragment), std::string::npos) << r.err;
  }

  fs::path tool_, dir_;
  unsigned seed_ = std::random_device{}();
  std::mt19937 rng_{seed_};
};

void expect_close(const std::string& file, const std::vector<std::int64_t>& shape,
                  const std::vector<double>& ref, double tol) {
  const NpyArray a = read_npy_f64(file);
  EXPECT_EQ(a.descr, "<f4") << file;
  ASSERT_EQ(a.shape, shape) << file;
  const double err = relative_error(a.data, ref);
  EXPECT_LE(err, tol) << file;
}

struct Config {
  const char* ring_type;
  int ulysses, ring;
  bool causal;
  const char* dtype;
  std::int64_t b, s, h, hkv, d;
  bool f64_inputs;
  double tol_out, tol_grad;
  int double_ring = 0;
  const char* window = nullptr;      // --window
  const char* cu_seqlens = nullptr;  // --cu-seqlens
};

void PrintTo(const Config& c, std::ostream* os) {
  *os << c.ring_type << " " << c.ulysses << "x" << c.ring << (c.causal ? " causal " : " full ")
      << c.dtype << " b" << c.b << " s" << c.s << " h" << c.h << "/" << c.hkv << " d" << c.d
      << (c.double_ring ? " double ring " + std::to_string(c.double_ring) : std::string());
}

class UspAttnToolMatch : public UspAttnToolTest, public ::testing::WithParamInterface<Config> {};

TEST_P(UspAttnToolMatch, OutputsMatchReference) {
  const Config c = GetParam();
  SCOPED_TRACE("seed " + std::to_string(seed_));
  const Tensor q = write_random("q.npy", {c.b, c.s, c.h, c.d}, c.f64_inputs);
  const Tensor k = write_random("k.npy", {c.b, c.s, c.hkv, c.d}, c.f64_inputs);
  const Tensor v = write_random("v.npy", {c.b, c.s, c.hkv, c.d}, c.f64_inputs);
  const Tensor dout = write_random("dout.npy", {c.b, c.s, c.h, c.d}, c.f64_inputs);
  const std::string out_dir = path("results/nested");
  std::vector<std::string> args = {"--q",         path("q.npy"),
                                   "--k",         path("k.npy"),
                                   "--v",         path("v.npy"),
                                   "--dout",      path("dout.npy"),
                                   "--ulysses",   std::to_string(c.ulysses),
                                   "--ring",      std::to_string(c.ring),
                                   "--ring-type", c.ring_type,
                                   "--dtype",     c.dtype,
                                   "--threads",   "1",
                                   "--out-dir",   out_dir};
  if (c.causal) args.push_back("--causal");
  if (c.double_ring) args.insert(args.end(), {"--double-ring", std::to_string(c.double_ring)});
  if (c.window) args.insert(args.end(), {"--window", c.window});
  if (c.cu_seqlens) args.insert(args.end(), {"--cu-seqlens", c.cu_seqlens});
  const RunResult r = run(args);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_NE(r.out.find(c.ring_type), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << r.out;

  // The reference sees the inputs rounded to --dtype, as the tool does.
  const DType dt = parse_dtype(c.dtype);
  const Tensor qr = to_dtype(q, dt), kr = to_dtype(k, dt), vr = to_dtype(v, dt);
  const Tensor dr = to_dtype(dout, dt);
  BlockMask mask = c.causal ? MaskMode::causal : MaskMode::none;
  if (c.window || c.cu_seqlens) {
    AttentionMask m{c.causal, {}, {}};
    if (c.window) {
      EXPECT_EQ(tools::parse_window("--window", c.window, m.window), "");
    }
    if (c.cu_seqlens) {
      EXPECT_EQ(tools::parse_int64_list("--cu-seqlens", c.cu_seqlens, m.cu_seqlens), "");
    }
    mask = BlockMask(std::make_shared<const AttentionMask>(m), Positions{}, Positions{});
  }
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));
  const auto fwd = reference::forward(qr, kr, vr, mask, scale);
  const auto bwd = reference::backward(qr, kr, vr, dr, mask, scale);
  const std::vector<std::int64_t> qs = {c.b, c.s, c.h, c.d}, ks = {c.b, c.s, c.hkv, c.d};
  expect_close(out_dir + "/out.npy", qs, fwd.out, c.tol_out);
  expect_close(out_dir + "/lse.npy", {c.b, c.h, c.s}, fwd.lse, c.tol_out);
  expect_close(out_dir + "/dq.npy", qs, bwd.dq, c.tol_grad);
  expect_close(out_dir + "/dk.npy", ks, bwd.dk, c.tol_grad);
  expect_close(out_dir + "/dv.npy", ks, bwd.dv, c.tol_grad);
}

INSTANTIATE_TEST_SUITE_P(
    UspAttnTool, UspAttnToolMatch,
    ::testing::Values(Config{"zigzag", 2, 2, true, "fp32", 2, 24, 4, 4, 16, false, 1e-5, 1e-4},
                      Config{"stripe", 1, 4, false, "fp32", 1, 20, 4, 2, 8, true, 1e-5, 1e-4},
                      Config{"basic", 2, 3, true, "fp32", 1, 18, 6, 2, 8, false, 1e-5, 1e-4},
                      Config{"zigzag", 4, 1, true, "bf16", 1, 16, 4, 1, 16, true, 2e-2, 2e-2},
                      Config{"allgather", 2, 2, true, "fp32", 1, 24, 4, 2, 8, false, 1e-5, 1e-4},
                      Config{"stripe", 1, 4, true, "fp32", 1, 24, 2, 2, 8, true, 1e-5, 1e-4, 2},
                      Config{"zigzag", 2, 2, true, "fp32", 1, 24, 4, 2, 8, false, 1e-5, 1e-4, 0,
                             "5,0", "0,1,7,13,24"},
                      Config{"basic", 1, 3, false, "fp32", 1, 18, 2, 1, 8, true, 1e-5, 1e-4, 0,
                             "4,2", nullptr}));

TEST_F(UspAttnToolTest, ForwardOnlyWritesNoGradients) {
  const Tensor q = write_random("q.npy", {1, 8, 2, 4}, false);
  const Tensor k = write_random("k.npy", {1, 8, 2, 4}, false);
  write_random("v.npy", {1, 8, 2, 4}, false);
  const RunResult r = run({"--q", path("q.npy"), "--k", path("k.npy"), "--v", path("v.npy"),
                           "--softmax-scale=0.75", "--ring=2", "--out-dir", path("o")});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(fs::exists(path("o/out.npy")));
  EXPECT_TRUE(fs::exists(path("o/lse.npy")));
  EXPECT_FALSE(fs::exists(path("o/dq.npy")));
  // The explicit scale is honoured.
  const auto fwd = reference::forward(q, k, read_npy(path("v.npy")), MaskMode::none, 0.75);
  EXPECT_LE(relative_error(read_npy_f64(path("o/lse.npy")).data, fwd.lse), 1e-5);
}

TEST_F(UspAttnToolTest, HelpExitsZero) {
  const RunResult r = run({"--help"});
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("usage: usp-attn"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("--ring-type"), std::string::npos) << r.out;
}

class UspAttnToolErrors : public UspAttnToolTest {
 protected:
  void SetUp() override {
    UspAttnToolTest::SetUp();
    if (IsSkipped()) return;
    write_random("q.npy", {1, 12, 4, 8}, false);
    write_random("k.npy", {1, 12, 2, 8}, false);
    write_random("v.npy", {1, 12, 2, 8}, false);
  }
  std::vector<std::string> base() const {
    return {"--q", path("q.npy"), "--k",       path("k.npy"),
            "--v", path("v.npy"), "--out-dir", path("o")};
  }
  std::vector<std::string> base_with(std::vector<std::string> extra) const {
    auto a = base();
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
};

TEST_F(UspAttnToolErrors, MalformedNpy) {
  std::ofstream(path("bad.npy"), std::ios::binary) << "\x93NUMPY\x01\x00\x10\x00{'descr': '<f4'";
  auto a = base();
  a[1] = path("bad.npy");
  expect_usage_error(a, "npy file '" + path("bad.npy") + "'");
  std::ofstream(path("text.npy"), std::ios::binary) << "not an array";
  a[1] = path("text.npy");
  expect_usage_error(a, "magic");
  a[1] = path("missing.npy");
  expect_usage_error(a, "cannot open");
  EXPECT_FALSE(fs::exists(path("o/out.npy")));
}

TEST_F(UspAttnToolErrors, ShapeMismatch) {
  write_random("v_bad.npy", {1, 12, 2, 4}, false);
  auto a = base();
  a[5] = path("v_bad.npy");
  expect_usage_error(a, "--v shape [1, 12, 2, 4] differs from --k shape [1, 12, 2, 8]");
  write_random("k3.npy", {1, 12, 3, 8}, false);
  write_random("v3.npy", {1, 12, 3, 8}, false);
  a = base();
  a[3] = path("k3.npy");
  a[5] = path("v3.npy");
  expect_usage_error(a, "not a multiple of the 3 key/value heads");
  write_random("q3.npy", {1, 12, 8}, false);
  a = base();
  a[1] = path("q3.npy");
  expect_usage_error(a, "expected 4 dimensions");
  write_random("dout.npy", {1, 12, 4, 4}, false);
  expect_usage_error(base_with({"--dout", path("dout.npy")}), "--dout shape");
}

TEST_F(UspAttnToolErrors, ImpossibleConfigurations) {
  expect_usage_error(base_with({"--ulysses", "5"}),
                     "seq_len 12 is not divisible by ulysses·ring = 5");
  expect_usage_error(base_with({"--ring", "4", "--ring-type", "zigzag"}),
                     "seq_len 12 is not divisible by 2·ulysses·ring = 8");
  expect_usage_error(base_with({"--ulysses", "3"}),
                     "--ulysses 3 does not divide the 4 query heads");
  expect_usage_error(base_with({"--dtype", "int8"}), "--dtype");
  expect_usage_error(base_with({"--ring-type", "spiral"}), "'spiral'");
  expect_usage_error(base_with({"--cu-seqlens", "0,5,9"}),
                     "cu_seqlens must end at the sequence length 12, ends at 9");
  expect_usage_error(base_with({"--window", "3"}), "--window: '3' is not LEFT,RIGHT");
  expect_usage_error(base_with({"--ring", "4", "--double-ring", "3"}),
                     "--double-ring 3 must divide --ring 4");
  expect_usage_error(base_with({"--ring", "2", "--ring-type", "allgather", "--double-ring", "1"}),
                     "--double-ring 1 does not apply to --ring-type allgather");
  expect_usage_error(base_with({"--ring", "0"}), "--ring 0 must be in [1,");
  expect_usage_error(base_with({"--backend", "spiral"}), "--backend 'spiral' is unknown");
  if (!usp::backend_available("cuda-local"))
    expect_usage_error(base_with({"--backend", "cuda-local"}),
                       usp::backend_unavailable_reason("cuda-local"));
}

// --check-finite refuses a NaN naming the tensor, the rank and the index in its shard (token 5
// of 12 is rank 0's sixth on a basic ring of 2); without it the NaN shows in the output.
TEST_F(UspAttnToolErrors, CheckFiniteNamesTheValue) {
  Tensor k = read_npy(path("k.npy"));
  *static_cast<float*>(k.ptr({0, 5, 1, 3})) = std::nanf("");
  write_npy(path("k_nan.npy"), k);
  auto a = base_with({"--ring", "2", "--causal"});
  a[3] = path("k_nan.npy");
  auto checked = a;
  checked.push_back("--check-finite");
  expect_usage_error(checked, "check_finite: k holds NaN at [0, 5, 1, 3] on rank 0");
  const RunResult r = run(a);
  ASSERT_EQ(r.status, 0) << r.err;
  bool any_nan = false;
  for (double x : read_npy_f64(path("o/out.npy")).data) any_nan = any_nan || std::isnan(x);
  EXPECT_TRUE(any_nan);
}

TEST_F(UspAttnToolErrors, BadCommandLines) {
  expect_usage_error(base_with({"--frobnicate"}), "unknown option '--frobnicate'");
  expect_usage_error({"--q", path("q.npy"), "--k", path("k.npy"), "--v", path("v.npy")},
                     "missing required option --out-dir");
  expect_usage_error(base_with({"--ulysses"}), "--ulysses needs a value");
  expect_usage_error(base_with({"--ulysses", "2x"}), "--ulysses '2x' is not an integer");
  expect_usage_error(base_with({"--causal", "--causal"}), "--causal is given more than once");
  expect_usage_error(base_with({"stray"}), "unexpected argument 'stray'");
  expect_usage_error(base_with({"--softmax-scale", "nan"}), "--softmax-scale");
}

}  // namespace
}  // namespace usp
