#include <gtest/gtest.h>

#include <cstdlib>
#include <tuple>

#include "kernel/reference/reference.hpp"
#include "support/support.hpp"
#include "usp/error.hpp"
#include "usp/kernel.hpp"

namespace usp {
namespace {

using test::KernelCase;

// --- every mask × GQA/MHA × d × dtype, over odd sizes -------------------------------------------

using Param = std::tuple<MaskMode, bool, int, DType>;

class KernelVsReference : public ::testing::TestWithParam<Param> {
 protected:
  static AttentionKernel& kernel() {
    static auto k = make_cpu_kernel(2);
    return *k;
  }
};

TEST_P(KernelVsReference, OddSizes) {
  const auto [mask, gqa, d, dtype] = GetParam();
  std::vector<std::pair<int, int>> sizes;
  if (mask == MaskMode::none) {
    for (int sq : {1, 7, 129})
      for (int sk : {1, 7, 129}) sizes.emplace_back(sq, sk);
    sizes.insert(sizes.end(), {{1000, 1}, {1, 1000}, {1000, 7}, {7, 1000}});
  } else {
    sizes = {{1, 1}, {7, 7}, {129, 129}};
  }
  for (const auto& [sq, sk] : sizes) {
    const KernelCase p{.b = 2, .sq = sq, .sk = sk, .h = 4, .hkv = gqa ? 2 : 4, .d = d};
    test::expect_matches_reference(kernel(), p.with(mask, dtype));
  }
}

INSTANTIATE_TEST_SUITE_P(Kernel, KernelVsReference,
                         ::testing::Combine(::testing::ValuesIn(test::kMasks), ::testing::Bool(),
                                            ::testing::Values(16, 64, 128),
                                            ::testing::ValuesIn(test::kDtypes)),
                         [](const ::testing::TestParamInfo<Param>& info) {
                           return std::string(mask_name(std::get<0>(info.param))) +
                                  (std::get<1>(info.param) ? "_gqa" : "_mha") + "_d" +
                                  std::to_string(std::get<2>(info.param)) + "_" +
                                  dtype_name(std::get<3>(info.param));
                         });

// --- the 1000-token sizes with both sides long
// -----------------------------------------------------

struct LargeCase {
  int sq, sk, d;
  MaskMode mask;
  bool gqa;
  DType dtype;
};

class KernelLarge : public ::testing::TestWithParam<LargeCase> {};

TEST_P(KernelLarge, MatchesReference) {
  const LargeCase c = GetParam();
  auto kernel = make_cpu_kernel(2);
  const KernelCase p{.sq = c.sq, .sk = c.sk, .h = 2, .hkv = c.gqa ? 1 : 2, .d = c.d};
  test::expect_matches_reference(*kernel, p.with(c.mask, c.dtype));
}

INSTANTIATE_TEST_SUITE_P(
    Kernel, KernelLarge,
    ::testing::Values(LargeCase{1000, 1000, 128, MaskMode::none, true, DType::f32},
                      LargeCase{1000, 1000, 128, MaskMode::causal, true, DType::f32},
                      LargeCase{1000, 1000, 128, MaskMode::causal_strict, false, DType::f32},
                      LargeCase{1000, 1000, 16, MaskMode::causal, false, DType::f32},
                      LargeCase{1000, 1000, 64, MaskMode::none, false, DType::bf16},
                      LargeCase{1000, 1000, 64, MaskMode::causal, true, DType::f16},
                      LargeCase{129, 1000, 64, MaskMode::none, true, DType::f32},
                      LargeCase{1000, 129, 16, MaskMode::none, false, DType::f16},
                      // Several key blocks per backward chunk and query blocks of four tiles.
                      LargeCase{2100, 2100, 16, MaskMode::causal, true, DType::f32},
                      LargeCase{2100, 2100, 16, MaskMode::none, false, DType::f32}),
    [](const ::testing::TestParamInfo<LargeCase>& info) {
      const LargeCase& c = info.param;
      return "sq" + std::to_string(c.sq) + "_sk" + std::to_string(c.sk) + "_d" +
             std::to_string(c.d) + "_" + mask_name(c.mask) + (c.gqa ? "_gqa_" : "_mha_") +
             dtype_name(c.dtype);
    });

// --- special rows and values
// ------------------------------------------------------------------------

TEST(KernelMasked, CausalStrictFirstRowIsEmpty) {
  auto kernel = make_cpu_kernel(2);
  std::mt19937 rng(test::fresh_seed());
  KernelCase p{
      .b = 2, .sq = 70, .sk = 70, .h = 2, .hkv = 1, .d = 32, .mask = MaskMode::causal_strict};
  const auto in = test::make_inputs(p, rng);
  Tensor out = test::filled({2, 70, 2, 32}, 7.0f), lse = test::filled({2, 2, 70}, 7.0f);
  kernel->forward(in.q, in.k, in.v, p.mask, in.scale, out, lse);
  Tensor dq = test::filled({2, 70, 2, 32}, 7.0f);
  Tensor dk = test::filled({2, 70, 1, 32}, 7.0f), dv = test::filled({2, 70, 1, 32}, 7.0f);
  kernel->backward(in.q, in.k, in.v, out, lse, in.dout, p.mask, in.scale, dq, dk, dv, false);
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t h = 0; h < 2; ++h) {
      EXPECT_EQ(*static_cast<float*>(lse.ptr({b, h, 0})), -std::numeric_limits<float>::infinity());
      EXPECT_TRUE(std::isfinite(*static_cast<float*>(lse.ptr({b, h, 1}))));
      for (std::int64_t c = 0; c < 32; ++c) {
        EXPECT_EQ(*static_cast<float*>(out.ptr({b, 0, h, c})), 0.0f);
        EXPECT_EQ(*static_cast<float*>(dq.ptr({b, 0, h, c})), 0.0f);
      }
    }
  // The last key is visible to no query: its gradients are zero.
  for (std::int64_t b = 0; b < 2; ++b)
    for (std::int64_t c = 0; c < 32; ++c) {
      EXPECT_EQ(*static_cast<float*>(dk.ptr({b, 69, 0, c})), 0.0f);
      EXPECT_EQ(*static_cast<float*>(dv.ptr({b, 69, 0, c})), 0.0f);
    }
  EXPECT_TRUE(test::all_finite_or_neg_inf(out));
  EXPECT_TRUE(test::all_finite_or_neg_inf(dq));
  test::expect_forward_matches(in, p.mask, {out, lse}, 1e-5, 1e-5);
}

// A NaN in a query row makes every score of that row NaN: its output and lse are NaN, as in the
// float64 reference, never the zeros and -inf of a row that sees no key (a vector maximum drops
// NaN lanes, and with the masked scores at -inf nothing finite would be left). Other rows keep
// their values.
TEST(KernelNonFinite, NanInAQueryRowGivesNanInThatRowOnly) {
  for (DType t : test::kDtypes)
    for (MaskMode mask : test::kMasks) {
      SCOPED_TRACE(std::string(dtype_name(t)) + " " + mask_name(mask));
      auto kernel = make_cpu_kernel(2);
      std::mt19937 rng(test::fresh_seed());
      const std::int64_t s = 100, d = 32;
      Tensor q = test::random_tensor({1, s, 2, d}, DType::f32, rng);
      const std::int64_t row = 5;  // causal: its visible keys are NaN, the rest of the tile -inf
      *static_cast<float*>(q.ptr({0, row, 1, 5})) = std::numeric_limits<float>::quiet_NaN();
      q = to_dtype(q, t);
      const Tensor k = test::random_tensor({1, s, 1, d}, t, rng);
      const Tensor v = test::random_tensor({1, s, 1, d}, t, rng);
      Tensor out = Tensor::empty({1, s, 2, d}, t), lse = Tensor::empty({1, 2, s}, DType::f32);
      kernel->forward(q, k, v, mask, 0.25f, out, lse);
      const std::vector<double> o = to_doubles(out), l = to_doubles(lse);
      for (std::int64_t h = 0; h < 2; ++h)
        for (std::int64_t i = 0; i < s; ++i) {
          const bool nan_row = h == 1 && i == row;
          const double li = l[static_cast<std::size_t>(h * s + i)];
          if (nan_row) {
            EXPECT_TRUE(std::isnan(li)) << li;
          } else if (!(mask == MaskMode::causal_strict && i == 0)) {
            EXPECT_TRUE(std::isfinite(li)) << h << " " << i << " " << li;
          }
          for (std::int64_t c = 0; c < d; ++c) {
            const double x = o[static_cast<std::size_t>((i * 2 + h) * d + c)];
            if (nan_row) {
              ASSERT_TRUE(std::isnan(x)) << c << " " << x;
            } else {
              ASSERT_TRUE(std::isfinite(x)) << h << " " << i << " " << c;
            }
          }
        }
    }
}

TEST(KernelMasked, SingleTokenStrictSeesNothing) {
  auto kernel = make_cpu_kernel(1);
  std::mt19937 rng(test::fresh_seed());
  KernelCase p{.b = 1, .h = 4, .hkv = 2, .d = 16, .mask = MaskMode::causal_strict};
  const auto in = test::make_inputs(p, rng);
  Tensor out = test::filled({1, 1, 4, 16}, 3.0f), lse = test::filled({1, 4, 1}, 3.0f);
  kernel->forward(in.q, in.k, in.v, p.mask, in.scale, out, lse);
  for (double x : to_doubles(out)) EXPECT_EQ(x, 0.0);
  for (double x : to_doubles(lse)) EXPECT_EQ(x, -std::numeric_limits<double>::infinity());
  Tensor dq = test::filled({1, 1, 4, 16}, 3.0f);
  Tensor dk = test::filled({1, 1, 2, 16}, 3.0f), dv = test::filled({1, 1, 2, 16}, 3.0f);
  kernel->backward(in.q, in.k, in.v, out, lse, in.dout, p.mask, in.scale, dq, dk, dv, false);
  for (const Tensor* g : {&dq, &dk, &dv})
    for (double x : to_doubles(*g)) EXPECT_EQ(x, 0.0);
}

TEST(KernelLogits, MagnitudeThousandDoesNotOverflow) {
  auto kernel = make_cpu_kernel(2);
  USP_TEST_RNG(rng);
  const std::int64_t s = 150, d = 64;
  test::Inputs in;
  in.q = test::random_tensor({1, s, 2, d}, DType::f32, rng, 12.0f);
  in.k = test::random_tensor({1, s, 2, d}, DType::f32, rng, 12.0f);
  in.v = test::random_tensor({1, s, 2, d}, DType::f32, rng);
  in.dout = test::random_tensor({1, s, 2, d}, DType::f32, rng);
  in.scale = 1.0f;
  // Make the logits large: the biggest |q·k| must reach ~1e3.
  double max_logit = 0;
  const auto qd = to_doubles(in.q), kd = to_doubles(in.k);
  for (std::int64_t i = 0; i < s; ++i)
    for (std::int64_t j = 0; j < s; ++j) {
      double acc = 0;
      for (std::int64_t c = 0; c < d; ++c) acc += qd[(i * 2) * d + c] * kd[(j * 2) * d + c];
      max_logit = std::max(max_logit, std::fabs(acc));
    }
  ASSERT_GE(max_logit, 1000.0);
  for (MaskMode mask : {MaskMode::none, MaskMode::causal}) {
    const test::Forward f = test::run_forward(*kernel, in, mask);
    ASSERT_TRUE(test::all_finite_or_neg_inf(f.out));
    ASSERT_TRUE(test::all_finite_or_neg_inf(f.lse));
    test::expect_forward_matches(in, mask, f, 1e-4, 1e-5);
    const test::Grads g = test::run_backward(*kernel, in, f, mask);
    ASSERT_TRUE(test::all_finite_or_neg_inf(g.dq));
    ASSERT_TRUE(test::all_finite_or_neg_inf(g.dk));
    ASSERT_TRUE(test::all_finite_or_neg_inf(g.dv));
    // Near one-hot softmax: dv is well conditioned, dq/dk carry the 1e3-scale scores' rounding.
    test::expect_backward_matches(in, mask, g, {1e-2, 1e-2, 1e-4, false});
  }
}

// --- accumulate, strided views, determinism, the portable path ---------------------------------

TEST(KernelBackward, AccumulateAdds) {
  auto kernel = make_cpu_kernel(2);
  std::mt19937 rng(test::fresh_seed());
  KernelCase p{.b = 1, .sq = 100, .sk = 100, .h = 4, .hkv = 2, .d = 64, .mask = MaskMode::causal};
  const auto in = test::make_inputs(p, rng);
  const test::Forward f = test::run_forward(*kernel, in, p.mask);
  const auto [dq, dk, dv] = test::run_backward(*kernel, in, f, p.mask);
  Tensor aq = test::random_tensor(dq.shape(), DType::f32, rng);
  Tensor ak = test::random_tensor(dk.shape(), DType::f32, rng);
  Tensor av = test::random_tensor(dv.shape(), DType::f32, rng);
  const auto q0 = to_doubles(aq), k0 = to_doubles(ak), v0 = to_doubles(av);
  kernel->backward(in.q, in.k, in.v, f.out, f.lse, in.dout, p.mask, in.scale, aq, ak, av, true);
  const auto check = [](const Tensor& acc, const std::vector<double>& before, const Tensor& grad) {
    const auto a = to_doubles(acc), g = to_doubles(grad);
    for (std::size_t i = 0; i < a.size(); ++i)
      ASSERT_EQ(static_cast<float>(a[i]), static_cast<float>(before[i]) + static_cast<float>(g[i]))
          << i;
  };
  check(aq, q0, dq);
  check(ak, k0, dk);
  check(av, v0, dv);
}

TEST(KernelStrided, SlicedInputsAndOutputs) {
  auto kernel = make_cpu_kernel(2);
  USP_TEST_RNG(rng);
  const std::int64_t b = 2, s = 90, h = 4, hkv = 2, d = 48;
  // q/k/v/dout live inside larger tensors: a window of the sequence and of the heads.
  Tensor qb = test::random_tensor({b, s + 10, h + 2, d}, DType::bf16, rng);
  Tensor kb = test::random_tensor({b, s + 5, hkv + 1, d}, DType::bf16, rng);
  Tensor vb = test::random_tensor({b, s + 5, hkv + 1, d}, DType::bf16, rng);
  Tensor db = test::random_tensor({b, s + 10, h + 2, d}, DType::bf16, rng);
  Tensor q = qb.slice(1, 3, s).slice(2, 1, h), k = kb.slice(1, 5, s).slice(2, 1, hkv);
  Tensor v = vb.slice(1, 0, s).slice(2, 0, hkv), dout = db.slice(1, 10, s).slice(2, 2, h);
  ASSERT_FALSE(q.is_contiguous());
  Tensor outb = Tensor::zeros({b, s + 4, h + 1, d + 8}, DType::f32);
  Tensor out = outb.slice(1, 2, s).slice(2, 1, h).slice(3, 8, d);
  Tensor lseb = Tensor::zeros({b, h, s + 7}, DType::f32);
  Tensor lse = lseb.slice(2, 7, s);
  kernel->forward(q, k, v, MaskMode::causal, 0.2f, out, lse);
  const test::Inputs in{q, k, v, dout, 0.2f};
  // The fp32 loops compute bf16 inputs exactly; the AMX tiles round P to bf16 (bf16 tolerance).
  const bool amx = kernel->name().find("amx") != std::string::npos;
  test::expect_forward_matches(in, MaskMode::causal, {out, lse}, amx ? 1e-2 : 1e-5, 1e-5);
  // Untouched surroundings stay zero.
  EXPECT_EQ(*static_cast<float*>(outb.ptr({0, 0, 0, 0})), 0.0f);
  EXPECT_EQ(*static_cast<float*>(outb.ptr({1, 3, 2, 7})), 0.0f);
  EXPECT_EQ(*static_cast<float*>(lseb.ptr({1, 3, 6})), 0.0f);

  Tensor gq = Tensor::zeros({b, s + 1, h + 3, d}, DType::f32);
  Tensor gk = Tensor::zeros({b, s + 2, hkv + 2, d}, DType::f32);
  Tensor gv = Tensor::zeros({b, s, hkv + 1, d}, DType::f32);
  Tensor dq = gq.slice(1, 1, s).slice(2, 3, h), dk = gk.slice(1, 2, s).slice(2, 2, hkv);
  Tensor dv = gv.slice(2, 1, hkv);
  kernel->backward(q, k, v, out, lse, dout, MaskMode::causal, 0.2f, dq, dk, dv, false);
  const double cap = amx ? 1e-2 : 1e-4;
  test::expect_backward_matches(in, MaskMode::causal, {dq, dk, dv}, {cap, cap, cap, false});
  EXPECT_EQ(*static_cast<float*>(gq.ptr({0, 0, 0, 0})), 0.0f);
  EXPECT_EQ(*static_cast<float*>(gk.ptr({1, 1, 1, 5})), 0.0f);
}

TEST(KernelThreads, OneAndThreeThreadsAgreeBitwise) {
  auto k1 = make_cpu_kernel(1);
  auto k3 = make_cpu_kernel(3);
  std::mt19937 rng(test::fresh_seed());
  for (MaskMode mask : {MaskMode::none, MaskMode::causal}) {
    KernelCase p{.b = 2, .sq = 300, .sk = 300, .h = 4, .hkv = 2, .d = 64, .mask = mask};
    const auto in = test::make_inputs(p, rng);
    const test::Forward f1 = test::run_forward(*k1, in, mask),
                        f3 = test::run_forward(*k3, in, mask);
    test::expect_same_bits(f1, f3);
    test::expect_same_bits(test::run_backward(*k1, in, f1, mask),
                           test::run_backward(*k3, in, f3, mask));
  }
}

TEST(KernelPortable, GenericPathMatchesReference) {
  auto kernel = [] {
    const test::ScopedCpuPath generic("generic");
    return make_cpu_kernel(2);
  }();
  EXPECT_NE(kernel->name().find("generic"), std::string::npos) << kernel->name();
  for (MaskMode mask : test::kMasks)
    for (DType dt : {DType::f32, DType::f16}) {
      const std::int64_t sk = mask == MaskMode::none ? 70 : 129;
      const KernelCase p{.sq = 129, .sk = sk, .h = 4, .hkv = 2, .d = 24};
      test::expect_matches_reference(*kernel, p.with(mask, dt));
    }
}

TEST(KernelInfo, NameAndDevice) {
  auto kernel = make_cpu_kernel(3);
  EXPECT_EQ(kernel->device(), Device::host);
  EXPECT_NE(kernel->name().find("3 threads"), std::string::npos) << kernel->name();
}

// --- bad arguments
// ----------------------------------------------------------------------------------

// The forward of a one-thread kernel on these arguments.
void forward_call(const Tensor& q, const Tensor& k, const Tensor& v, MaskMode mask, Tensor out,
                  Tensor lse, float scale = 0.125f) {
  make_cpu_kernel(1)->forward(q, k, v, mask, scale, out, lse);
}

TEST(KernelArgs, ForwardRejectsBadArguments) {
  using T = Tensor;
  const auto f32 = DType::f32;
  T q = T::zeros({1, 8, 4, 64}, f32), k = T::zeros({1, 8, 2, 64}, f32),
    v = T::zeros({1, 8, 2, 64}, f32);
  T out = T::zeros({1, 8, 4, 64}, f32), lse = T::zeros({1, 4, 8}, f32);
  EXPECT_EQ(test::error_message([&] { forward_call(q, k, v, MaskMode::causal, out, lse); }),
            test::kNoError);
  USP_EXPECT_ERROR(forward_call(T::zeros({8, 4, 64}, f32), k, v, MaskMode::none, out, lse),
                   invalid_argument, "q: expected 4 dims [b, sq, h, d], got [8, 4, 64]");
  USP_EXPECT_ERROR(forward_call(T::zeros({1, 8, 16, 64}, f32), T::zeros({1, 8, 3, 64}, f32),
                                T::zeros({1, 8, 3, 64}, f32), MaskMode::none,
                                T::zeros({1, 8, 16, 64}, f32), T::zeros({1, 16, 8}, f32)),
                   invalid_argument, "h (16) must be a multiple of hkv (3)");
  USP_EXPECT_ERROR(forward_call(T::zeros({1, 8, 4, 300}, f32), T::zeros({1, 8, 2, 300}, f32),
                                T::zeros({1, 8, 2, 300}, f32), MaskMode::none,
                                T::zeros({1, 8, 4, 300}, f32), lse),
                   invalid_argument, "head size d = 300 exceeds the maximum 256");
  for (MaskMode m : {MaskMode::causal, MaskMode::causal_strict})
    USP_EXPECT_ERROR(forward_call(T::zeros({1, 7, 4, 64}, f32), T::zeros({1, 9, 2, 64}, f32),
                                  T::zeros({1, 9, 2, 64}, f32), m, T::zeros({1, 7, 4, 64}, f32),
                                  T::zeros({1, 4, 7}, f32)),
                     invalid_argument,
                     std::string("mask ") + mask_name(m) + " needs sq == sk, got sq = 7, sk = 9");
  USP_EXPECT_ERROR(
      forward_call(q, T::zeros({1, 8, 2, 64}, DType::f16), v, MaskMode::none, out, lse),
      invalid_argument, "k: dtype fp16 must equal q's dtype fp32");
  USP_EXPECT_ERROR(
      forward_call(q, k, T::zeros({1, 8, 2, 64}, DType::bf16), MaskMode::none, out, lse),
      invalid_argument, "v: dtype bf16 must equal q's dtype fp32");
  USP_EXPECT_ERROR(forward_call(q, k, T::zeros({1, 9, 2, 64}, f32), MaskMode::none, out, lse),
                   invalid_argument, "v: shape [1, 9, 2, 64] must equal k's shape [1, 8, 2, 64]");
  USP_EXPECT_ERROR(forward_call(q, T::zeros({2, 8, 2, 64}, f32), T::zeros({2, 8, 2, 64}, f32),
                                MaskMode::none, out, lse),
                   invalid_argument, "k: batch 2 must equal q's batch b = 1");
  USP_EXPECT_ERROR(forward_call(q, T::zeros({1, 8, 2, 32}, f32), T::zeros({1, 8, 2, 32}, f32),
                                MaskMode::none, out, lse),
                   invalid_argument, "k: head size 32 must equal q's head size d = 64");
  USP_EXPECT_ERROR(forward_call(q, k, v, MaskMode::none, T::zeros({1, 8, 4, 32}, f32), lse),
                   invalid_argument,
                   "out: expected shape [b, sq, h, d] = [1, 8, 4, 64], got [1, 8, 4, 32]");
  USP_EXPECT_ERROR(forward_call(q, k, v, MaskMode::none, out, T::zeros({1, 4, 8}, DType::bf16)),
                   invalid_argument, "lse: must be fp32, got bf16");
  USP_EXPECT_ERROR(forward_call(q, k, v, MaskMode::none, out, T::zeros({1, 8, 4}, f32)),
                   invalid_argument, "lse: expected shape [b, h, sq] = [1, 4, 8], got [1, 8, 4]");
  USP_EXPECT_ERROR(forward_call(q, k, v, MaskMode::none, out, lse, 0.0f), invalid_argument,
                   "scale must be a positive finite number");
  USP_EXPECT_ERROR(forward_call(q, k, v, MaskMode::none, out, Tensor()), invalid_argument,
                   "lse: tensor is undefined");
  USP_EXPECT_ERROR(
      forward_call(q, k, v, MaskMode::none, out, T::wrap(lse.data(), {1, 4, 8}, f32, Device::cuda)),
      invalid_argument, "lse: device cuda differs from q's device host");
}

TEST(KernelArgs, BackwardRejectsBadArguments) {
  using T = Tensor;
  const auto f32 = DType::f32;
  T q = T::zeros({1, 8, 4, 64}, f32), k = T::zeros({1, 8, 2, 64}, f32),
    v = T::zeros({1, 8, 2, 64}, f32);
  T out = T::zeros({1, 8, 4, 64}, f32), lse = T::zeros({1, 4, 8}, f32),
    dout = T::zeros({1, 8, 4, 64}, f32);
  T dq = T::zeros({1, 8, 4, 64}, f32), dk = T::zeros({1, 8, 2, 64}, f32),
    dv = T::zeros({1, 8, 2, 64}, f32);
  auto kernel = make_cpu_kernel(1);
  auto backward = [&](T dout_, T dq_, T dk_, T dv_) {
    kernel->backward(q, k, v, out, lse, dout_, MaskMode::none, 0.125f, dq_, dk_, dv_, false);
  };
  EXPECT_EQ(test::error_message([&] { backward(dout, dq, dk, dv); }), test::kNoError);
  USP_EXPECT_ERROR(backward(T::zeros({1, 8, 4, 32}, f32), dq, dk, dv), invalid_argument,
                   "dout: expected shape [b, sq, h, d] = [1, 8, 4, 64], got [1, 8, 4, 32]");
  USP_EXPECT_ERROR(backward(dout, T::zeros({1, 8, 4, 64}, DType::bf16), dk, dv), invalid_argument,
                   "dq: must be fp32, got bf16");
  USP_EXPECT_ERROR(backward(dout, dq, T::zeros({1, 8, 2, 64}, DType::f16), dv), invalid_argument,
                   "dk: must be fp32, got fp16");
  USP_EXPECT_ERROR(backward(dout, dq, dk, T::zeros({1, 8, 4, 64}, f32)), invalid_argument,
                   "dv: expected shape [b, sk, hkv, d] = [1, 8, 2, 64], got [1, 8, 4, 64]");
}

TEST(KernelArgs, ThreadCount) {
  USP_EXPECT_ERROR(make_cpu_kernel(-1), invalid_argument, "threads must be >= 0");
}

}  // namespace
}  // namespace usp
