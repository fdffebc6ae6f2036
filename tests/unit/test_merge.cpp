#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <string>

#include "kernel/reference/reference.hpp"
#include "support/support.hpp"
#include "usp/error.hpp"
#include "usp/kernel.hpp"

namespace usp {
namespace {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Forward on each half of the keys, merged into an fp32 accumulator, equals the whole.
void merge_halves(DType in_dtype, DType partial_dtype, double tol) {
  auto kernel = make_cpu_kernel(2);
  USP_TEST_RNG(rng);
  test::KernelCase p{.b = 2, .sq = 77, .sk = 150, .h = 4, .hkv = 2, .d = 64, .dtype = in_dtype};
  const auto in = test::make_inputs(p, rng);
  const std::int64_t half = 61;  // uneven split
  Tensor acc = Tensor::empty({2, 77, 4, 64}, DType::f32),
         lse = Tensor::empty({2, 4, 77}, DType::f32);
  kernel->fill_zero(acc);
  kernel->fill_neg_inf(lse);
  for (auto [start, len] : {std::pair<std::int64_t, std::int64_t>{0, half}, {half, 150 - half}}) {
    Tensor part = Tensor::empty({2, 77, 4, 64}, partial_dtype);
    Tensor part_lse = Tensor::empty({2, 4, 77}, DType::f32);
    kernel->forward(in.q, in.k.slice(1, start, len), in.v.slice(1, start, len), MaskMode::none,
                    in.scale, part, part_lse);
    kernel->merge(acc, lse, part, part_lse);
  }
  test::expect_forward_matches(in, MaskMode::none, {acc, lse}, tol, 1e-5);
}

TEST(MergeHalves, Fp32PartialsEqualTheWhole) {
  merge_halves(DType::f32, DType::f32, 1e-5);
}
TEST(MergeHalves, Bf16InputsFp32Partials) {
  // Exact with the fp32 loops; the AMX tiles round P to bf16 (the bf16 tolerance).
  const bool amx = make_cpu_kernel(1)->name().find("amx") != std::string::npos;
  merge_halves(DType::bf16, DType::f32, amx ? 1e-2 : 1e-5);
}
TEST(MergeHalves, Fp16Partials) {
  merge_halves(DType::f16, DType::f16, 1e-2);
}

TEST(MergeHalves, RowRangeThroughSlices) {
  auto kernel = make_cpu_kernel(2);
  std::mt19937 rng(test::fresh_seed());
  test::KernelCase p{.b = 1, .sq = 50, .sk = 40, .h = 2, .hkv = 2, .d = 32};
  const auto in = test::make_inputs(p, rng);
  Tensor acc = Tensor::empty({1, 50, 2, 32}, DType::f32),
         lse = Tensor::empty({1, 2, 50}, DType::f32);
  kernel->fill_zero(acc);
  kernel->fill_neg_inf(lse);
  // Queries [10, 40) only, against both halves of the keys.
  const std::int64_t r0 = 10, rn = 30;
  Tensor q = in.q.slice(1, r0, rn);
  Tensor acc_rows = acc.slice(1, r0, rn), lse_rows = lse.slice(2, r0, rn);
  for (auto [start, len] : {std::pair<std::int64_t, std::int64_t>{0, 20}, {20, 20}}) {
    Tensor part = Tensor::empty({1, rn, 2, 32}, DType::f32),
           part_lse = Tensor::empty({1, 2, rn}, DType::f32);
    kernel->forward(q, in.k.slice(1, start, len), in.v.slice(1, start, len), MaskMode::none,
                    in.scale, part, part_lse);
    kernel->merge(acc_rows, lse_rows, part, part_lse);
  }
  test::expect_forward_matches({q, in.k, in.v, {}, in.scale}, MaskMode::none, {acc_rows, lse_rows},
                               1e-5, 1e-5);
  // Rows outside the range are untouched.
  EXPECT_EQ(*static_cast<float*>(acc.ptr({0, 9, 1, 31})), 0.0f);
  EXPECT_EQ(*static_cast<float*>(acc.ptr({0, 40, 0, 0})), 0.0f);
  EXPECT_EQ(*static_cast<float*>(lse.ptr({0, 1, 9})), kNegInf);
  EXPECT_EQ(*static_cast<float*>(lse.ptr({0, 0, 40})), kNegInf);
}

TEST(MergeInf, EitherSideNegInf) {
  auto kernel = make_cpu_kernel(1);
  std::mt19937 rng(test::fresh_seed());
  const Tensor::Dims os{1, 3, 2, 16}, ls{1, 2, 3};
  Tensor acc = test::random_tensor(os, DType::f32, rng),
         lse = test::random_tensor(ls, DType::f32, rng);
  Tensor ob = test::random_tensor(os, DType::f32, rng), lb = Tensor::empty(ls, DType::f32);
  kernel->fill_neg_inf(lb);
  const auto acc0 = to_doubles(acc), lse0 = to_doubles(lse);
  kernel->merge(acc, lse, ob, lb);  // nothing to add
  EXPECT_EQ(to_doubles(acc), acc0);
  EXPECT_EQ(to_doubles(lse), lse0);

  Tensor empty = Tensor::empty(os, DType::f32), empty_lse = Tensor::empty(ls, DType::f32);
  kernel->fill_zero(empty);
  kernel->fill_neg_inf(empty_lse);
  Tensor ob16 = to_dtype(ob, DType::bf16);
  kernel->merge(empty, empty_lse, ob16, lse);  // the accumulator is empty: takes the partial
  EXPECT_EQ(to_doubles(empty), to_doubles(ob16));
  EXPECT_EQ(to_doubles(empty_lse), lse0);

  Tensor z = Tensor::empty(os, DType::f32), zl = Tensor::empty(ls, DType::f32);
  kernel->fill_zero(z);
  kernel->fill_neg_inf(zl);
  kernel->merge(z, zl, ob, lb);  // both empty: stays empty, no NaN
  for (double x : to_doubles(z)) EXPECT_EQ(x, 0.0);
  for (double x : to_doubles(zl)) EXPECT_EQ(x, -std::numeric_limits<double>::infinity());
}

TEST(MergeInf, MixedRowsMatchLogAddExp) {
  auto kernel = make_cpu_kernel(2);
  std::mt19937 rng(test::fresh_seed());
  test::KernelCase p{.b = 1, .sq = 9, .sk = 9, .h = 2, .hkv = 1, .d = 16};
  const auto in = test::make_inputs(p, rng);
  // Partial a: strict causal (row 0 sees nothing). Partial b: other keys, no mask, large logits.
  Tensor oa = Tensor::empty({1, 9, 2, 16}, DType::f32), la = Tensor::empty({1, 2, 9}, DType::f32);
  kernel->forward(in.q, in.k, in.v, MaskMode::causal_strict, in.scale, oa, la);
  Tensor k2 = test::random_tensor({1, 9, 1, 16}, DType::f32, rng, 8.0f);
  Tensor ob = Tensor::empty({1, 9, 2, 16}, DType::f32), lb = Tensor::empty({1, 2, 9}, DType::f32);
  kernel->forward(in.q, k2, in.v, MaskMode::none, 4.0f, ob, lb);
  const auto a = to_doubles(oa), la_d = to_doubles(la), b = to_doubles(ob), lb_d = to_doubles(lb);
  // merge(b into a) and merge(a into b) both equal the direct log-add-exp combination.
  for (int order = 0; order < 2; ++order) {
    Tensor acc = to_dtype(order == 0 ? oa : ob, DType::f32);
    Tensor lse = to_dtype(order == 0 ? la : lb, DType::f32);
    kernel->merge(acc, lse, order == 0 ? ob : oa, order == 0 ? lb : la);
    const auto got = to_doubles(acc), got_l = to_doubles(lse);
    for (std::int64_t i = 0; i < 9; ++i)
      for (std::int64_t h = 0; h < 2; ++h) {
        const std::size_t li = static_cast<std::size_t>(h * 9 + i);
        const double m = std::max(la_d[li], lb_d[li]);
        const double wa = std::exp(la_d[li] - m), wb = std::exp(lb_d[li] - m);
        const double lse_want = m + std::log(wa + wb);
        EXPECT_NEAR(got_l[li], lse_want, 1e-5 * std::max(1.0, std::fabs(lse_want)));
        for (std::int64_t c = 0; c < 16; ++c) {
          const std::size_t oi = static_cast<std::size_t>((i * 2 + h) * 16 + c);
          const double want = (wa * a[oi] + wb * b[oi]) / (wa + wb);
          EXPECT_NEAR(got[oi], want, 1e-5) << "row " << i << " head " << h;
        }
      }
  }
}

TEST(MergeArgs, RejectsBadArguments) {
  auto kernel = make_cpu_kernel(1);
  Tensor out = Tensor::zeros({1, 4, 2, 8}, DType::f32), lse = Tensor::zeros({1, 2, 4}, DType::f32);
  auto merge = [&](Tensor o, Tensor l, Tensor ob, Tensor lb) { kernel->merge(o, l, ob, lb); };
  EXPECT_EQ(test::error_message([&] { merge(out, lse, out, lse); }), test::kNoError);
  USP_EXPECT_ERROR(merge(Tensor::zeros({1, 4, 2, 8}, DType::bf16), lse, out, lse), invalid_argument,
                   "merge: out must be an fp32 accumulator, got bf16");
  USP_EXPECT_ERROR(merge(out, Tensor::zeros({1, 4, 2}, DType::f32), out, lse), invalid_argument,
                   "merge: lse: expected shape [b, h, s] = [1, 2, 4], got [1, 4, 2]");
  USP_EXPECT_ERROR(merge(out, lse, Tensor::zeros({1, 3, 2, 8}, DType::f32), lse), invalid_argument,
                   "merge: out_b shape [1, 3, 2, 8] must equal out shape [1, 4, 2, 8]");
  USP_EXPECT_ERROR(merge(out, lse, out, Tensor::zeros({1, 2, 4}, DType::f16)), invalid_argument,
                   "merge: lse and lse_b must be fp32");
}

// --- the other whole-tensor helpers
// ---------------------------------------------------------------

TEST(KernelHelpers, FillCopyAdd) {
  auto kernel = make_cpu_kernel(2);
  std::mt19937 rng(test::fresh_seed());
  Tensor big = test::random_tensor({2, 6, 3, 8}, DType::f32, rng);
  Tensor view = big.slice(1, 1, 4).slice(2, 1, 2);
  kernel->fill_zero(view);
  for (double x : to_doubles(view)) EXPECT_EQ(x, 0.0);
  EXPECT_NE(*static_cast<float*>(big.ptr({0, 0, 0, 0})), 0.0f);
  Tensor h = Tensor::empty({3, 5}, DType::bf16);
  kernel->fill_neg_inf(h);
  for (double x : to_doubles(h)) EXPECT_EQ(x, -std::numeric_limits<double>::infinity());

  Tensor src = test::random_tensor({2, 4, 2, 8}, DType::f16, rng);
  kernel->copy(src, view);
  EXPECT_EQ(to_doubles(view), to_doubles(src));
  Tensor dst = test::random_tensor({2, 4, 2, 8}, DType::f32, rng);
  const auto before = to_doubles(dst), s = to_doubles(src);
  kernel->add(src, dst);
  const auto after = to_doubles(dst);
  for (std::size_t i = 0; i < after.size(); ++i)
    EXPECT_EQ(static_cast<float>(after[i]),
              static_cast<float>(before[i]) + static_cast<float>(s[i]));
  Tensor bad_dtype = Tensor::zeros({2, 4, 2, 8}, DType::bf16);
  USP_EXPECT_ERROR(kernel->add(src, bad_dtype), invalid_argument,
                   "add: dst must be fp32, got bf16");
  Tensor bad_shape = Tensor::zeros({2, 4, 2, 7}, DType::f32);
  USP_EXPECT_ERROR(kernel->copy(src, bad_shape), invalid_argument,
                   "copy: dst shape [2, 4, 2, 7] must equal src shape");
}

}  // namespace
TEST(KernelHelpers, LargeCopiesOnThePoolEqualOneCopy) {
  // Large copies run in slabs on the kernel's threads: every element, views on both sides, each
  // dtype pair, the same bits as one copy_into.
  std::mt19937 rng(test::fresh_seed());
  for (int threads : {1, 3})
    for (auto [from, to] :
         {std::pair{DType::f32, DType::f16}, std::pair{DType::f16, DType::f32},
          std::pair{DType::f32, DType::bf16}, std::pair{DType::bf16, DType::f16}}) {
      SCOPED_TRACE(::testing::Message()
                   << threads << " threads, " << dtype_name(from) << " -> " << dtype_name(to));
      auto kernel = make_cpu_kernel(threads);
      const Tensor big = test::random_tensor({3, 1100, 5, 40}, from, rng);
      const Tensor src = big.slice(1, 7, 1031).slice(2, 1, 3);  // [3, 1031, 3, 40], strided
      Tensor dst_big = test::random_tensor({3, 1040, 3, 48}, to, rng);
      Tensor dst = dst_big.slice(1, 4, 1031).slice(3, 8, 40);
      const auto untouched = to_doubles(dst_big.slice(1, 0, 4));
      kernel->copy(src, dst);
      Tensor want = Tensor::empty(src.shape(), to);
      copy_into(src, want);
      EXPECT_TRUE(test::bitwise_equal(dst, want));
      EXPECT_EQ(to_doubles(dst_big.slice(1, 0, 4)), untouched);
    }
}

}  // namespace usp
