// AttentionKernel::forward_accumulate of the CPU kernel: a block folded into an fp32 accumulator
// that already holds another block's result equals the float64 merge of the two blocks' exact
// attentions, for every mask, dtype and dispatch path (the suites run again under USP_CPU_PATH).
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "kernel/reference/reference.hpp"
#include "support/support.hpp"

namespace usp::test {
namespace {

// Tensor [b, s, hkv, d] of a then b along dim 1.
Tensor concat_rows(const Tensor& a, const Tensor& b) {
  Tensor::Dims shape = a.shape();
  shape[1] += b.size(1);
  Tensor c = Tensor::empty(shape, a.dtype());
  Tensor lo = c.slice(1, 0, a.size(1)), hi = c.slice(1, a.size(1), b.size(1));
  copy_into(a, lo);
  copy_into(b, hi);
  return c;
}

// Float64 merge of two partial results (out [b, s, h, d], lse [b, h, s]); an lse of -inf is empty.
reference::ForwardResult merge_ref(const reference::ForwardResult& x,
                                   const reference::ForwardResult& y, std::int64_t b,
                                   std::int64_t s, std::int64_t h, std::int64_t d) {
  reference::ForwardResult r{std::vector<double>(x.out.size()), std::vector<double>(x.lse.size())};
  for (std::int64_t bi = 0; bi < b; ++bi)
    for (std::int64_t hi = 0; hi < h; ++hi)
      for (std::int64_t i = 0; i < s; ++i) {
        const auto li = static_cast<std::size_t>((bi * h + hi) * s + i);
        const double la = x.lse[li], lb = y.lse[li];
        const double m = std::max(la, lb);
        const double wa = std::isinf(la) ? 0 : std::exp(la - m);
        const double wb = std::isinf(lb) ? 0 : std::exp(lb - m);
        r.lse[li] = wa + wb == 0 ? -INFINITY : m + std::log(wa + wb);
        for (std::int64_t j = 0; j < d; ++j) {
          const auto oi = static_cast<std::size_t>(((bi * s + i) * h + hi) * d + j);
          r.out[oi] = wa + wb == 0 ? 0 : (wa * x.out[oi] + wb * y.out[oi]) / (wa + wb);
        }
      }
  return r;
}

TEST(KernelFold, FoldEqualsTheMergedReference) {
  auto kernel = make_cpu_kernel(2);
  const std::int64_t b = 2, h = 4, hkv = 2, s = 131, prior = 70, pad = 3;
  for (std::int64_t d : {64, 128})
    for (DType dt : kDtypes)
      for (MaskMode mask : kMasks) {
        const std::uint32_t seed = fresh_seed();
        SCOPED_TRACE(::testing::Message() << "d " << d << " " << dtype_name(dt) << " "
                                          << mask_name(mask) << " seed " << seed);
        std::mt19937 rng(seed);
        const Tensor q = random_tensor({b, s, h, d}, dt, rng);
        const Tensor k0 = random_tensor({b, prior, hkv, d}, dt, rng);
        const Tensor v0 = random_tensor({b, prior, hkv, d}, dt, rng);
        const Tensor k = random_tensor({b, s, hkv, d}, dt, rng);
        const Tensor v = random_tensor({b, s, hkv, d}, dt, rng);
        const float scale = 1.0f / std::sqrt(static_cast<float>(d));

        // The accumulator: rows [pad, pad + s) of larger buffers (a view, as in the ring), holding
        // the prior block's result, except that rows 0 and 5 of every head start empty with
        // NaN in out (it must be ignored: 0·NaN would leak).
        Tensor big_out = filled({b, s + 2 * pad, h, d}, 7.0f);
        Tensor big_lse = filled({b, h, s + 2 * pad}, 7.0f);
        Tensor out = big_out.slice(1, pad, s), lse = big_lse.slice(2, pad, s);
        kernel->forward(q, k0, v0, MaskMode::none, scale, out, lse);
        reference::ForwardResult want0 = reference::forward(q, k0, v0, MaskMode::none, scale);
        for (std::int64_t bi = 0; bi < b; ++bi)
          for (std::int64_t hi = 0; hi < h; ++hi)
            for (std::int64_t i : {0, 5}) {
              *static_cast<float*>(lse.slice(0, bi, 1).slice(1, hi, 1).slice(2, i, 1).data()) =
                  -std::numeric_limits<float>::infinity();
              want0.lse[static_cast<std::size_t>((bi * h + hi) * s + i)] = -INFINITY;
              for (std::int64_t j = 0; j < d; ++j) {
                static_cast<float*>(out.slice(0, bi, 1).slice(1, i, 1).data())[hi * d + j] =
                    std::numeric_limits<float>::quiet_NaN();
                want0.out[static_cast<std::size_t>(((bi * s + i) * h + hi) * d + j)] = 0;
              }
            }

        ASSERT_TRUE(kernel->forward_accumulate(q, k, v, mask, scale, out, lse));
        const auto want = merge_ref(want0, reference::forward(q, k, v, mask, scale), b, s, h, d);
        // bf16 on the AMX tiles rounds P to bf16; every other case computes in fp32.
        const bool amx = dt == DType::bf16 && kernel->name().find("amx") != std::string::npos;
        const double tol = amx ? 1e-2 : 1e-5;
        EXPECT_LE(relative_error(to_doubles(out), want.out), tol) << "out";
        EXPECT_LE(relative_error(to_doubles(lse), want.lse), tol) << "lse";
        EXPECT_TRUE(all_finite_or_neg_inf(out));
        // causal_strict: query 0 was emptied and sees no key of the block: still empty.
        if (mask == MaskMode::causal_strict) {
          EXPECT_TRUE(std::isinf(to_doubles(lse.slice(2, 0, 1))[0]));
          EXPECT_EQ(to_doubles(out.slice(1, 0, 1)), std::vector<double>(b * h * d, 0.0));
        }
        // Rows outside the view are untouched.
        EXPECT_EQ(to_doubles(big_out.slice(1, 0, pad)),
                  std::vector<double>(static_cast<std::size_t>(b * pad * h * d), 7.0));
        EXPECT_EQ(to_doubles(big_lse.slice(2, s + pad, pad)),
                  std::vector<double>(static_cast<std::size_t>(b * h * pad), 7.0));
        // With mask none the fold is attention over the concatenated keys.
        if (mask == MaskMode::none) {
          const auto cat =
              reference::forward(q, concat_rows(k0, k), concat_rows(v0, v), MaskMode::none, scale);
          std::vector<double> got = to_doubles(out), ref = cat.out;
          for (std::int64_t bi = 0; bi < b; ++bi)  // the emptied rows saw only the block
            for (std::int64_t i : {0, 5})
              for (std::int64_t j = 0; j < h * d; ++j) {
                const auto oi = static_cast<std::size_t>((bi * s + i) * h * d + j);
                got[oi] = ref[oi] = 0;
              }
          EXPECT_LE(relative_error(got, ref), tol) << "vs concatenated keys";
        }
      }
}

TEST(KernelFold, FoldTwiceEqualsOneBlockOfBoth) {
  // Two folds into an empty accumulator (keys split at 64) equal one forward over all keys.
  auto kernel = make_cpu_kernel(3);
  USP_TEST_RNG(rng);
  const std::int64_t b = 1, s = 90, sk = 150, h = 2, d = 32;
  const Tensor q = random_tensor({b, s, h, d}, DType::f32, rng);
  const Tensor k = random_tensor({b, sk, h, d}, DType::f32, rng);
  const Tensor v = random_tensor({b, sk, h, d}, DType::f32, rng);
  Tensor out = Tensor::empty({b, s, h, d}, DType::f32), lse = Tensor::empty({b, h, s}, DType::f32);
  kernel->fill_zero(out);
  kernel->fill_neg_inf(lse);
  ASSERT_TRUE(kernel->forward_accumulate(q, k.slice(1, 0, 64), v.slice(1, 0, 64), MaskMode::none,
                                         0.2f, out, lse));
  ASSERT_TRUE(kernel->forward_accumulate(q, k.slice(1, 64, sk - 64), v.slice(1, 64, sk - 64),
                                         MaskMode::none, 0.2f, out, lse));
  const auto ref = reference::forward(q, k, v, MaskMode::none, 0.2);
  EXPECT_LE(relative_error(to_doubles(out), ref.out), 1e-5);
  EXPECT_LE(relative_error(to_doubles(lse), ref.lse), 1e-6);
}

TEST(KernelFold, AccumulatorMustBeFp32) {
  auto kernel = make_cpu_kernel(1);
  std::mt19937 rng(5);
  const Tensor q = random_tensor({1, 8, 1, 16}, DType::f16, rng);
  Tensor out = Tensor::zeros({1, 8, 1, 16}, DType::f16), lse = Tensor::zeros({1, 1, 8}, DType::f32);
  USP_EXPECT_ERROR(kernel->forward_accumulate(q, q, q, MaskMode::none, 1.0f, out, lse),
                   invalid_argument, "must be fp32 (the accumulator)");
}

}  // namespace
}  // namespace usp::test
