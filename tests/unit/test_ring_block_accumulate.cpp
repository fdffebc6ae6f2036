// The forward-and-merge of one block (ring/block_accumulate.hpp) against the unchunked forward +
// merge and against the float64 reference, for every mask: chunked with awkward chunk sizes
// (through a kernel without forward_accumulate) and folded in one call (the CPU kernel's own).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "kernel/reference/reference.hpp"
#include "ring/block_accumulate.hpp"
#include "support/support.hpp"
#include "usp/error.hpp"
#include "usp/kernel.hpp"
#include "usp/tensor.hpp"

namespace usp {
namespace {

using test::random_normal;

// |a − b| per element; -inf must meet -inf.
double max_abs_diff(const Tensor& a, const Tensor& b) {
  const std::vector<double> x = to_doubles(a), y = to_doubles(b);
  double m = 0;
  for (std::size_t i = 0; i < x.size(); ++i) {
    if (std::isinf(x[i]) || std::isinf(y[i])) {
      if (x[i] != y[i]) return INFINITY;
      continue;
    }
    m = std::max(m, std::abs(x[i] - y[i]));
  }
  return m;
}

// The CPU kernel without its forward_accumulate: the accumulator must take the chunked route.
class NoFoldKernel final : public AttentionKernel {
 public:
  explicit NoFoldKernel(AttentionKernel& k) : k_(k) {}
  Device device() const override { return k_.device(); }
  std::string name() const override { return k_.name(); }
  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
               float scale, Tensor& out, Tensor& lse) override {
    ++forwards;
    k_.forward(q, k, v, mask, scale, out, lse);
  }
  void backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                const Tensor& lse, const Tensor& dout, const BlockMask& mask, float scale,
                Tensor& dq, Tensor& dk, Tensor& dv, bool accumulate) override {
    k_.backward(q, k, v, out, lse, dout, mask, scale, dq, dk, dv, accumulate);
  }
  void merge(Tensor& out, Tensor& lse, const Tensor& out_b, const Tensor& lse_b) override {
    k_.merge(out, lse, out_b, lse_b);
  }
  void fill_zero(Tensor& t) override { k_.fill_zero(t); }
  void fill_neg_inf(Tensor& t) override { k_.fill_neg_inf(t); }
  void copy(const Tensor& src, Tensor& dst) override { k_.copy(src, dst); }
  void add(const Tensor& src, Tensor& dst) override { k_.add(src, dst); }
  int forwards = 0;

 private:
  AttentionKernel& k_;
};

struct Case {
  MaskMode mask;
  DType dtype;
  std::int64_t sq, sk;
};

TEST(RingBlockAccumulate, ChunkedAndFoldedEqualUnchunkedForEveryMask) {
  auto kernel = make_cpu_kernel(2);
  NoFoldKernel no_fold(*kernel);
  const std::int64_t b = 2, h = 4, hkv = 2, d = 24, prior_keys = 40;
  const float scale = 0.3f;
  const std::uint32_t seed = 20240611;
  std::mt19937 gen(seed);
  for (const Case& c :
       {Case{MaskMode::none, DType::f32, 150, 97}, Case{MaskMode::none, DType::bf16, 37, 150},
        Case{MaskMode::causal, DType::f32, 150, 150}, Case{MaskMode::causal, DType::f16, 131, 131},
        Case{MaskMode::causal_strict, DType::f32, 150, 150},
        Case{MaskMode::causal_strict, DType::bf16, 129, 129}}) {
    SCOPED_TRACE(::testing::Message() << mask_name(c.mask) << " " << dtype_name(c.dtype) << " sq "
                                      << c.sq << " sk " << c.sk << " seed " << seed);
    const Tensor q = random_normal({b, c.sq, h, d}, c.dtype, gen);
    const Tensor k = random_normal({b, c.sk, hkv, d}, c.dtype, gen);
    const Tensor v = random_normal({b, c.sk, hkv, d}, c.dtype, gen);
    // The accumulator already holds another block's result: rows of a larger buffer (a view, as in
    // the ring), so that the merge and the row offsets are exercised.
    const Tensor k0 = random_normal({b, prior_keys, hkv, d}, c.dtype, gen);
    const Tensor v0 = random_normal({b, prior_keys, hkv, d}, c.dtype, gen);
    Tensor prior_out = Tensor::empty({b, c.sq, h, d}, DType::f32);
    Tensor prior_lse = Tensor::empty({b, h, c.sq}, DType::f32);
    kernel->forward(q, k0, v0, MaskMode::none, scale, prior_out, prior_lse);

    // Unchunked: the whole block's partial, then one merge.
    Tensor want_out = to_dtype(prior_out, DType::f32), want_lse = to_dtype(prior_lse, DType::f32);
    Tensor part_out = Tensor::empty({b, c.sq, h, d}, DType::f32);
    Tensor part_lse = Tensor::empty({b, h, c.sq}, DType::f32);
    kernel->forward(q, k, v, c.mask, scale, part_out, part_lse);
    kernel->merge(want_out, want_lse, part_out, part_lse);
    ASSERT_GT(relative_error(want_out, prior_out), 1e-3) << "the block must change the result";

    // chunk 0: the CPU kernel folds the whole block itself; otherwise chunks of that many rows.
    for (std::int64_t chunk : {std::int64_t{0}, std::int64_t{1}, std::int64_t{7}, std::int64_t{64},
                               c.sq - 1, c.sq, std::int64_t{1000}}) {
      SCOPED_TRACE(::testing::Message() << (chunk == 0 ? "folded" : "chunk ") << chunk);
      const bool fold = chunk == 0;
      HostAllocator alloc;
      Tensor big_out = Tensor::zeros({b, c.sq + 9, h, d}, DType::f32);
      Tensor big_lse = Tensor::zeros({b, h, c.sq + 9}, DType::f32);
      Tensor out = big_out.slice(1, 5, c.sq), lse = big_lse.slice(2, 5, c.sq);
      copy_into(prior_out, out);
      copy_into(prior_lse, lse);
      no_fold.forwards = 0;
      detail::BlockAccumulator acc(fold ? static_cast<AttentionKernel&>(*kernel) : no_fold, alloc,
                                   fold ? c.sq : chunk);
      acc.add(q, k, v, c.mask, scale, out, lse);
      if (!fold) {  // one call per chunk, two per chunk past the first under a causal mask
        const std::int64_t n = (c.sq + chunk - 1) / chunk;
        EXPECT_EQ(no_fold.forwards, c.mask == MaskMode::none ? n : 2 * n - 1);
      }
      // Exact up to fp32 rounding, but the AMX tiles round P to bf16 relative to a running max
      // that depends on the key range of each call: bf16 inputs there get the bf16 tolerance.
      const bool amx = c.dtype == DType::bf16 && kernel->name().find("amx") != std::string::npos;
      EXPECT_LE(relative_error(out, want_out), amx ? 1e-2 : 2e-6);
      EXPECT_LE(max_abs_diff(lse, want_lse), 2e-5);
      // The scratch holds one chunk of fp32 rows, not the block; folding needs none.
      const std::int64_t rows = fold ? 0 : std::min(chunk, c.sq);
      EXPECT_EQ(alloc.stats().peak,
                static_cast<std::size_t>(b * rows * h * d * 4 + b * h * rows * 4));
      // Rows outside the view are untouched.
      EXPECT_EQ(to_doubles(big_out.slice(1, 0, 5)), std::vector<double>(b * 5 * h * d, 0.0));
    }
  }
}

