// usp-cuda-bench: times the CUDA block kernel, forward and forward+backward, b=2, h=16, fp16,
// causal, on (d=128, s=8192), (d=128, s=32768), (d=16, s=32768) (or one shape from the flags).
// TFLOPS = 4·b·s²·h·d / 2 (causal) per forward, ×3.5 for forward+backward.
// The forward and backward are USP_CUDA_FWD's and USP_CUDA_BWD's (mma when unset), named on the
// "device:" header line.
// Prints one "RESULT <fwd|fwdbwd> d<d> s<s> ms=<ms> tflops=<t>" line per measurement.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "usp/cuda.hpp"
#include "usp/error.hpp"
#include "usp/kernel.hpp"
#include "usp/tensor.hpp"

namespace {

usp::Tensor random_device(const usp::Tensor::Dims& shape, usp::Allocator& dev, unsigned seed) {
  usp::Tensor h = usp::Tensor::empty(shape, usp::DType::f16);
  auto* p = h.data_as<std::uint16_t>();
  std::uint32_t x = seed * 2654435761u + 1;
  for (std::int64_t i = 0; i < h.numel(); ++i) {
    x = x * 1664525u + 1013904223u;
    p[i] = usp::f32_to_f16(static_cast<float>(x >> 8) / 16777216.0f * 2.0f - 1.0f);
  }
  return usp::cuda::to_device(h, dev);
}

template <class F>
double time_ms(F&& f, int reps) {
  f();  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < reps; ++i) f();
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::milli>(t1 - t0).count() / reps;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::pair<int, int>> shapes = {{128, 8192}, {128, 32768}, {16, 32768}};
  int reps = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    if (a == "--shape" && i + 2 < argc) {
      shapes = {{std::atoi(argv[i + 1]), std::atoi(argv[i + 2])}};
      i += 2;
    } else if (a == "--reps" && i + 1 < argc) {
      reps = std::max(1, std::atoi(argv[++i]));
    } else {
      std::fprintf(stderr, "usage: usp-cuda-bench [--shape D S] [--reps N]\n");
      return 2;
    }
  }
  if (!usp::cuda::compiled() || usp::cuda::device_count() == 0) {
    std::printf("usp-cuda-bench: skipped: %s\n", usp::cuda::unavailable_reason().c_str());
    return 77;
  }
  try {
    auto kern = usp::cuda::make_kernel(0);
    // The implementations (USP_CUDA_FWD / USP_CUDA_BWD = wmma|mma) are named on the header line.
    std::printf("device: %s, kernel %s (forward %s, backward %s)\n",
                usp::cuda::device_description(0).c_str(), kern->name().c_str(),
                usp::cuda::default_forward().c_str(), usp::cuda::default_backward().c_str());
    auto dev = usp::cuda::make_allocator(0);
    const int b = 2, h = 16;
    for (auto [d, s] : shapes) {
      auto q = random_device({b, s, h, d}, *dev, 1), k = random_device({b, s, h, d}, *dev, 2),
           v = random_device({b, s, h, d}, *dev, 3), dout = random_device({b, s, h, d}, *dev, 4);
      auto out = usp::Tensor::empty({b, s, h, d}, usp::DType::f16, *dev);
      auto lse = usp::Tensor::empty({b, h, s}, usp::DType::f32, *dev);
      auto dq = usp::Tensor::empty({b, s, h, d}, usp::DType::f32, *dev);
      auto dk = usp::Tensor::empty({b, s, h, d}, usp::DType::f32, *dev);
      auto dv = usp::Tensor::empty({b, s, h, d}, usp::DType::f32, *dev);
      const float scale = 1.0f / std::sqrt(static_cast<float>(d));
      const double flops = 4.0 * b * static_cast<double>(s) * s * h * d / 2.0;
      auto fwd = [&] { kern->forward(q, k, v, usp::MaskMode::causal, scale, out, lse); };
      const double t_f = time_ms(fwd, reps);
      const double t_fb = time_ms(
          [&] {
            fwd();
            kern->backward(q, k, v, out, lse, dout, usp::MaskMode::causal, scale, dq, dk, dv,
                           false);
          },
          reps);
      std::printf("RESULT fwd d%d s%d ms=%.3f tflops=%.1f\n", d, s, t_f, flops / t_f / 1e9);
      std::printf("RESULT fwdbwd d%d s%d ms=%.3f tflops=%.1f\n", d, s, t_fb,
                  3.5 * flops / t_fb / 1e9);
      std::fflush(stdout);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "usp-cuda-bench: %s\n", e.what());
    return 1;
  }
  return 0;
}
