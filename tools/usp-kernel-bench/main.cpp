// usp-kernel-bench: the CPU block kernel's rate against a oneDNN matmul's, in one process.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <string>
#include <thread>
#include <vector>

#include "host_info.hpp"
#include "matmul.hpp"
#include "options.hpp"
#include "report.hpp"
#include "usp/cpu.hpp"
#include "usp/error.hpp"
#include "usp/kernel.hpp"
#include "usp/tensor.hpp"

namespace kbench {
namespace {

using clock_type = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Uniform values in [-1, 1) from a xorshift generator (fast enough for a billion elements).
void fill_random(usp::Tensor& t, std::uint64_t seed) {
  std::uint64_t x = seed * 0x9e3779b97f4a7c15ull + 1;
  constexpr std::size_t kChunk = 4096;
  std::vector<float> buf(kChunk);
  const std::size_t n = static_cast<std::size_t>(t.numel());
  char* dst = static_cast<char*>(t.data());
  const std::size_t esize = usp::dtype_size(t.dtype());
  for (std::size_t i = 0; i < n; i += kChunk) {
    const std::size_t m = std::min(kChunk, n - i);
    for (std::size_t j = 0; j < m; ++j) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      buf[j] = static_cast<float>(x >> 40) * (2.0f / 16777216.0f) - 1.0f;
    }
    usp::convert(buf.data(), usp::DType::f32, dst + i * esize, t.dtype(), m);
  }
}

template <class F>
double seconds_of(F&& f, int iters) {
  const auto t0 = clock_type::now();
  for (int i = 0; i < iters; ++i) f();
  return std::chrono::duration<double>(clock_type::now() - t0).count() / iters;
}

struct Tensors {
  usp::Tensor q, k, v, out, lse, dout, dq, dk, dv;
};

Tensors make_tensors(const Options& o, int d, std::int64_t s, usp::DType t, bool need_bwd) {
  Tensors x;
  const usp::Tensor::Dims shape{o.batch, s, o.heads, d};
  x.q = usp::Tensor::empty(shape, t);
  x.k = usp::Tensor::empty(shape, t);
  x.v = usp::Tensor::empty(shape, t);
  x.out = usp::Tensor::empty(shape, t);
  x.lse = usp::Tensor::empty({o.batch, o.heads, s}, usp::DType::f32);
  fill_random(x.q, 1);
  fill_random(x.k, 2);
  fill_random(x.v, 3);
  if (need_bwd) {
    x.dout = usp::Tensor::empty(shape, t);
    fill_random(x.dout, 4);
    x.dq = usp::Tensor::empty(shape, usp::DType::f32);
    x.dk = usp::Tensor::empty(shape, usp::DType::f32);
    x.dv = usp::Tensor::empty(shape, usp::DType::f32);
  }
  return x;
}

void print_header(const Options& o, int threads, const usp::AttentionKernel& kernel,
                  MatmulRef& mm) {
  const usp::CpuFeatures& f = usp::cpu_features();
  const char* forced = std::getenv("USP_CPU_PATH");
  const usp::CpuPath path = usp::cpu_path();
  std::cout << "# usp-kernel-bench\n\n";
  std::cout << "- CPU: " << cpu_model() << ", " << std::thread::hardware_concurrency()
            << " hardware threads; " << threads << " used\n";
  std::cout << "- ISA (cpuid + OS): " << usp::cpu_features_string(f) << "\n";
  std::cout << "- AMX: "
            << (f.amx_tile       ? "usable (OS permission granted)"
                : f.amx_in_cpuid ? "in cpuid but not usable (OS refused the tile state)"
                                 : "absent")
            << "\n";
  std::cout << "- dispatch: " << usp::cpu_path_name(path)
            << (forced != nullptr && *forced != '\0'
                    ? std::string(" (USP_CPU_PATH=") + forced + ")"
                    : std::string(" (best available; USP_CPU_PATH unset)"))
            << "; kernel: " << kernel.name() << "\n";
  if (kernel.name().find(usp::cpu_path_name(path)) == std::string::npos)
    std::cout
        << "- note: the kernel runs another path than the dispatch selects (it lacks that path "
           "or does not follow USP_CPU_PATH)\n";
  if (mm.available()) {
    std::cout << "- matmul reference: " << mm.describe() << "\n";
    for (usp::DType t : o.dtypes) {
      std::cout << "  - " << usp::dtype_name(t) << ": ";
      if (mm.supports(t))
        std::cout << mm.impl(t) << "\n";
      else
        std::cout << "n/a in this oneDNN; compared with the " << usp::dtype_name(o.fp16_ref)
                  << " rate (" << mm.impl(o.fp16_ref) << ")\n";
    }
  } else {
    std::cout << "- matmul reference: " << mm.describe() << "\n";
  }
  std::cout << "- problem: b=" << o.batch << " h=" << o.heads << " s=";
  bool first = true;
  for (int d : o.head_sizes) {
    std::cout << (first ? "" : ", ") << o.seq_for(d) << " (d=" << d << ")";
    first = false;
  }
  std::cout << "; reference matmuls: " << o.square << "³ and M=s K=d N=" << o.shaped_n << "\n";
  std::cout << "- timing: median of " << o.repeats << " repeats x " << o.iters << " iters after "
            << o.warmup << " warmup; load average at start: " << load_average() << "\n\n";
  std::cout << "GFLOPS = 4·b·s²·h·d / time (causal: half; bwd: 2.5x fwd). ratio = attention / "
               "matmul (the faster of the two reference shapes).\n\n";
}

int run(const Options& o) {
  const int threads = o.threads > 0
                          ? o.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  if (o.path) ::setenv("USP_CPU_PATH", o.path->c_str(), 1);
  // Ratios compare like with like: the AVX2 kernel against an AVX2 matmul (read by oneDNN when
  // it first dispatches, so before the reference is made).
  if (o.path && *o.path == "avx2") ::setenv("DNNL_MAX_CPU_ISA", "AVX2", 0);
  (void)usp::cpu_path();  // a forced path the CPU lacks fails here, before any work
  auto kernel = usp::make_cpu_kernel(threads);
  auto mm = o.no_matmul ? make_no_matmul_ref("skipped (--no-matmul)") : make_matmul_ref(threads);
  print_header(o, threads, *kernel, *mm);

  std::ofstream csv;
  if (!o.csv.empty()) {
    csv.open(o.csv);
    if (!csv) USP_FAIL(io, "--csv: cannot open '", o.csv, "' for writing");
    csv << csv_header();
  }
  std::cout << markdown_header() << std::flush;

  std::vector<Row> rows;
  const double mm_min_seconds = o.quick ? 0.01 : 0.2;
  const bool want_bwd = std::find(o.passes.begin(), o.passes.end(), Pass::bwd) != o.passes.end();
  for (int d : o.head_sizes) {
    const std::int64_t s = o.seq_for(d);
    const float scale = 1.0f / std::sqrt(static_cast<float>(d));
    for (usp::DType t : o.dtypes) {
      Tensors x = make_tensors(o, d, s, t, want_bwd);
      usp::DType mdt = t;
      if (mm->available() && !mm->supports(t)) mdt = o.fp16_ref;
      const MatmulShape square{o.square, o.square, o.square};
      const MatmulShape shaped{s, o.shaped_n, d};
      for (usp::MaskMode mask : o.masks) {
        bool have_fwd = false;
        for (Pass pass : o.passes) {
          auto call = [&] {
            if (pass == Pass::fwd)
              kernel->forward(x.q, x.k, x.v, mask, scale, x.out, x.lse);
            else
              kernel->backward(x.q, x.k, x.v, x.out, x.lse, x.dout, mask, scale, x.dq, x.dk, x.dv,
                               false);
          };
          if (pass == Pass::bwd && !have_fwd)
            kernel->forward(x.q, x.k, x.v, mask, scale, x.out, x.lse);
          for (int w = 0; w < o.warmup; ++w) call();
          std::vector<double> att, sq, sh;
          for (int r = 0; r < o.repeats; ++r) {
            if (auto sec = mm->seconds(mdt, square, mm_min_seconds)) sq.push_back(*sec);
            if (auto sec = mm->seconds(mdt, shaped, mm_min_seconds)) sh.push_back(*sec);
            att.push_back(seconds_of(call, o.iters));
          }
          if (pass == Pass::fwd) have_fwd = true;

          Row row;
          row.d = d;
          row.dtype = t;
          row.mask = mask;
          row.pass = pass;
          row.b = o.batch;
          row.s = s;
          row.h = o.heads;
          row.threads = threads;
          row.seconds = median(att);
          row.gflops = attention_flops(o.batch, s, o.heads, d, mask, pass) / row.seconds / 1e9;
          if (!sq.empty()) row.square_gflops = square.flops() / median(sq) / 1e9;
          if (!sh.empty()) row.shaped_gflops = shaped.flops() / median(sh) / 1e9;
          row.matmul_dtype = mdt;
          row.matmul_substituted = mdt != t;
          std::cout << markdown_row(row) << std::flush;
          rows.push_back(row);
          if (csv) csv << csv_row(row, kernel->name()) << std::flush;
        }
      }
    }
  }
  if (mm->available()) {
    std::cout << "\nReference matmuls (medians, measured between the kernel's repeats):\n\n"
              << matmul_header(o.square, o.shaped_n);
    for (const Row& r : rows) std::cout << matmul_row(r);
  }
  std::cout << "\nload average at end: " << load_average() << "\n";
  return 0;
}

}  // namespace
}  // namespace kbench

int main(int argc, char** argv) {
  std::vector<std::string> args(argv + 1, argv + argc);
  kbench::Options opts;
  try {
    opts = kbench::parse_options(args);
  } catch (const kbench::UsageError& e) {
    std::cerr << "usp-kernel-bench: " << e.what()
              << "\nRun 'usp-kernel-bench --help' for the flags.\n";
    return 2;
  }
  if (opts.help) {
    std::cout << kbench::help_text();
    return 0;
  }
  try {
    return kbench::run(opts);
  } catch (const usp::Error& e) {
    std::cerr << "usp-kernel-bench: error: " << e.what() << "\n";
    return 1;
  } catch (const std::exception& e) {
    std::cerr << "usp-kernel-bench: unexpected error: " << e.what() << "\n";
    return 1;
  }
}
