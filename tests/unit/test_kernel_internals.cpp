// The CPU kernel's building blocks: the thread pool and the inner loops (both ISA variants).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <limits>
#include <random>
#include <stdexcept>
#include <thread>
#include <vector>

#include "kernel/cpu/tile_ops.hpp"
#include "util/thread_pool.hpp"

#include "support/random.hpp"

namespace usp {
namespace {

using detail::ThreadPool;

TEST(KernelThreadPool, RunsEveryTaskOnce) {
  for (int threads : {1, 2, 3}) {
    ThreadPool pool(threads);
    EXPECT_EQ(pool.size(), threads);
    for (int round = 0; round < 3; ++round) {
      std::vector<std::atomic<int>> hits(1000);
      std::atomic<int> bad_worker{0};
      pool.parallel_for(hits.size(), [&](std::size_t i, int worker) {
        hits[i].fetch_add(1);
        if (worker < 0 || worker >= threads) bad_worker.fetch_add(1);
      });
      for (auto& h : hits) ASSERT_EQ(h.load(), 1);
      EXPECT_EQ(bad_worker.load(), 0);
    }
  }
}

TEST(KernelThreadPool, SingleThreadRunsInline) {
  ThreadPool pool(1);
  const auto caller = std::this_thread::get_id();
  int count = 0;
  pool.parallel_for(50, [&](std::size_t, int worker) {
    EXPECT_EQ(worker, 0);
    EXPECT_EQ(std::this_thread::get_id(), caller);
    ++count;
  });
  EXPECT_EQ(count, 50);
}

TEST(KernelThreadPool, ExceptionReachesCallerAndPoolSurvives) {
  ThreadPool pool(3);
  EXPECT_THROW(pool.parallel_for(100,
                                 [](std::size_t i, int) {
                                   if (i == 37) throw std::runtime_error("task 37 failed");
                                 }),
               std::runtime_error);
  std::atomic<int> n{0};
  pool.parallel_for(100, [&](std::size_t, int) { n.fetch_add(1); });
  EXPECT_EQ(n.load(), 100);
}

TEST(KernelThreadPool, NestedCallsRunInlineAsTheSameWorker) {
  ThreadPool pool(2);
  std::atomic<int> inner{0}, mismatched{0};
  pool.parallel_for(8, [&](std::size_t, int worker) {
    pool.parallel_for(4, [&](std::size_t, int w2) {
      if (w2 != worker) mismatched.fetch_add(1);
      inner.fetch_add(1);
    });
  });
  EXPECT_EQ(inner.load(), 32);
  EXPECT_EQ(mismatched.load(), 0);
}

TEST(KernelThreadPool, ConcurrentCallersAreSerialized) {
  ThreadPool pool(2);
  std::vector<long> sums(2, 0);
  std::vector<std::thread> callers;
  for (int c = 0; c < 2; ++c)
    callers.emplace_back([&, c] {
      for (int round = 0; round < 20; ++round) {
        std::vector<long> part(2, 0);  // one slot per worker
        pool.parallel_for(200, [&](std::size_t i, int w) {
          part[static_cast<std::size_t>(w)] += static_cast<long>(i);
        });
        sums[static_cast<std::size_t>(c)] += part[0] + part[1];
      }
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(sums[0], 20L * 199 * 200 / 2);
  EXPECT_EQ(sums[1], 20L * 199 * 200 / 2);
}

// --- inner loops ---------------------------------------------------------------------------------

std::vector<const cpu::TileOps*> all_ops() {
  std::vector<const cpu::TileOps*> v{&cpu::generic_tile_ops()};
  for (const cpu::TileOps* ops :
       {cpu::avx2_tile_ops(), cpu::avx512_tile_ops(), cpu::neon_tile_ops()})
    if (ops != nullptr) v.push_back(ops);
  return v;
}

TEST(KernelTileOps, GemmMatchesNaive) {
  USP_TEST_RNG(rng);
  std::uniform_real_distribution<float> u(-1, 1);
  for (const auto* ops : all_ops()) {
    SCOPED_TRACE(ops->isa);
    for (int M : {1, 5, 6, 7, 64})
      for (int N : {16, 48, 64, 80, 256})
        for (int K : {1, 13, 64}) {
          const int lda = 70, ldb = 260, ldc = 270;
          std::vector<float> A(static_cast<std::size_t>(std::max(M, K)) * lda),
              B(static_cast<std::size_t>(K) * ldb), C(static_cast<std::size_t>(M) * ldc), C2;
          for (auto& x : A) x = u(rng);
          for (auto& x : B) x = u(rng);
          for (auto& x : C) x = u(rng);
          C2 = C;
          const std::vector<float> C0 = C;
          ops->gemm(M, N, K, A.data(), lda, B.data(), ldb, C.data(), ldc, true);
          ops->gemm_tn(M, N, K, A.data(), lda, B.data(), ldb, C2.data(), ldc, false);
          for (int i = 0; i < M; ++i)
            for (int j = 0; j < N; ++j) {
              double want = 0, want_tn = 0;
              for (int k = 0; k < K; ++k) {
                want += static_cast<double>(A[static_cast<std::size_t>(i * lda + k)]) *
                        B[static_cast<std::size_t>(k * ldb + j)];
                want_tn += static_cast<double>(A[static_cast<std::size_t>(k * lda + i)]) *
                           B[static_cast<std::size_t>(k * ldb + j)];
              }
              const auto ci = static_cast<std::size_t>(i * ldc + j);
              ASSERT_NEAR(C[ci], C0[ci] + want, 1e-4) << M << "x" << N << "x" << K;
              ASSERT_NEAR(C2[ci], want_tn, 1e-4) << M << "x" << N << "x" << K;
            }
        }
  }
}

TEST(KernelTileOps, GemmAccumulates) {
  for (const auto* ops : all_ops()) {
    SCOPED_TRACE(ops->isa);
    std::vector<float> A(7 * 9, 0.5f), B(9 * 32, 2.0f), C(7 * 32, 1.0f);
    ops->gemm(7, 32, 9, A.data(), 9, B.data(), 32, C.data(), 32, true);
    for (float x : C) ASSERT_EQ(x, 1.0f + 9.0f);
    ops->gemm(7, 32, 9, A.data(), 9, B.data(), 32, C.data(), 32, false);
    for (float x : C) ASSERT_EQ(x, 9.0f);
  }
}

TEST(KernelTileOps, Exp2IsAccurate) {
  for (const auto* ops : all_ops()) {
    SCOPED_TRACE(ops->isa);
    std::vector<float> x(4096), y(4096);
    for (std::size_t i = 0; i < x.size(); ++i)
      x[i] = -140.0f + 150.0f * static_cast<float>(i) / 4096.0f;
    y = x;
    const float sum = ops->exp2_row(y.data(), static_cast<int>(y.size()), 1.0f, 0.0f);
    double want_sum = 0, worst = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
      const double want = std::exp2(static_cast<double>(x[i]));
      want_sum += want;
      if (want > 1e-30) worst = std::max(worst, std::fabs(y[i] - want) / want);
    }
    EXPECT_LE(worst, 4e-7);
    EXPECT_NEAR(sum, want_sum, 1e-5 * want_sum);
    // -inf (masked scores) gives exactly 0; far below the range underflows to 0.
    // Subnormal results (x < -126) are at most 2^-126 (0 on the vector paths, which never compute
    // a subnormal: it would cost a microcode assist per instruction).
    std::vector<float> m(16, -std::numeric_limits<float>::infinity());
    m[1] = -1000.0f;
    m[2] = 0.0f;
    m[3] = -130.0f;
    m[4] = -126.0f;
    EXPECT_NEAR(ops->exp2_row(m.data(), 16, 1.0f, 0.0f), 1.0f, 1e-37f);
    EXPECT_EQ(m[0], 0.0f);
    EXPECT_EQ(m[1], 0.0f);
    EXPECT_EQ(m[2], 1.0f);
    EXPECT_LE(m[3], std::ldexp(1.0f, -126));
    EXPECT_GE(m[3], 0.0f);
    EXPECT_EQ(m[4], std::ldexp(1.0f, -126));
  }
}

// The fused tile members, where a TileOps has them, against their definition in double.
TEST(KernelTileOps, FusedSoftmaxStepsMatchTheirDefinition) {
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  USP_TEST_RNG(rng);
  std::uniform_real_distribution<float> u(-4, 4);
  int tested = 0;
  for (const auto* ops : all_ops()) {
    SCOPED_TRACE(ops->isa);
    const int rows = 7, n = 48, ld = 64, nacc = 32, ldacc = 40;
    const float c = 1.3f;
    std::vector<float> s(rows * ld), dp(rows * ld), acc(rows * ldacc), m(rows), l(rows);
    for (auto& x : s) x = u(rng);
    for (auto& x : dp) x = u(rng);
    for (auto& x : acc) x = u(rng);
    for (int r = 0; r < rows; ++r) {
      m[static_cast<std::size_t>(r)] = 2.0f * u(rng);
      l[static_cast<std::size_t>(r)] = 1.0f + std::fabs(u(rng));
    }
    m[0] = kNegInf;  // first visible tile of row 0: acc and l are 0
    l[0] = 0.0f;
    std::fill(acc.begin(), acc.begin() + ldacc, 0.0f);
    m[1] = 100.0f;                                               // row 1: the running max stays
    std::fill(s.begin() + 2 * ld, s.begin() + 3 * ld, kNegInf);  // row 2: nothing visible
    for (int j = 20; j < n; ++j) s[static_cast<std::size_t>(3 * ld + j)] = kNegInf;  // masked
    if (ops->softmax_step != nullptr) {
      ++tested;
      auto s2 = s;
      auto acc2 = acc, m2 = m, l2 = l;
      ops->softmax_step(s2.data(), rows, n, ld, c, m2.data(), l2.data(), acc2.data(), nacc, ldacc);
      for (int r = 0; r < rows; ++r) {
        const auto R = static_cast<std::size_t>(r);
        double mx = -INFINITY;
        for (int j = 0; j < n; ++j) mx = std::max<double>(mx, s[R * ld + j]);
        if (mx == -INFINITY) {
          for (int j = 0; j < n; ++j) ASSERT_EQ(s2[R * ld + j], 0.0f) << r;
          EXPECT_EQ(m2[R], m[R]);
          EXPECT_EQ(l2[R], l[R]);
          continue;
        }
        const double m_new = std::max<double>(m[R], c * mx);
        const double alpha = m[R] == kNegInf ? 0.0 : std::exp2(m[R] - m_new);
        double sum = 0;
        for (int j = 0; j < n; ++j) {
          const double p = std::exp2(c * static_cast<double>(s[R * ld + j]) - m_new);
          sum += p;
          ASSERT_NEAR(s2[R * ld + j], p, 1e-6 * p + 1e-30) << r << " " << j;
        }
        EXPECT_EQ(m2[R], static_cast<float>(m_new)) << r;
        EXPECT_NEAR(l2[R], l[R] * alpha + sum, 1e-6 * (l[R] * alpha + sum)) << r;
        for (int j = 0; j < nacc; ++j)
          ASSERT_NEAR(acc2[R * ldacc + j], acc[R * ldacc + j] * alpha, 1e-6) << r << " " << j;
        for (int j = nacc; j < ldacc; ++j) ASSERT_EQ(acc2[R * ldacc + j], acc[R * ldacc + j]);
      }
    }
    if (ops->probs_grads != nullptr) {
      std::vector<float> lse2(rows), D(rows);
      for (int r = 0; r < rows; ++r) {
        lse2[static_cast<std::size_t>(r)] = 6.0f + u(rng);
        D[static_cast<std::size_t>(r)] = u(rng);
      }
      lse2[4] = kNegInf;  // a row that sees no key: no gradient
      auto s2 = s, dp2 = dp;
      ops->probs_grads(s2.data(), dp2.data(), rows, n, ld, c, lse2.data(), D.data());
      for (int r = 0; r < rows; ++r)
        for (int j = 0; j < n; ++j) {
          const auto i = static_cast<std::size_t>(r * ld + j);
          const auto R = static_cast<std::size_t>(r);
          const double p =
              lse2[R] == kNegInf ? 0.0 : std::exp2(c * static_cast<double>(s[i]) - lse2[R]);
          ASSERT_NEAR(s2[i], p, 1e-6 * p + 1e-30) << r << " " << j;
          ASSERT_NEAR(dp2[i], p * (dp[i] - D[R]), 1e-6 * std::fabs(p * (dp[i] - D[R])) + 1e-30)
              << r << " " << j;
        }
    }
  }
  // Every vector path has the fused steps.
  EXPECT_EQ(tested, static_cast<int>(all_ops().size()) - 1);
}

TEST(KernelTileOps, LoadRowConverts) {
  for (const auto* ops : all_ops()) {
    SCOPED_TRACE(ops->isa);
    std::vector<std::uint16_t> h(37), b(37);
    std::vector<float> want(37), got(37);
    for (int i = 0; i < 37; ++i) {
      want[static_cast<std::size_t>(i)] = static_cast<float>(i) * 0.25f - 3.0f;
      h[static_cast<std::size_t>(i)] = f32_to_f16(want[static_cast<std::size_t>(i)]);
      b[static_cast<std::size_t>(i)] = f32_to_bf16(want[static_cast<std::size_t>(i)]);
    }
    ops->load_row(h.data(), DType::f16, got.data(), 37);
    EXPECT_EQ(got, want);
    ops->load_row(b.data(), DType::bf16, got.data(), 37);
    EXPECT_EQ(got, want);
    ops->load_row(want.data(), DType::f32, got.data(), 37);
    EXPECT_EQ(got, want);
  }
}

}  // namespace
}  // namespace usp
