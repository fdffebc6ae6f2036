// Masks over global positions: the pure functions (positions, the attention mask's key range,
// the block mask's key ranges, the layouts' positions), the CPU kernel under general masks
// against the float64 reference on every CPU path, and that the work follows the mask.
#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernel/cpu/cpu_kernel.hpp"
#include "kernel/cpu/tiling.hpp"
#include "kernel/reference/reference.hpp"
#include "support/cases.hpp"
#include "support/env.hpp"
#include "support/errors.hpp"
#include "support/kernel.hpp"
#include "support/random.hpp"
#include "usp/cpu.hpp"
#include "usp/layout.hpp"
#include "usp/mask.hpp"

namespace usp::test {
namespace {

std::shared_ptr<const AttentionMask> make_mask(bool causal, Window w,
                                               std::vector<std::int64_t> cu = {}) {
  return std::make_shared<const AttentionMask>(AttentionMask{causal, w, std::move(cu)});
}

TEST(Positions, RunsAndTheirInverse) {
  const Positions one{.start = 5, .stride = 3};
  const Positions two{.start = 4, .stride = 1, .split = 4, .start2 = 20};
  EXPECT_EQ(one.at(0), 5);
  EXPECT_EQ(one.at(4), 17);
  EXPECT_EQ(two.at(3), 7);
  EXPECT_EQ(two.at(4), 20);
  EXPECT_EQ(two.at(6), 22);
  EXPECT_EQ(two.from(2).at(0), 6);
  EXPECT_EQ(two.from(2).at(2), 20);
  EXPECT_EQ(two.from(5).at(0), 21);
  for (const Positions& p : {one, two})
    for (std::int64_t n : {0, 1, 4, 8})
      for (std::int64_t x = -3; x < 40; ++x) {
        std::int64_t want = n;
        for (std::int64_t i = 0; i < n; ++i)
          if (p.at(i) >= x) {
            want = i;
            break;
          }
        EXPECT_EQ(p.first_at_least(x, n), want) << "x " << x << " n " << n;
      }
}

TEST(AttentionMask, KeyPositionsFollowTheRules) {
  const AttentionMask docs{false, {}, {0, 3, 4, 10}};
  EXPECT_EQ(docs.key_positions(0), (std::pair<std::int64_t, std::int64_t>{0, 2}));
  EXPECT_EQ(docs.key_positions(3), (std::pair<std::int64_t, std::int64_t>{3, 3}));
  EXPECT_EQ(docs.key_positions(9), (std::pair<std::int64_t, std::int64_t>{4, 9}));
  const AttentionMask both{true, {2, -1}, {0, 3, 4, 10}};
  EXPECT_EQ(both.key_positions(8), (std::pair<std::int64_t, std::int64_t>{6, 8}));
  EXPECT_EQ(both.key_positions(5), (std::pair<std::int64_t, std::int64_t>{4, 5}));
  const AttentionMask window{false, {1, 2}, {}};
  EXPECT_EQ(window.key_positions(5), (std::pair<std::int64_t, std::int64_t>{4, 7}));
  EXPECT_TRUE((AttentionMask{true, {}, {}}).plain());
  EXPECT_FALSE(window.plain());
}

TEST(AttentionMask, BadDocumentsAndWindowsAreNamed) {
  const auto check = [](const AttentionMask& m, std::int64_t s, std::int64_t b,
                        std::initializer_list<std::string_view> words) {
    EXPECT_TRUE(throws_error([&] { m.validate(s, b); }, ErrorKind::invalid_argument, words));
  };
  check({false, {}, {1, 5, 8}}, 8, 1, {"cu_seqlens must start at 0"});
  check({false, {}, {0, 5, 5, 8}}, 8, 1, {"cu_seqlens must increase: entry 2 (5)"});
  check({false, {}, {0, 5, 7}}, 8, 1, {"cu_seqlens must end at the sequence length 8, ends at 7"});
  check({false, {}, {0, 8}}, 8, 2, {"cu_seqlens needs batch size 1", "got batch 2"});
  check({false, {-2, 0}, {}}, 8, 1, {"window (-2, 0) must hold values >= -1"});
  EXPECT_NO_THROW((AttentionMask{true, {0, 0}, {0, 1, 8}}).validate(8, 1));
}

// Every key range of a block mask is exactly the keys whose positions the rule admits.
TEST(BlockMask, KeyRangesAreTheRuleKeyByKey) {
  USP_TEST_RNG(rng);
  const std::vector<Positions> qs = {
      {}, {.start = 7}, {.start = 2, .stride = 3}, {.start = 0, .split = 5, .start2 = 30}};
  const std::vector<Positions> ks = {
      {}, {.start = 3}, {.start = 1, .stride = 3}, {.start = 5, .split = 5, .start2 = 25}};
  for (bool causal : {false, true})
    for (Window w : {Window{}, Window{3, 0}, Window{-1, 2}, Window{4, 4}})
      for (const std::vector<std::int64_t>& cu :
           {std::vector<std::int64_t>{}, std::vector<std::int64_t>{0, 1, 6, 7, 20, 33, 60}}) {
        const auto m = make_mask(causal, w, cu);
        for (const Positions& q : qs)
          for (const Positions& k : ks) {
            const BlockMask bm(m, q, k);
            const std::int64_t sq = 10, sk = 10;
            for (std::int64_t i = 0; i < sq; ++i) {
              const auto [a, e] = bm.keys(i, sk);
              const auto [lo, hi] = m->key_positions(q.at(i));
              for (std::int64_t j = 0; j < sk; ++j) {
                const bool rule = lo <= k.at(j) && k.at(j) <= hi;
                EXPECT_EQ(a <= j && j < e, rule) << bm.describe() << " i " << i << " j " << j;
              }
            }
          }
      }
  (void)rng;
}

TEST(Layout, RingPositionsAreTheLayoutsTokens) {
  for (RingType t : kRingTypes)
    for (auto [u, r] : kMeshes) {
      const Layout l{.type = t, .seq_len = 2 * 3 * u * r * 4, .ulysses = u, .ring = r};
      for (int rr = 0; rr < r; ++rr) {
        const Positions p = l.ring_positions(rr);
        for (std::int64_t i = 0; i < l.ring_len(); ++i)
          ASSERT_EQ(p.at(i), l.ring_global(rr, i)) << ring_type_name(t) << " " << u << "x" << r;
      }
    }
}

std::vector<CpuPath> vector_paths() {
  std::vector<CpuPath> out;
  for (CpuPath p : {CpuPath::generic, CpuPath::avx2, CpuPath::avx512, CpuPath::amx, CpuPath::neon})
    if (cpu_path_supported(p, cpu_features())) out.push_back(p);
  return out;
}

struct MaskCase {
  std::int64_t sq, sk;
  Positions q, k;
  bool causal;
  Window w;
  std::vector<std::int64_t> cu;
};

// Queries and keys at their own positions (offset, strided, two runs), with windows and
// documents, sizes that are not multiples of a tile.
std::vector<MaskCase> mask_cases() {
  const std::vector<std::int64_t> docs = {0, 1, 2, 37, 38, 101, 130, 300};
  return {
      {100, 100, {}, {}, true, {}, docs},
      {100, 100, {}, {}, false, {17, 5}, {}},
      {70, 130, {.start = 130}, {}, true, {90, -1}, {}},
      {130, 70, {}, {.start = 10}, false, {-1, -1}, docs},
      {90, 90, {.start = 1, .stride = 3}, {.start = 2, .stride = 3}, true, {40, 0}, docs},
      {96,
       96,
       {.start = 0, .split = 48, .start2 = 200},
       {.start = 0, .split = 48, .start2 = 200},
       true,
       {60, 0},
       docs},
      {80, 80, {}, {}, false, {0, 0}, {}},
  };
}

TEST(KernelMasks, GeneralMasksMatchTheReferenceOnEveryPath) {
  for (CpuPath path : vector_paths()) {
    const ScopedCpuPath force(cpu_path_name(path));
    auto kernel = make_cpu_kernel(2);
    for (const MaskCase& mc : mask_cases())
      for (DType dt : {DType::f32, DType::bf16}) {
        const BlockMask mask(make_mask(mc.causal, mc.w, mc.cu), mc.q, mc.k);
        const KernelCase c{
            .b = 1, .sq = mc.sq, .sk = mc.sk, .h = 4, .hkv = 2, .d = 32, .dtype = dt};
        SCOPED_TRACE(std::string(cpu_path_name(path)) + " " + c.str() + " " + mask.describe());
        USP_TEST_RNG(rng);
        const Inputs in = make_inputs(c, rng);
        const double tol = dt == DType::f32 ? 1e-5 : 2e-2;
        const Forward f = run_forward(*kernel, in, mask);
        expect_forward_matches(in, mask, f, tol, tol);
        expect_backward_matches(in, mask, run_backward(*kernel, in, f, mask),
                                {dt == DType::f32 ? 1e-4 : 2e-2, dt == DType::f32 ? 1e-4 : 2e-2,
                                 dt == DType::f32 ? 1e-4 : 2e-2});
        // Folding the block into an accumulator that already holds it gives lse + log 2.
        Forward acc{to_dtype(f.out, DType::f32), to_dtype(f.lse, DType::f32)};
        ASSERT_TRUE(kernel->forward_accumulate(in.q, in.k, in.v, mask, in.scale, acc.out, acc.lse));
        const auto l0 = to_doubles(f.lse), l1 = to_doubles(acc.lse);
        for (std::size_t i = 0; i < l0.size(); ++i) {
          if (std::isinf(l0[i])) {
            EXPECT_TRUE(std::isinf(l1[i]) && l1[i] < 0) << "row " << i << " sees no key";
          } else {
            EXPECT_NEAR(l1[i], l0[i] + std::log(2.0), 1e-4) << "row " << i;
          }
        }
      }
  }
}

// The number of (query tile, key tile) pairs of the forward's grid that hold a visible pair.
std::int64_t visible_tiles(const BlockMask& m, std::int64_t sq, std::int64_t sk) {
  std::int64_t n = 0;
  for (std::int64_t i0 = 0; i0 < sq; i0 += cpu::kBr)
    for (std::int64_t j0 = 0; j0 < sk; j0 += cpu::kBc) {
      bool any = false;
      for (std::int64_t i = i0; i < std::min(sq, i0 + cpu::kBr) && !any; ++i) {
        const auto [a, e] = m.keys(i, sk);
        any = std::max(a, j0) < std::min(e, j0 + cpu::kBc);
      }
      n += any ? 1 : 0;
    }
  return n;
}

TEST(KernelMasks, TheForwardComputesOnlyTilesWithAVisiblePair) {
  // Single-token documents: each query sees itself alone, so only the diagonal tiles hold work;
  // a window of 8: a band; documents of 64 aligned with the tiles: the block diagonal.
  std::vector<std::int64_t> single(513), aligned;
  for (std::int64_t i = 0; i <= 512; ++i) single[static_cast<std::size_t>(i)] = i;
  for (std::int64_t i = 0; i <= 512; i += 64) aligned.push_back(i);
  struct Case {
    bool causal;
    Window w;
    std::vector<std::int64_t> cu;
  };
  for (const Case& cs : {Case{true, {}, single}, Case{false, {}, single}, Case{true, {8, 0}, {}},
                         Case{false, {8, 8}, {}}, Case{true, {}, aligned}}) {
    cpu::CpuKernel kernel(2, cpu::best_tile_ops(), default_host_allocator());
    const BlockMask mask(make_mask(cs.causal, cs.w, cs.cu), Positions{}, Positions{});
    const KernelCase c{.b = 1, .sq = 512, .sk = 512, .h = 1, .hkv = 1, .d = 16};
    USP_TEST_RNG(rng);
    const Inputs in = make_inputs(c, rng);
    run_forward(kernel, in, mask);
    const std::int64_t want = visible_tiles(mask, 512, 512);
    EXPECT_EQ(kernel.score_tiles(), want) << mask.describe();
    EXPECT_LT(want, (512 / cpu::kBr) * (512 / cpu::kBc) / 2) << mask.describe();
  }
}

}  // namespace
}  // namespace usp::test
