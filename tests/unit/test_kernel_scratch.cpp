// The CPU kernel takes its scratch (per-thread tiles, packed panels) from the allocator it is
// given, exactly the bytes make_cpu_kernel documents, and returns all of it before each call ends.
#include <gtest/gtest.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>

#include "kernel/reference/reference.hpp"
#include "support/support.hpp"
#include "usp/backend.hpp"
#include "usp/error.hpp"
#include "usp/kernel.hpp"
#include "usp/memory.hpp"

namespace usp {
namespace {

using test::KernelCase;
using test::PoisonAllocator;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

// The bytes make_cpu_kernel's comment gives for one call (kernel.hpp), computed independently.
std::size_t documented_bytes(const KernelCase& p, std::int64_t threads, bool backward) {
  const std::int64_t dp = ceil_div(p.d, 16) * 16, nkt = ceil_div(p.sk, 64),
                     nqt = ceil_div(p.sq, 64), g = p.h / p.hkv, groups = p.b * p.hkv;
  const std::int64_t R = std::min<std::int64_t>(64, ceil_div(p.sq, 16) * 16);
  const std::int64_t F = std::min<std::int64_t>(256, ceil_div(p.sq, 16) * 16);
  std::int64_t tile = 0, panel = 0, tasks = 0;
  if (!backward) {
    tile = 2 * F * dp + 64 * std::min<std::int64_t>(F, 64) + 2 * F + dp;
    panel = 64 * nkt * (p.d + dp);
    tasks = g * ceil_div(nqt, 4);
  } else {
    const std::int64_t B = std::min<std::int64_t>(256, ceil_div(p.sk, 16) * 16),
                       C = std::max<std::int64_t>(1, std::min<std::int64_t>(8, nkt));
    tile = 2 * B * dp + 128 * R + dp;
    panel = ceil_div(64 * nkt * (2 * p.d + dp) + 64 * g * nqt * (2 * dp + 2), 16) * 16 +
            C * 64 * g * nqt * dp;
    tasks = C;
  }
  const std::int64_t by_budget = std::max<std::int64_t>(1, (std::int64_t{1} << 24) / panel);
  const std::int64_t want = threads > 1 ? 8 * threads : 1;
  const std::int64_t n = std::min({groups, ceil_div(want, tasks), by_budget});
  return static_cast<std::size_t>(4 * (threads * tile + n * panel));
}

struct Case {
  KernelCase p;
  int threads;
};

void expect_scratch_counted(const Case& c) {
  const KernelCase& p = c.p;
  SCOPED_TRACE(p.str() + " threads=" + std::to_string(c.threads));
  USP_TEST_RNG(rng);
  HostAllocator alloc;
  auto kernel = make_cpu_kernel(c.threads, &alloc);
  const test::Inputs in0 = test::make_inputs(p, rng);
  // Inputs and outputs live in the rank's allocator too, as in a real run.
  const Tensor q = to_dtype(in0.q, p.dtype, alloc), k = to_dtype(in0.k, p.dtype, alloc),
               v = to_dtype(in0.v, p.dtype, alloc), dout = to_dtype(in0.dout, p.dtype, alloc);
  Tensor out = Tensor::empty({p.b, p.sq, p.h, p.d}, DType::f32, alloc);
  Tensor lse = Tensor::empty({p.b, p.h, p.sq}, DType::f32, alloc);
  Tensor dq = Tensor::empty({p.b, p.sq, p.h, p.d}, DType::f32, alloc);
  Tensor dk = Tensor::empty({p.b, p.sk, p.hkv, p.d}, DType::f32, alloc);
  Tensor dv = Tensor::empty({p.b, p.sk, p.hkv, p.d}, DType::f32, alloc);
  const std::size_t tensors = alloc.stats().current;
  ASSERT_GE(tensors, q.nbytes() + k.nbytes() + v.nbytes() + dout.nbytes());

  alloc.reset_peak();
  kernel->forward(q, k, v, p.mask, in0.scale, out, lse);
  const std::size_t fwd = documented_bytes(p, c.threads, false);
  EXPECT_GT(alloc.stats().peak, tensors) << "forward scratch is not counted";
  EXPECT_EQ(alloc.stats().peak - tensors, fwd) << "forward scratch bytes";
  EXPECT_EQ(fwd, cpu_kernel_scratch_bytes(false, p.b, p.sq, p.sk, p.h, p.hkv, p.d, c.threads));
  EXPECT_EQ(alloc.stats().current, tensors) << "forward kept scratch after returning";

  alloc.reset_peak();
  kernel->backward(q, k, v, out, lse, dout, p.mask, in0.scale, dq, dk, dv, false);
  const std::size_t bwd = documented_bytes(p, c.threads, true);
  EXPECT_GT(alloc.stats().peak, tensors) << "backward scratch is not counted";
  EXPECT_EQ(alloc.stats().peak - tensors, bwd) << "backward scratch bytes";
  EXPECT_EQ(bwd, cpu_kernel_scratch_bytes(true, p.b, p.sq, p.sk, p.h, p.hkv, p.d, c.threads));
  EXPECT_EQ(alloc.stats().current, tensors) << "backward kept scratch after returning";
  // The panels hold K/V (and Q/dout) of at least one (batch, kv head) group in fp32.
  EXPECT_GE(fwd, static_cast<std::size_t>(2 * p.sk * p.d * 4));
  EXPECT_GE(bwd, static_cast<std::size_t>((3 * p.sk + 2 * p.sq * p.h / p.hkv) * p.d * 4));

  // And the results are still right.
  const test::Inputs in{q, k, v, dout, in0.scale};
  const bool f32 = p.dtype == DType::f32;
  test::expect_forward_matches(in, p.mask, {out, lse}, f32 ? 1e-5 : 1e-2, test::kUnbounded);
  test::expect_backward_matches(in, p.mask, {dq, dk, dv},
                                {test::kUnbounded, f32 ? 1e-4 : 1e-2, test::kUnbounded});
}

TEST(KernelScratch, ForwardAndBackwardCountTheirScratchAndReturnIt) {
  for (DType t : {DType::f32, DType::f16}) {
    // Several (batch, kv head) groups, d and lengths off the tile sizes, GQA.
    const KernelCase p{.b = 2, .sq = 100, .sk = 100, .h = 4, .hkv = 2, .d = 40};
    for (int threads : {1, 3}) expect_scratch_counted({p.with(MaskMode::causal, t), threads});
    // sq != sk, no mask, MHA
    const KernelCase cross{.b = 2, .sq = 70, .sk = 130, .h = 2, .hkv = 2, .d = 64};
    expect_scratch_counted({cross.with(MaskMode::none, t), 2});
  }
}

TEST(KernelScratch, ResultsDoNotDependOnFreshScratchContents) {
  // Every scratch byte a call reads it first wrote: NaN-filled fresh memory changes nothing.
  PoisonAllocator poison;
  auto kernel = make_cpu_kernel(2, &poison);
  // 129 rows under causal_strict: the last key tile is hidden from every row, so the backward
  // chunk holding it writes no dq product and must zero its partial instead.
  for (DType t : {DType::f32, DType::f16})
    for (MaskMode m : test::kMasks)
      for (std::int64_t s : {77, 129})
        test::expect_matches_reference(*kernel,
                                       {.sq = s, .sk = s, .h = 3, .d = 24, .mask = m, .dtype = t});
  EXPECT_EQ(poison.stats().current, 0u);
  EXPECT_GT(poison.stats().allocations, 0u);
}

TEST(KernelScratch, MergeAndAddReturnTheirLines) {
  HostAllocator alloc;
  auto kernel = make_cpu_kernel(2, &alloc);
  std::mt19937 rng(7);
  const Tensor out_b = test::random_tensor({1, 5, 2, 24}, DType::f16, rng);
  Tensor out = test::random_tensor({1, 5, 2, 24}, DType::f32, rng);
  Tensor lse = test::random_tensor({1, 2, 5}, DType::f32, rng);
  const Tensor lse_b = test::random_tensor({1, 2, 5}, DType::f32, rng);
  kernel->merge(out, lse, out_b, lse_b);
  EXPECT_EQ(alloc.stats().peak, 2u * 32 * sizeof(float));  // one padded line per thread
  EXPECT_EQ(alloc.stats().current, 0u);
  alloc.reset_peak();
  kernel->add(out_b, out);
  EXPECT_EQ(alloc.stats().peak, 24 * sizeof(float));
  EXPECT_EQ(alloc.stats().current, 0u);
}

TEST(KernelScratch, MakeKernelPassesTheAllocator) {
  HostAllocator alloc;
  auto kernel = make_kernel("local", 1, &alloc);
  std::mt19937 rng(11);
  const Tensor q = test::random_tensor({1, 8, 1, 16}, DType::f32, rng);
  Tensor out = Tensor::empty({1, 8, 1, 16}, DType::f32);
  Tensor lse = Tensor::empty({1, 1, 8}, DType::f32);
  kernel->forward(q, q, q, MaskMode::causal, 0.25f, out, lse);
  KernelCase p{.sq = 8, .sk = 8};
  EXPECT_EQ(alloc.stats().peak, documented_bytes(p, 1, false));
  EXPECT_EQ(alloc.stats().current, 0u);
}

TEST(KernelScratch, ScratchBytesRejectsBadShapes) {
  USP_EXPECT_ERROR(cpu_kernel_scratch_bytes(true, 1, 64, 64, 6, 4, 32, 1), invalid_argument,
                   "h 6, hkv 4");
  EXPECT_GT(cpu_kernel_scratch_bytes(false, 1, 64, 64, 2, 1, 32, 0), 0u);
}

TEST(KernelScratch, RejectsAnAllocatorOnAnotherDevice) {
  PoisonAllocator device_memory(Device::cuda);
  USP_EXPECT_ERROR(make_cpu_kernel(1, &device_memory), invalid_argument,
                   "scratch allocator is on device cuda");
  USP_EXPECT_ERROR(make_kernel("local", 1, &device_memory), invalid_argument,
                   "needs one on device host");
}

}  // namespace
}  // namespace usp