TEST(RingBlockAccumulate, FromEmptyMatchesTheReference) {
  auto kernel = make_cpu_kernel(2);
  NoFoldKernel no_fold(*kernel);
  const std::int64_t b = 1, h = 2, d = 16, s = 77;
  const std::uint32_t seed = 7;
  std::mt19937 gen(seed);
  for (MaskMode mask : test::kMasks)
    for (bool fold : {true, false}) {
      SCOPED_TRACE(::testing::Message()
                   << mask_name(mask) << (fold ? " folded" : " chunks of 10") << " seed " << seed);
      const Tensor q = random_normal({b, s, h, d}, DType::f32, gen);
      const Tensor k = random_normal({b, s, h, d}, DType::f32, gen);
      const Tensor v = random_normal({b, s, h, d}, DType::f32, gen);
      Tensor out = Tensor::empty({b, s, h, d}, DType::f32),
             lse = Tensor::empty({b, h, s}, DType::f32);
      kernel->fill_zero(out);
      kernel->fill_neg_inf(lse);
      HostAllocator alloc;
      detail::BlockAccumulator acc(fold ? static_cast<AttentionKernel&>(*kernel) : no_fold, alloc,
                                   10);
      acc.add(q, k, v, mask, 0.25f, out, lse);
      const reference::ForwardResult ref = reference::forward(q, k, v, mask, 0.25);
      EXPECT_LE(relative_error(to_doubles(out), ref.out), 1e-5);
      const std::vector<double> got = to_doubles(lse);
      for (std::size_t i = 0; i < got.size(); ++i) {
        if (std::isinf(ref.lse[i])) {
          EXPECT_TRUE(std::isinf(got[i]) && got[i] < 0) << "row " << i;
        } else {
          EXPECT_NEAR(got[i], ref.lse[i], 1e-5) << "row " << i;
        }
      }
      // causal_strict: query 0 sees no key in any chunk.
      if (mask == MaskMode::causal_strict) {
        EXPECT_TRUE(std::isinf(got[0]));
        EXPECT_EQ(to_doubles(out.slice(1, 0, 1)), std::vector<double>(h * d, 0.0));
      }
    }
}

TEST(RingBlockAccumulate, ChunkRowsKeepTheKernelBusy) {
  const unsigned threads = std::max(1u, std::thread::hardware_concurrency());
  for (auto [b, h, rows] : {std::tuple<std::int64_t, std::int64_t, std::int64_t>{2, 8, 512},
                            {1, 1, 4096},
                            {4, 32, 100},
                            {1, 2, 0}}) {
    const std::int64_t c = detail::accumulate_chunk_rows(Device::host, b, h, rows);
    EXPECT_LE(c, std::max<std::int64_t>(rows, 1));
    EXPECT_GE(c, 1);
    if (c < rows) {
      EXPECT_EQ(c % 64, 0) << "whole query tiles";
      EXPECT_GE(b * h * (c / 64), 4 * static_cast<std::int64_t>(threads));
    }
  }
  EXPECT_GE(detail::accumulate_chunk_rows(Device::cuda, 2, 8, 1 << 20), 8192);
}

TEST(RingBlockAccumulate, CausalNeedsASquareBlock) {
  auto kernel = make_cpu_kernel(1);
  std::mt19937 gen(3);
  const Tensor q = random_normal({1, 8, 1, 8}, DType::f32, gen);
  const Tensor k = random_normal({1, 9, 1, 8}, DType::f32, gen);
  Tensor out = Tensor::zeros({1, 8, 1, 8}, DType::f32), lse = Tensor::zeros({1, 1, 8}, DType::f32);
  detail::BlockAccumulator acc(*kernel, default_host_allocator(), 4);
  USP_EXPECT_ERROR(acc.add(q, k, k, MaskMode::causal, 1.0f, out, lse), invalid_argument,
                   "causal block needs as many queries as keys");
}

}  // namespace
}  // namespace usp
