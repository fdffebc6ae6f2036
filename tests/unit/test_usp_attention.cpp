// USP attention (Ulysses × ring) against the float64 reference on the global problem; error
// growth with world size; configuration and argument checks.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <functional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "kernel/reference/reference.hpp"
#include "support/matrix.hpp"
#include "usp/agree.hpp"
#include "usp/backend.hpp"

namespace usp::test {
namespace {

class UspAttentionMatrix : public ::testing::TestWithParam<UspCase> {};

TEST_P(UspAttentionMatrix, ForwardAndBackwardMatchReference) {
  const UspCase& p = GetParam();
  expect_within_bounds(p, run_and_compare(p));
}

INSTANTIATE_TEST_SUITE_P(UspMatrix, UspAttentionMatrix,
                         ::testing::ValuesIn(matrix({{1, 1}, {2, 2}, {2, 4}, {4, 2}})),
                         [](const auto& info) { return param_name(info.param); });

TEST(UspAttention, ErrorDoesNotGrowWithWorldSize) {
  // fp32, one problem: the error at 8 ranks stays within 2× the single-rank error, per output.
  for (RingType t : {RingType::basic, RingType::stripe, RingType::zigzag}) {
    for (bool causal : {true, false}) {
      UspCase p{.type = t, .causal = causal, .s = 128, .h = 8, .hkv = 8, .d = 32, .seed = 7};
      const Inputs in = make_inputs(p);
      const Errors base = errors_vs_reference(p, in, run_usp(p, in));
      for (auto [u, r] : {std::pair{1, 8}, std::pair{8, 1}, std::pair{2, 4}}) {
        UspCase q = p;
        q.ulysses = u;
        q.ring = r;
        const Errors e = errors_vs_reference(q, in, run_usp(q, in));
        const std::string what = q.name();
        EXPECT_LE(e.out, 2 * base.out) << what << " out vs 1×1 " << base.out;
        EXPECT_LE(e.lse, 2 * base.lse) << what << " lse vs 1×1 " << base.lse;
        EXPECT_LE(e.dq, 2 * base.dq) << what << " dq vs 1×1 " << base.dq;
        EXPECT_LE(e.dk, 2 * base.dk) << what << " dk vs 1×1 " << base.dk;
        EXPECT_LE(e.dv, 2 * base.dv) << what << " dv vs 1×1 " << base.dv;
      }
    }
  }
}

TEST(UspAttention, Bf16BackwardErrorDoesNotGrowWithRingSize) {
  // Partial outputs merge in fp32 and gradients accumulate in fp32, so bf16 inputs give the same
  // error on a ring of 8 as on one rank (within 2×).
  for (RingType t : {RingType::basic, RingType::zigzag}) {
    UspCase p{.type = t, .dtype = DType::bf16, .s = 128, .h = 4, .hkv = 4, .d = 32, .seed = 9};
    const Inputs in = make_inputs(p);
    const Errors base = errors_vs_reference(p, in, run_usp(p, in));
    UspCase q = p;
    q.ring = 8;
    const Errors e = errors_vs_reference(q, in, run_usp(q, in));
    EXPECT_LE(e.out, 2 * base.out) << q.name() << " vs 1×1 " << base.out;
    EXPECT_LE(e.dq, 2 * base.dq) << q.name() << " vs 1×1 " << base.dq;
    EXPECT_LE(e.dk, 2 * base.dk) << q.name() << " vs 1×1 " << base.dk;
    EXPECT_LE(e.dv, 2 * base.dv) << q.name() << " vs 1×1 " << base.dv;
  }
}

// 1, 2, 3 or 8 CPU kernel threads per rank: the same bits (fp16: bf16 may take the AMX path,
// whose backward still depends on the thread count for small blocks).
TEST(UspAttention, SameBitsForAnyThreadsPerRank) {
  for (RingType t : {RingType::zigzag, RingType::allgather, RingType::stripe}) {
    UspCase p{.type = t,
              .ulysses = 2,
              .ring = 2,
              .dtype = DType::f16,
              .s = 64,
              .h = 4,
              .hkv = 2,
              .d = 32,
              .seed = 61};
    const Inputs in = make_inputs(p);
    const Results r1 = run_usp(p, in);
    for (int threads : {2, 3, 8}) {
      UspCase q = p;
      q.threads = threads;
      const Results r = run_usp(q, in);
      SCOPED_TRACE(p.name() + " threads " + std::to_string(threads));
      expect_same_bits(r, r1);
    }
  }
}

// Head chunks: the forward in 2 or 4 calls over shares of the kv heads gives the bits of one
// call (and the backward from either forward the same gradients), every ring type, GQA.
TEST(UspAttention, HeadChunksGiveTheBitsOfOneCall) {
  int compared = 0;
  for (RingType t : kRingTypes)
    for (const auto& [u, r] : {std::pair{1, 4}, std::pair{2, 2}, std::pair{2, 1}})
      for (DType dt : {DType::bf16, DType::f32}) {
        UspCase p{.type = t,
                  .ulysses = u,
                  .ring = r,
                  .dtype = dt,
                  .s = 64,
                  .h = 8,
                  .hkv = 4,
                  .d = 16,
                  .seed = 77,
                  .head_chunks = 1};
        const Inputs in = make_inputs(p);
        const Results one = run_usp(p, in);
        for (int n : {0, 2, 4}) {
          if (n == 4 && u > 1) continue;  // 1 kv head per chunk: not a share Ulysses splits
          UspCase q = p;
          q.head_chunks = n;
          const Results res = run_usp(q, in);
          SCOPED_TRACE(p.name() + " head_chunks " + std::to_string(n));
          expect_same_bits(res, one);
          ++compared;
        }
      }
  EXPECT_EQ(compared, 4 * (2 * 3 + 2 * 2 * 2));
}

TEST(UspAttention, Fp16AndLargerHeads) {
  UspCase p{.type = RingType::stripe,
            .ulysses = 2,
            .ring = 2,
            .dtype = DType::f16,
            .b = 2,
            .s = 120,
            .h = 4,
            .hkv = 2,
            .d = 32};
  expect_within_bounds(p, run_and_compare(p));
}

TEST(UspAttention, RingInnerPlacementAndDataParallel) {
  for (Placement pl : {Placement::ulysses_inner, Placement::ring_inner}) {
    UspCase p{.type = RingType::zigzag,
              .ulysses = 2,
              .ring = 2,
              .data = 2,
              .placement = pl,
              .s = 64,
              .h = 4,
              .hkv = 2};
    expect_within_bounds(p, run_and_compare(p));
  }
}

TEST(UspAttention, RepeatedCallsAndCustomScale) {
  // The same object serves several calls and shapes; timings accumulate and reset.
  run_local(4, [](Communicator& comm) {
    HostAllocator alloc;
    auto kernel = make_cpu_kernel(1, &alloc);
    UspAttention att(comm, *kernel, alloc, {.ulysses = 2, .ring = 2, .scale = 0.5f});
    EXPECT_EQ(att.layout(64).seq_len, 64);
    EXPECT_EQ(att.layout(64).shard_len(), 16);
    std::mt19937 gen(static_cast<std::uint32_t>(comm.rank()));
    for (std::int64_t ls : {16, 8, 16}) {
      const Tensor q = random_tensor({1, ls, 4, 8}, DType::f32, gen);
      const Tensor k = random_tensor({1, ls, 4, 8}, DType::f32, gen);
      const UspAttention::Output o = att.forward(q, k, k);
      EXPECT_EQ(o.out.shape(), q.shape());
      EXPECT_EQ(o.lse.shape(), (Tensor::Dims{1, 4, ls}));
    }
    EXPECT_GT(att.timings().compute_s, 0.0);
    att.reset_timings();
    EXPECT_EQ(att.timings().compute_s, 0.0);
    EXPECT_EQ(att.timings().bytes_sent, 0);
  });
}

TEST(UspAttention, CustomScaleMatchesReference) {
  const std::int64_t s = 32, h = 2, d = 8;
  std::mt19937 gen(11);
  const Tensor q = random_tensor({1, s, h, d}, DType::f32, gen);
  const Tensor k = random_tensor({1, s, h, d}, DType::f32, gen);
  const Tensor v = random_tensor({1, s, h, d}, DType::f32, gen);
  const reference::ForwardResult ref = reference::forward(q, k, v, MaskMode::causal, 0.3);
  // Through the one object: the scale of its options, its shards, its gather on every rank.
  std::vector<Tensor> outs(4);
  run_local(4, [&](Communicator& comm) {
    Attention att(comm, {.ulysses = 2, .ring = 2, .scale = 0.3f, .threads = 1});
    const UspAttention::Output o = att.forward(att.shard(q), att.shard(k), att.shard(v));
    outs[static_cast<std::size_t>(comm.rank())] = att.gather(o.out);
  });
  for (const Tensor& out : outs) EXPECT_LE(relative_error(to_doubles(out), ref.out), 1e-5);
}

// Runs fn on every rank of a world of n; returns each rank's error message ("" when none) and
// checks that run_local rethrew the root cause, which every rank's message carries (a rank either
// fails on its own or is woken by the first failure, with that failure's message).
std::vector<std::string> errors_on_ranks(int n, const std::function<void(Communicator&)>& fn) {
  std::vector<std::string> msgs(static_cast<std::size_t>(n));
  std::string rethrown;
  try {
    run_local(
        n,
        [&](Communicator& comm) {
          try {
            fn(comm);
          } catch (const Error& e) {
            msgs[static_cast<std::size_t>(comm.rank())] = e.what();
            throw;
          }
        },
        std::chrono::seconds(10));
  } catch (const Error& e) {
    rethrown = e.what();
  }
  EXPECT_FALSE(rethrown.empty()) << "run_local did not rethrow";
  for (std::size_t r = 0; r < msgs.size(); ++r)
    EXPECT_NE(msgs[r].find(rethrown), std::string::npos) << "rank " << r << ": " << msgs[r];
  msgs.push_back(rethrown);
  return msgs;
}

void construct(Communicator& comm, const UspConfig& cfg) {
  HostAllocator alloc;
  auto kernel = make_cpu_kernel(1, &alloc);
  UspAttention att(comm, *kernel, alloc, cfg);
}

TEST(UspAttention, MismatchedRingDegreeNamesTheRanks) {
  const auto start = std::chrono::steady_clock::now();
  const std::vector<std::string> msgs = errors_on_ranks(4, [](Communicator& comm) {
    UspConfig cfg;
    cfg.ring = comm.rank() == 3 ? 2 : 4;
    construct(comm, cfg);
  });
  ASSERT_EQ(msgs.size(), 5u);
  for (std::size_t r = 0; r < msgs.size(); ++r) {
    EXPECT_NE(msgs[r].find("configuration mismatch"), std::string::npos) << r << ": " << msgs[r];
    EXPECT_NE(msgs[r].find("rank 3 has ring=2"), std::string::npos) << r << ": " << msgs[r];
    EXPECT_NE(msgs[r].find("rank 0 has ring=4"), std::string::npos) << r << ": " << msgs[r];
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(5));
}

TEST(UspAttention, MismatchedCausalFlagNamesTheRanks) {
  const std::vector<std::string> msgs = errors_on_ranks(4, [](Communicator& comm) {
    UspConfig cfg;
    cfg.ulysses = 2;
    cfg.ring = 2;
    cfg.causal = comm.rank() != 1;
    construct(comm, cfg);
  });
  for (const std::string& m : msgs) {
    EXPECT_NE(m.find("rank 1 has causal=false"), std::string::npos) << m;
    EXPECT_NE(m.find("rank 0 has causal=true"), std::string::npos) << m;
  }
}

// Ranks of a u × r mesh call forward `agreed_calls` times alike, then rank `odd` alone with
// s_local 12 instead of 8: every rank must get the error naming both shapes (within
// errors_on_ranks' timeout, not a hang).
void expect_shape_mismatch_named(int u, int r, int odd, int agreed_calls) {
  const std::vector<std::string> msgs = errors_on_ranks(u * r, [&](Communicator& comm) {
    HostAllocator alloc;
    auto kernel = make_cpu_kernel(1, &alloc);
    UspConfig cfg;
    cfg.ulysses = u;
    cfg.ring = r;
    UspAttention att(comm, *kernel, alloc, cfg);
    USP_TEST_RNG(rng);
    const Tensor same = test::random_normal({1, 8, 2, 8}, DType::f32, rng);
    for (int call = 0; call < agreed_calls; ++call) att.forward(same, same, same);
    const Tensor q = test::random_normal({1, comm.rank() == odd ? 12 : 8, 2, 8}, DType::f32, rng);
    att.forward(q, q, q);
  });
  ASSERT_EQ(msgs.size(), static_cast<std::size_t>(u * r + 1));
  for (const std::string& m : msgs) {
    EXPECT_NE(m.find("input shape mismatch"), std::string::npos) << m;
    EXPECT_NE(m.find(detail::concat("rank ", odd, " has q=[1, 12, 2, 8] fp32")), std::string::npos)
        << m;
    EXPECT_NE(m.find("rank 0 has q=[1, 8, 2, 8] fp32"), std::string::npos) << m;
  }
}

TEST(UspAttention, MismatchedShapesNameTheRanks) {
  expect_shape_mismatch_named(1, 2, 1, 0);
}

// A rank that alone changes shape after calls that agreed is named as on the first call.
TEST(UspAttention, ShapeChangedOnOneRankLaterIsNamed) {
  expect_shape_mismatch_named(2, 2, 2, 2);
}

// check_finite: the rank holding a NaN or an infinity, the tensor and the index are named on
// every rank, forward and backward; without it the call runs and the NaN shows in the output.
TEST(UspAttention, CheckFiniteNamesTensorRankAndIndex) {
  const auto run = [](bool check, int bad_rank, const char* which, float value) {
    return errors_on_ranks(4, [=](Communicator& comm) {
      Attention attn(comm, {.ulysses = 2, .ring = 2, .check_finite = check, .threads = 1});
      USP_TEST_RNG(rng);
      Tensor q = test::random_normal({1, 8, 4, 8}, DType::f32, rng);
      Tensor k = test::random_normal({1, 8, 2, 8}, DType::f32, rng);
      Tensor v = test::random_normal({1, 8, 2, 8}, DType::f32, rng);
      Tensor dout = test::random_normal({1, 8, 4, 8}, DType::f32, rng);
      Tensor& bad = std::string_view(which) == "k" ? k : dout;
      if (comm.rank() == bad_rank) *static_cast<float*>(bad.ptr({0, 3, 1, 5})) = value;
      const UspAttention::Output o = attn.forward(q, k, v);
      if (!check) {
        // The rank's own later tokens see its key (causal), whatever else the ring carries.
        bool any_nan = false;
        for (double x : to_doubles(o.out)) any_nan = any_nan || std::isnan(x);
        if (comm.rank() == bad_rank) {
          EXPECT_TRUE(any_nan);
        }
        USP_FAIL(internal, "ran");  // errors_on_ranks wants an error
      }
      attn.backward(q, k, v, o.out, o.lse, dout);
    });
  };
  for (const std::string& m : run(true, 2, "k", std::nanf("")))
    EXPECT_NE(m.find("check_finite: k holds NaN at [0, 3, 1, 5] on rank 2 (k [1, 8, 2, 8] fp32"),
              std::string::npos)
        << m;
  for (const std::string& m : run(true, 1, "dout", INFINITY))
    EXPECT_NE(m.find("check_finite: dout holds +inf at [0, 3, 1, 5] on rank 1"), std::string::npos)
        << m;
  for (const std::string& m : run(false, 2, "k", std::nanf("")))
    EXPECT_NE(m.find("ran"), std::string::npos) << m;
}

TEST(UspAttention, HeadChunksThatDoNotSplitTheHeadsAreRefused) {
  const std::vector<std::string> msgs = errors_on_ranks(2, [](Communicator& comm) {
    Attention attn(comm, {.ulysses = 2, .ring = 1, .head_chunks = 2, .threads = 1});
    USP_TEST_RNG(rng);
    const Tensor q = test::random_normal({1, 8, 4, 8}, DType::f32, rng);
    const Tensor k = test::random_normal({1, 8, 2, 8}, DType::f32, rng);
    attn.forward(q, k, k);
  });
  for (const std::string& m : msgs)
    EXPECT_NE(m.find("head_chunks 2 must divide the kv heads (2) into shares that ulysses (2) "
                     "divides"),
              std::string::npos)
        << m;
}

std::string forward_error(int u, int r, RingType t, const Tensor::Dims& qs, const Tensor::Dims& ks,
                          DType kdt = DType::f32) {
  const std::vector<std::string> msgs = errors_on_ranks(u * r, [&](Communicator& comm) {
    HostAllocator alloc;
    auto kernel = make_cpu_kernel(1, &alloc);
    UspConfig cfg;
    cfg.ring_type = t;
    cfg.ulysses = u;
    cfg.ring = r;
    UspAttention att(comm, *kernel, alloc, cfg);
    const Tensor q = Tensor::zeros(qs, DType::f32, alloc);
    const Tensor k = Tensor::zeros(ks, kdt, alloc);
    att.forward(q, k, k);
  });
  return msgs.back();
}

TEST(UspAttention, InvalidArgumentsAreNamed) {
  // zigzag 2×2: seq_len = 4·3 = 12 is not divisible by 2·u·r = 8.
  EXPECT_NE(forward_error(2, 2, RingType::zigzag, {1, 3, 4, 8}, {1, 3, 4, 8})
                .find("seq_len 12 is not divisible by 2·ulysses·ring = 8"),
            std::string::npos);
  // 6 heads over 4 ulysses ranks.
  EXPECT_NE(forward_error(4, 1, RingType::basic, {1, 4, 6, 8}, {1, 4, 6, 8})
                .find("nheads 6 is not divisible by ulysses degree 4"),
            std::string::npos);
  // kv heads must divide the query heads.
  EXPECT_NE(forward_error(1, 2, RingType::basic, {1, 4, 6, 8}, {1, 4, 4, 8}).find("kv heads 4"),
            std::string::npos);
  // dtypes must agree.
  EXPECT_NE(forward_error(1, 2, RingType::basic, {1, 4, 2, 8}, {1, 4, 2, 8}, DType::bf16)
                .find("one dtype"),
            std::string::npos);
  // shapes must agree.
  EXPECT_NE(forward_error(1, 2, RingType::basic, {1, 4, 2, 8}, {1, 5, 2, 8}).find("must agree"),
            std::string::npos);
}

TEST(UspAttention, WorldSizeMustMatchTheMesh) {
  const std::vector<std::string> msgs = errors_on_ranks(4, [](Communicator& comm) {
    UspConfig cfg;
    cfg.ulysses = 2;
    cfg.ring = 1;
    construct(comm, cfg);
  });
  for (const std::string& m : msgs) EXPECT_FALSE(m.empty());
}

// usp::Attention: one object from the options; its shard/gather invert each other; its results
// are UspAttention's over the pieces built by hand, bit for bit.
TEST(Attention, ShardAndGatherInvertEachOther) {
  for (Placement pl : {Placement::ulysses_inner, Placement::ring_inner}) {
    std::mt19937 gen(3);
    const Tensor x = random_tensor({2, 48, 3, 4}, DType::f32, gen);
    const Tensor l = random_tensor({2, 3, 48}, DType::f32, gen);
    run_local(4, [&](Communicator& world) {
      Attention attn(world, {.ulysses = 2, .ring = 2, .placement = pl});
      const Tensor xs = attn.shard(x), ls = attn.shard(l, 2);
      EXPECT_EQ(xs.shape(), (Tensor::Dims{2, 12, 3, 4}));
      EXPECT_EQ(ls.shape(), (Tensor::Dims{2, 3, 12}));
      const MeshCoord c = attn.mesh().coord;
      EXPECT_EQ(to_doubles(xs), to_doubles(shard(attn.layout(48), x, c.ring, c.ulysses)));
      EXPECT_EQ(to_doubles(attn.gather(xs)), to_doubles(x));
      EXPECT_EQ(to_doubles(attn.gather(ls, 2)), to_doubles(l));
    });
  }
}

TEST(Attention, SameBitsAsUspAttentionOverItsPieces) {
  UspCase p{.ulysses = 2, .ring = 2, .dtype = DType::bf16, .s = 64};
  const Inputs in = make_inputs(p);
  const Tensor q = to_dtype(in.q, p.dtype), k = to_dtype(in.k, p.dtype),
               v = to_dtype(in.v, p.dtype), dout = to_dtype(in.dout, p.dtype);
  const Layout layout{.type = p.type, .seq_len = p.s, .ulysses = 2, .ring = 2};
  // By hand: allocator, kernel, UspAttention, usp::shard per tensor.
  std::vector<Tensor> out(4), dq(4);
  run_local(4, [&](Communicator& world) {
    HostAllocator alloc;
    auto kernel = make_cpu_kernel(1, &alloc);
    UspAttention att(world, *kernel, alloc, {.ulysses = 2, .ring = 2});
    const MeshCoord c = att.mesh().coord;
    auto mine = [&](const Tensor& x) { return shard(layout, x, c.ring, c.ulysses, 1, alloc); };
    const UspAttention::Output o = att.forward(mine(q), mine(k), mine(v));
    const UspAttention::Grads g = att.backward(mine(q), mine(k), mine(v), o.out, o.lse, mine(dout));
    const auto slot = static_cast<std::size_t>(c.ring * 2 + c.ulysses);
    out[slot] = to_dtype(o.out, DType::f32);
    dq[slot] = to_dtype(g.dq, DType::f32);
  });
  const Tensor ref_out = unshard(layout, out), ref_dq = unshard(layout, dq);
  // One object: the same bits, gathered on every rank.
  std::vector<Tensor> got_out(4), got_dq(4);
  run_local(4, [&](Communicator& world) {
    Attention attn(world, {.ulysses = 2, .ring = 2, .threads = 1});
    EXPECT_EQ(attn.threads(), 1);
    const Tensor ql = attn.shard(q), kl = attn.shard(k), vl = attn.shard(v);
    const UspAttention::Output o = attn.forward(ql, kl, vl);
    const UspAttention::Grads g = attn.backward(ql, kl, vl, o.out, o.lse, attn.shard(dout));
    const Tensor full_out = attn.gather(o.out), full_dq = attn.gather(g.dq);
    got_out[static_cast<std::size_t>(world.rank())] = to_dtype(full_out, DType::f32);
    got_dq[static_cast<std::size_t>(world.rank())] = to_dtype(full_dq, DType::f32);
  });
  for (std::size_t r = 0; r < 4; ++r) {
    EXPECT_EQ(to_doubles(got_out[r]), to_doubles(ref_out)) << "rank " << r;
    EXPECT_EQ(to_doubles(got_dq[r]), to_doubles(ref_dq)) << "rank " << r;
  }
}

TEST(Attention, ThreadsFollowTheOnePolicy) {
  EXPECT_EQ(default_threads(4, 16), 4);
  EXPECT_EQ(default_threads(8, 2), 1);
  EXPECT_EQ(default_threads(0, 3), 3);
  EXPECT_EQ(host_ranks("local", 6), 6);
  EXPECT_EQ(host_ranks("cpu", 2), 2);
  run_local(2, [&](Communicator& world) {
    Attention attn(world, {.ring = 2});
    EXPECT_EQ(attn.threads(), default_threads(2));
    EXPECT_EQ(attn.allocator().device(), Device::host);
  });
}

TEST(Attention, BadOptionsAreNamed) {
  const std::vector<std::string> msgs = errors_on_ranks(
      2, [](Communicator& comm) { Attention attn(comm, {.ring = 2, .threads = -1}); });
  for (const std::string& m : msgs) EXPECT_NE(m.find("threads = -1"), std::string::npos) << m;
  EXPECT_THROW(run_local(1, [](Communicator& comm) { Attention attn(comm, {.backend = "tpu"}); }),
               Error);
}

// The agreement helper every cross-rank check goes through.
TEST(Agreement, NamesTheDifferingRanksAndFieldsOnly) {
  const Fields a{{"ring", "4"}, {"causal", "true"}}, b{{"ring", "2"}, {"causal", "true"}};
  EXPECT_EQ(disagreement({a, a, a}, "configuration mismatch", "hint"), "");
  EXPECT_EQ(disagreement({a, b, a, b}, "configuration mismatch", "call alike"),
            "configuration mismatch across ranks: rank 1 has ring=2; rank 3 has ring=2; rank 0 "
            "has ring=4 (call alike)");
  const Fields longer{{"ring", std::string(80, 'x')}, {"causal", "true"}};
  const std::string m = disagreement({a, longer}, "the command line differs", "same options");
  EXPECT_NE(m.find("ring=" + std::string(57, 'x') + "..."), std::string::npos) << m;
  std::vector<Fields> many(7, a);
  for (std::size_t r = 1; r < many.size(); ++r) many[r] = b;
  EXPECT_NE(disagreement(many, "x", "y").find("(2 more ranks differ); rank 0 has ring=4"),
            std::string::npos);
  EXPECT_NE(disagreement({a, Fields{{"ring", "4"}}}, "x", "y").find("rank 1 has "),
            std::string::npos);
}

TEST(Agreement, AgreeFieldsThrowsOnEveryRank) {
  const std::vector<std::string> msgs = errors_on_ranks(3, [](Communicator& comm) {
    agree_fields(comm, default_host_allocator(), {{"seq_len", comm.rank() == 2 ? "128" : "64"}},
                 "the command line differs", "start every rank with the same options");
  });
  for (const std::string& m : msgs)
    EXPECT_NE(m.find("the command line differs across ranks: rank 2 has seq_len=128; rank 0 has "
                     "seq_len=64 (start every rank with the same options)"),
              std::string::npos)
        << m;
  run_local(3, [](Communicator& comm) {
    agree_fields(comm, default_host_allocator(), {{"seq_len", "64"}}, "x", "y");
  });
}

}  // namespace
}  // namespace usp::test
