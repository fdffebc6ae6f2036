// The same bits for any thread count: every CPU path this machine runs, every dtype and
// mask, forward, forward_accumulate and backward at 1, 2, 3 and 8 threads (the whole USP call:
// test_usp_attention.cpp).
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <vector>

#include "support/env.hpp"
#include "support/kernel.hpp"
#include "support/random.hpp"
#include "usp/cpu.hpp"

namespace usp::test {
namespace {

constexpr int kThreadCounts[] = {1, 2, 3, 8};

// The portable path, the vector ones and AMX (whose tiles or fp32 loops are chosen from the
// problem's shape alone, for up to 64 threads).
std::vector<CpuPath> runnable_paths() {
  std::vector<CpuPath> out;
  for (CpuPath p : {CpuPath::generic, CpuPath::avx2, CpuPath::avx512, CpuPath::amx, CpuPath::neon})
    if (cpu_path_supported(p, cpu_features())) out.push_back(p);
  return out;
}

// Small and ragged blocks (paths that pick their inner loops by size and thread count meet both
// choices) and one of several tiles per thread.
const KernelCase kShapes[] = {
    {.b = 1, .sq = 7, .sk = 7, .h = 2, .hkv = 1, .d = 16},
    {.b = 2, .sq = 150, .sk = 150, .h = 4, .hkv = 2, .d = 64},
    {.b = 1, .sq = 40, .sk = 96, .h = 3, .hkv = 3, .d = 40},
};

TEST(KernelThreadBits, SameBitsForAnyThreadCountOnEveryPath) {
  int checked = 0;
  for (CpuPath path : runnable_paths()) {
    const ScopedCpuPath force(cpu_path_name(path));
    for (const KernelCase& shape : kShapes)
      for (DType dt : {DType::f32, DType::bf16, DType::f16})
        for (MaskMode mask : {MaskMode::none, MaskMode::causal, MaskMode::causal_strict}) {
          if (mask != MaskMode::none && shape.sq != shape.sk) continue;
          const KernelCase p = shape.with(mask, dt);
          SCOPED_TRACE(std::string(cpu_path_name(path)) + " " + p.str());
          USP_TEST_RNG(rng);
          const Inputs in = make_inputs(p, rng);
          auto one = make_cpu_kernel(1);
          const Forward f1 = run_forward(*one, in, mask);
          const Grads g1 = run_backward(*one, in, f1, mask);
          for (int threads : kThreadCounts) {
            if (threads == 1) continue;
            auto kernel = make_cpu_kernel(threads);
            expect_same_bits(f1, run_forward(*kernel, in, mask));
            expect_same_bits(g1, run_backward(*kernel, in, f1, mask));
            // Folding into an accumulator that already holds a partial (the first forward).
            Forward a{to_dtype(f1.out, DType::f32), to_dtype(f1.lse, DType::f32)};
            Forward b{to_dtype(f1.out, DType::f32), to_dtype(f1.lse, DType::f32)};
            if (one->forward_accumulate(in.q, in.k, in.v, mask, in.scale, a.out, a.lse)) {
              ASSERT_TRUE(
                  kernel->forward_accumulate(in.q, in.k, in.v, mask, in.scale, b.out, b.lse));
              expect_same_bits(a, b);
            }
          }
          ++checked;
        }
  }
  EXPECT_GT(checked, 0);
}

}  // namespace
}  // namespace usp::test
