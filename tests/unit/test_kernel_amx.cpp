// The AMX (bf16 tile) path of the CPU kernel: bf16 inputs on a CPU whose dispatch is amx. Every
// case compares with the float64 reference at the bf16 tolerances of the other kernel tests; the
// suite skips where the CPU (or the OS) gives no AMX, and where USP_CPU_PATH forces another path.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <limits>
#include <random>
#include <string>
#include <tuple>

#include "kernel/reference/reference.hpp"
#include "support/support.hpp"
#include "usp/cpu.hpp"
#include "usp/dtype.hpp"
#include "usp/error.hpp"
#include "usp/kernel.hpp"
#include "usp/memory.hpp"

namespace usp {
namespace {

using test::KernelCase;

bool amx_dispatched() {
  return cpu_path() == CpuPath::amx;
}

#define USP_SKIP_WITHOUT_AMX()                                          \
  if (!amx_dispatched())                                                \
  GTEST_SKIP() << "dispatch is " << cpu_path_name(cpu_path())           \
               << " (features: " << cpu_features_string(cpu_features()) \
               << "), the AMX path is not taken"

AttentionKernel& shared_kernel() {
  static auto k = make_cpu_kernel(2);
  return *k;
}

using test::PoisonAllocator;

using Param = std::tuple<MaskMode, bool, int>;

class KernelAmxVsReference : public ::testing::TestWithParam<Param> {};

TEST_P(KernelAmxVsReference, RaggedSizes) {
  USP_SKIP_WITHOUT_AMX();
  const auto [mask, gqa, d] = GetParam();
  EXPECT_NE(shared_kernel().name().find("amx"), std::string::npos) << shared_kernel().name();
  std::vector<std::pair<int, int>> sizes;
  if (mask == MaskMode::none)
    sizes = {{1, 1}, {7, 129}, {129, 7}, {65, 200}, {200, 65}};
  else
    sizes = {{1, 1}, {7, 7}, {65, 65}, {129, 129}, {200, 200}};
  for (const auto& [sq, sk] : sizes)
    test::expect_matches_reference(shared_kernel(), {.b = 2,
                                                     .sq = sq,
                                                     .sk = sk,
                                                     .h = 4,
                                                     .hkv = gqa ? 2 : 4,
                                                     .d = d,
                                                     .mask = mask,
                                                     .dtype = DType::bf16});
}

INSTANTIATE_TEST_SUITE_P(Kernel, KernelAmxVsReference,
                         ::testing::Combine(::testing::ValuesIn(test::kMasks), ::testing::Bool(),
                                            ::testing::Values(16, 40, 64, 128)),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return std::string(mask_name(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) ? "_gqa" : "_mha") + "_d" +
                                  std::to_string(std::get<2>(info.param));
                         });

// Many key tiles per row (the online rescaling) and the largest errors: reported, and bounded
// by the bf16 tolerance of the kernel tests.
TEST(KernelAmx, LongRowsStayWithinTheBf16Tolerance) {
  USP_SKIP_WITHOUT_AMX();
  for (MaskMode mask : {MaskMode::none, MaskMode::causal}) {
    const KernelCase p =
        KernelCase{.sq = 1000, .sk = 1000, .h = 2, .d = 128}.with(mask, DType::bf16);
    SCOPED_TRACE(p.str());
    USP_TEST_RNG(rng);
    const test::Inputs in = test::make_inputs(p, rng);
    const test::Forward f = test::run_forward(shared_kernel(), in, mask);
    const auto ref = reference::forward(in.q, in.k, in.v, mask, in.scale);
    const auto o = to_doubles(f.out), l = to_doubles(f.lse);
    double max_out = 0, max_lse = 0;
    for (std::size_t i = 0; i < o.size(); ++i)
      max_out = std::max(max_out, std::abs(o[i] - ref.out[i]));
    for (std::size_t i = 0; i < l.size(); ++i)
      max_lse = std::max(max_lse, std::abs(l[i] - ref.lse[i]));
    std::cout << "[ amx fwd " << mask_name(mask) << " ] out: rel " << relative_error(o, ref.out)
              << ", max abs " << max_out << "; lse: rel " << relative_error(l, ref.lse)
              << ", max abs " << max_lse << "\n";
    test::expect_forward_matches(in, mask, f, 1e-2, 1e-2);
    EXPECT_LE(max_lse, 1e-4);  // scores and sums stay fp32

    const test::Grads g = test::run_backward(shared_kernel(), in, f, mask);
    const auto r = reference::backward(in.q, in.k, in.v, in.dout, mask, in.scale);
    const double floor = 1e-2 * test::norm(r.dv);
    std::cout << "[ amx bwd " << mask_name(mask) << " ] rel dq "
              << test::grad_error(g.dq, r.dq, floor) << ", dk "
              << test::grad_error(g.dk, r.dk, floor) << ", dv "
              << test::grad_error(g.dv, r.dv, floor) << "\n";
    test::expect_backward_matches(in, mask, g, {1e-2, 1e-2, 1e-2});
  }
}

TEST(KernelAmx, RowsWithoutKeysAreZeroWithNegInfLse) {
  USP_SKIP_WITHOUT_AMX();
  std::mt19937 rng(test::fresh_seed());
  const KernelCase p =
      KernelCase{.sq = 70, .sk = 70, .h = 2, .d = 64}.with(MaskMode::causal_strict, DType::bf16);
  const auto in = test::make_inputs(p, rng);
  Tensor out = test::filled({1, 70, 2, 64}, 7.0f), lse = test::filled({1, 2, 70}, 7.0f);
  shared_kernel().forward(in.q, in.k, in.v, p.mask, in.scale, out, lse);
  for (std::int64_t h = 0; h < 2; ++h) {
    EXPECT_EQ(*static_cast<float*>(lse.ptr({0, h, 0})), -std::numeric_limits<float>::infinity());
    EXPECT_TRUE(std::isfinite(*static_cast<float*>(lse.ptr({0, h, 1}))));
    for (std::int64_t c = 0; c < 64; ++c)
      EXPECT_EQ(*static_cast<float*>(out.ptr({0, 0, h, c})), 0.0f);
  }
}

// Scores that climb along the keys by ~92 bits per 128-key tile, ~370 in all: the forward's
// running maximum, which it keeps while P stays below 2^16, must be raised on every tile (and the
// rows redone) or P overflows,
// for a row that starts below its later keys and for one whose first tile already holds its
// maximum (the keys fall again after the middle).
TEST(KernelAmx, RunningMaximumRaisedWhenScoresClimb) {
  USP_SKIP_WITHOUT_AMX();
  std::mt19937 rng(test::fresh_seed());
  const KernelCase p =
      KernelCase{.sq = 48, .sk = 1024, .h = 2, .d = 64}.with(MaskMode::none, DType::bf16);
  test::Inputs in = test::make_inputs(p, rng);
  auto* q = static_cast<std::uint16_t*>(in.q.data());
  auto* k = static_cast<std::uint16_t*>(in.k.data());
  for (std::int64_t i = 0; i < p.sq; ++i)  // head 0 climbs with the keys, head 1 falls
    for (std::int64_t hh = 0; hh < p.h; ++hh)
      q[(i * p.h + hh) * p.d] = f32_to_bf16(hh == 0 ? 1.0f : -1.0f);
  for (std::int64_t j = 0; j < p.sk; ++j) {
    const float ramp = j < p.sk / 2 ? static_cast<float>(j) : static_cast<float>(p.sk - j);
    k[j * p.d] = f32_to_bf16(4 * ramp);  // scale 1/8: ~92 bits (base 2) of score per 128 keys
  }
  const test::Forward f = test::run_forward(shared_kernel(), in, p.mask);
  const auto ref = reference::forward(in.q, in.k, in.v, p.mask, in.scale);
  const auto l = to_doubles(f.lse);
  double max_lse = 0;
  for (std::size_t i = 0; i < l.size(); ++i)
    max_lse = std::max(max_lse, std::abs(l[i] - ref.lse[i]) / std::max(1.0, std::abs(ref.lse[i])));
  test::expect_forward_matches(in, p.mask, f, 1e-2, test::kUnbounded);
  EXPECT_LE(max_lse, 1e-5);
}

TEST(KernelAmx, SameBitsForAnyThreadCount) {
  USP_SKIP_WITHOUT_AMX();
  std::mt19937 rng(test::fresh_seed());
  const KernelCase p = KernelCase{.b = 2, .sq = 150, .sk = 150, .h = 4, .hkv = 2, .d = 64}.with(
      MaskMode::causal, DType::bf16);
  const auto in = test::make_inputs(p, rng);
  auto k1 = make_cpu_kernel(1), k3 = make_cpu_kernel(3);
  const test::Forward f1 = test::run_forward(*k1, in, p.mask),
                      f3 = test::run_forward(*k3, in, p.mask);
  test::expect_same_bits(f1, f3);
  // Both backwards from the one-thread forward.
  test::expect_same_bits(test::run_backward(*k1, in, f1, p.mask),
                         test::run_backward(*k3, in, f1, p.mask));
}

// The path takes exactly the scratch make_cpu_kernel documents, writes every byte before reading
// it, and returns it all.
TEST(KernelAmx, ScratchIsTheDocumentedBlockAndFullyWritten) {
  USP_SKIP_WITHOUT_AMX();
  PoisonAllocator alloc;
  for (int threads : {1, 2}) {
    auto kernel = make_cpu_kernel(threads, &alloc);
    for (MaskMode mask : {MaskMode::none, MaskMode::causal}) {
      std::mt19937 rng(test::fresh_seed());
      const KernelCase p = KernelCase{.b = 2, .sq = 100, .sk = 100, .h = 4, .hkv = 2, .d = 40}.with(
          mask, DType::bf16);
      const auto in = test::make_inputs(p, rng);
      Tensor out = Tensor::empty({2, 100, 4, 40}, DType::bf16);
      Tensor lse = Tensor::empty({2, 4, 100}, DType::f32);
      alloc.reset_peak();
      kernel->forward(in.q, in.k, in.v, mask, in.scale, out, lse);
      EXPECT_EQ(alloc.stats().peak,
                cpu_kernel_scratch_bytes(false, 2, 100, 100, 4, 2, 40, threads));
      EXPECT_EQ(alloc.stats().current, 0u);
      test::expect_forward_matches(in, mask, {out, lse}, 1e-2, 1e-2);

      // Backward, accumulating onto gradients that already hold values.
      Tensor dq = test::filled({2, 100, 4, 40}, 0.5f), dk = test::filled({2, 100, 2, 40}, 0.5f),
             dv = test::filled({2, 100, 2, 40}, 0.5f);
      alloc.reset_peak();
      kernel->backward(in.q, in.k, in.v, out, lse, in.dout, mask, in.scale, dq, dk, dv, true);
      EXPECT_EQ(alloc.stats().peak, cpu_kernel_scratch_bytes(true, 2, 100, 100, 4, 2, 40, threads));
      EXPECT_EQ(alloc.stats().current, 0u);
      test::expect_backward_matches(in, mask, {dq, dk, dv}, {1e-2, 1e-2, 1e-2, false, 0.5});
    }
  }
}

// USP_CPU_PATH=avx512 keeps bf16 on the AVX-512 (fp32) loops, with the same results up to bf16
// rounding of the probabilities.
TEST(KernelAmx, ForcedAvx512PathDoesNotUseTiles) {
  USP_SKIP_WITHOUT_AMX();
  std::unique_ptr<AttentionKernel> kernel;
  std::string name;  // under USP_CPU_PATH=avx512
  {
    const test::ScopedCpuPath avx512("avx512");
    kernel = make_cpu_kernel(2);
    name = kernel->name();
    test::expect_matches_reference(
        *kernel,
        {.sq = 90, .sk = 90, .h = 2, .d = 64, .mask = MaskMode::causal, .dtype = DType::bf16},
        false);
  }
  EXPECT_EQ(name.find("amx"), std::string::npos) << name;
  EXPECT_NE(kernel->name().find("amx"), std::string::npos) << kernel->name();
}

}  // namespace
}  // namespace usp
