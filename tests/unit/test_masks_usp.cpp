// Packed documents and sliding windows through USP: every ring type × (u, r) × causal or not ×
// fp32/bf16, forward and backward, against the float64 reference with the same mask; documents
// of length 1, odd, longer than a shard and with a boundary on a chunk boundary; windows smaller
// than, equal to and larger than a shard; both together; GQA; ring steps that see nothing skip
// their kernel call; the named errors.
#include <gtest/gtest.h>

#include <atomic>
#include <cctype>
#include <memory>
#include <string>
#include <vector>

#include "support/cases.hpp"
#include "support/distributed.hpp"
#include "support/errors.hpp"
#include "usp/backend.hpp"

namespace usp::test {
namespace {

// S = 96: shards of 12 on 8 ranks; zigzag chunks of 12 (r = 4) and 24 (r = 2).
const std::vector<std::int64_t> kDocs = {0, 1, 2, 9, 24, 41, 48, 58, 96};

struct MaskVariant {
  const char* name;
  Window window;
  std::vector<std::int64_t> cu_seqlens;
};

const std::vector<MaskVariant> kVariants = {
    {"docs", {}, kDocs},        {"window7_3", {7, 3}, {}},
    {"window12", {12, 12}, {}}, {"docs_window24", {24, -1}, kDocs},
    {"window60", {60, 60}, {}},
};

std::vector<UspCase> mask_matrix() {
  std::vector<UspCase> out;
  std::uint32_t seed = 700;
  for (auto [u, r] :
       std::vector<std::pair<int, int>>{{1, 2}, {2, 1}, {1, 4}, {2, 2}, {4, 1}, {2, 4}})
    for (RingType t : kRingTypes)
      for (bool causal : {true, false})
        for (DType dt : {DType::f32, DType::bf16})
          for (const MaskVariant& m : kVariants) {
            UspCase p{.type = t, .ulysses = u, .ring = r, .causal = causal, .dtype = dt};
            p.s = 96;
            p.h = 8;
            p.hkv = 4;
            p.window = m.window;
            p.cu_seqlens = m.cu_seqlens;
            p.seed = seed++;
            out.push_back(p);
          }
  return out;
}

class UspMasks : public ::testing::TestWithParam<UspCase> {};

TEST_P(UspMasks, ForwardAndBackwardMatchReference) {
  expect_within_bounds(GetParam(), run_and_compare(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Masks, UspMasks, ::testing::ValuesIn(mask_matrix()), [](const auto& info) {
  std::string n = info.param.name();
  n = n.substr(0, n.find(' '));
  for (char& c : n)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
});

TEST(UspMasks, GqaWithFewerKvHeadsThanUlyssesAndTheDoubleRing) {
  for (RingType t : kPassingRingTypes) {
    UspCase p{.type = t, .ulysses = 4, .ring = 2, .s = 96, .h = 8, .hkv = 2, .seed = 77};
    p.window = {20, 0};
    p.cu_seqlens = kDocs;
    expect_within_bounds(p, run_and_compare(p));
    UspCase q{.type = t, .ring = 4, .causal = false, .s = 96, .h = 4, .hkv = 2, .seed = 78};
    q.double_ring = 2;
    q.cu_seqlens = kDocs;
    expect_within_bounds(q, run_and_compare(q));
  }
}

// Counts the forward and backward calls it passes on to the CPU kernel.
class CountingKernel final : public AttentionKernel {
 public:
  explicit CountingKernel(Allocator& a) : k_(make_cpu_kernel(1, &a)) {}
  Device device() const override { return k_->device(); }
  std::string name() const override { return "counting " + k_->name(); }
  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
               float scale, Tensor& out, Tensor& lse) override {
    ++calls;
    k_->forward(q, k, v, mask, scale, out, lse);
  }
  bool forward_accumulate(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
                          float scale, Tensor& out, Tensor& lse) override {
    ++calls;
    return k_->forward_accumulate(q, k, v, mask, scale, out, lse);
  }
  void backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                const Tensor& lse, const Tensor& dout, const BlockMask& mask, float scale,
                Tensor& dq, Tensor& dk, Tensor& dv, bool accumulate) override {
    ++calls;
    k_->backward(q, k, v, out, lse, dout, mask, scale, dq, dk, dv, accumulate);
  }
  void merge(Tensor& o, Tensor& l, const Tensor& ob, const Tensor& lb) override {
    k_->merge(o, l, ob, lb);
  }
  void fill_zero(Tensor& t) override { k_->fill_zero(t); }
  void fill_neg_inf(Tensor& t) override { k_->fill_neg_inf(t); }
  void copy(const Tensor& s, Tensor& d) override { k_->copy(s, d); }
  void add(const Tensor& s, Tensor& d) override { k_->add(s, d); }
  int calls = 0;

 private:
  std::unique_ptr<AttentionKernel> k_;
};

TEST(UspMasks, RingStepsThatSeeNothingMakeNoKernelCall) {
  // Basic ring of 4 over 64 tokens, one document per rank's block: only the step with my own
  // block sees anything, forward and backward. With a window of 3 (causal), every rank sees its
  // own block and its predecessor's.
  // The documents case needs no transfer at all (the ring stops before its first step; allgather
  // sends nothing), the window case one step of the ring.
  struct Case {
    RingType type;
    Window w;
    std::vector<std::int64_t> cu;
    int forward_calls, backward_calls;  // per rank
    bool sends;
  };
  for (const Case& c :
       {Case{RingType::basic, {}, {0, 16, 32, 48, 64}, 1, 1, false},
        Case{RingType::allgather, {}, {0, 8, 16, 24, 32, 40, 48, 56, 64}, 1, 1, false},
        Case{RingType::basic, {3, 0}, {}, 2, 2, true}}) {
    std::vector<int> fwd(4), bwd(4);
    std::vector<std::int64_t> bytes(4);
    run_local(4, [&](Communicator& comm) {
      HostAllocator alloc;
      CountingKernel kernel(alloc);
      // One call per forward (no head chunks): the counts are the ring's steps.
      UspConfig cfg{.ring_type = c.type, .ring = 4, .causal = true, .head_chunks = 1};
      cfg.window = c.w;
      cfg.cu_seqlens = c.cu;
      UspAttention att(comm, kernel, alloc, cfg);
      std::mt19937 gen(static_cast<std::uint32_t>(comm.rank() + 5));
      const Tensor q = random_normal({1, 16, 2, 8}, DType::f32, gen);
      const UspAttention::Output o = att.forward(q, q, q);
      fwd[static_cast<std::size_t>(comm.rank())] = kernel.calls;
      kernel.calls = 0;
      att.backward(q, q, q, o.out, o.lse, q);
      bwd[static_cast<std::size_t>(comm.rank())] = kernel.calls;
      bytes[static_cast<std::size_t>(comm.rank())] = att.timings().bytes_sent;
    });
    for (int r = 0; r < 4; ++r) {
      // Rank 0 has no predecessor within the window's reach before token 0.
      const int want_f = r == 0 ? 1 : c.forward_calls, want_b = r == 0 ? 1 : c.backward_calls;
      EXPECT_EQ(fwd[static_cast<std::size_t>(r)], want_f) << "rank " << r;
      EXPECT_EQ(bwd[static_cast<std::size_t>(r)], want_b) << "rank " << r;
      if (c.sends) {
        EXPECT_GT(bytes[static_cast<std::size_t>(r)], 0) << "rank " << r;
      } else {
        EXPECT_EQ(bytes[static_cast<std::size_t>(r)], 0) << "rank " << r;
      }
    }
  }
}

TEST(UspMasks, BadDocumentsAndWindowsAreNamedOnEveryRank) {
  const auto message = [](const AttentionOptions& o, std::int64_t b, std::int64_t s) {
    std::vector<std::string> got(2);
    run_local(2, [&](Communicator& comm) {
      try {
        Attention att(comm, o);
        std::mt19937 gen(3);
        const Tensor q = random_normal({b, s / 2, 2, 8}, DType::f32, gen);
        att.forward(q, q, q);
      } catch (const Error& e) {
        got[static_cast<std::size_t>(comm.rank())] = e.what();
      }
    });
    EXPECT_EQ(got[0], got[1]);
    return got[0];
  };
  AttentionOptions o{.ring = 2, .threads = 1};
  o.cu_seqlens = {0, 10, 16};
  EXPECT_TRUE(contains_all(message(o, 1, 32), {"cu_seqlens must end at the sequence length 32"}));
  EXPECT_TRUE(contains_all(message(o, 2, 16), {"cu_seqlens needs batch size 1"}));
  o.cu_seqlens = {0, 10, 10, 16};
  EXPECT_TRUE(contains_all(message(o, 1, 16), {"cu_seqlens must increase"}));
  o.cu_seqlens = {};
  o.window = {-3, 0};
  EXPECT_TRUE(contains_all(message(o, 1, 16), {"window (-3, 0) must hold values >= -1"}));
}

TEST(UspMasks, DocumentsCanChangeBetweenCalls) {
  UspCase p{.type = RingType::zigzag, .ulysses = 2, .ring = 2, .s = 96, .h = 4, .hkv = 2};
  const Inputs in = make_inputs(p);
  std::vector<Tensor> a(4), b(4);
  run_local(4, [&](Communicator& comm) {
    Attention att(comm, options_of(p));
    const Tensor q = att.shard(in.q), k = att.shard(in.k), v = att.shard(in.v);
    att.set_documents(kDocs);
    a[static_cast<std::size_t>(comm.rank())] = att.gather(att.forward(q, k, v).out);
    att.set_documents({});
    b[static_cast<std::size_t>(comm.rank())] = att.gather(att.forward(q, k, v).out);
  });
  UspCase with_docs = p;
  with_docs.cu_seqlens = kDocs;
  const Results ref_docs = run_usp(with_docs, in), ref_plain = run_usp(p, in);
  EXPECT_EQ(to_doubles(a[0]), to_doubles(ref_docs.out));
  EXPECT_EQ(to_doubles(b[0]), to_doubles(ref_plain.out));
  EXPECT_NE(to_doubles(a[0]), to_doubles(b[0]));
}

}  // namespace
}  // namespace usp::test
