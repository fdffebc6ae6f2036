// Test harness for the sequence-parallel algorithms: builds a random global problem, runs
// usp::Attention on u·r local ranks (each with its own CPU kernel and allocator), gathers the
// results in global token order and compares them with the float64 reference on the global
// problem.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <ostream>
#include <random>
#include <string>
#include <vector>

#include "kernel/reference/reference.hpp"
#include "support/random.hpp"
#include "support/tolerance.hpp"
#include "usp/usp.hpp"

namespace usp::test {

// One distributed test case: the mesh, the attention options and the global shapes.
struct UspCase {
  RingType type = RingType::zigzag;
  int ulysses = 1;
  int ring = 1;
  int data = 1;
  Placement placement = Placement::ulysses_inner;
  bool causal = true;
  DType dtype = DType::f32;
  std::int64_t b = 1, s = 96, h = 8, hkv = 8, d = 16;
  std::uint32_t seed = 1;
  bool backward = true;
  int double_ring = 0;                     // UspConfig::double_ring
  int threads = 1;                         // CPU kernel threads per rank
  Window window{};                         // UspConfig::window
  std::vector<std::int64_t> cu_seqlens{};  // UspConfig::cu_seqlens
  int head_chunks = 0;                     // UspConfig::head_chunks (0: automatic)

  // The global problem's mask (the reference's): local causal/none, or the general one.
  BlockMask global_mask() const {
    AttentionMask m{causal, window, cu_seqlens};
    if (m.plain()) return causal ? MaskMode::causal : MaskMode::none;
    return BlockMask(std::make_shared<const AttentionMask>(std::move(m)), Positions{}, Positions{});
  }

  std::string name() const {
    return detail::concat(
        ring_type_name(type), double_ring > 0 ? detail::concat("_dr", double_ring) : std::string(),
        "_", ulysses, "x", ring, causal ? "_causal" : "",
        window.unbounded() ? std::string() : detail::concat("_w", window.left, ",", window.right),
        cu_seqlens.empty() ? std::string() : detail::concat("_docs", cu_seqlens.size() - 1), "_",
        dtype_name(dtype), "_b", b, "s", s, "h", h, "kv", hkv, "d", d, " seed ", seed);
  }
};

// gtest prints parameters with this.
inline void PrintTo(const UspCase& p, std::ostream* os) {
  *os << p.name();
}

// Global inputs, fp32 holding values exactly representable in the problem's dtype.
struct Inputs {
  Tensor q, k, v, dout;
};

inline Inputs make_inputs(const UspCase& p) {
  std::mt19937 gen(p.seed);
  const auto draw = [&](const Tensor::Dims& shape) {
    return to_dtype(random_normal(shape, p.dtype, gen), DType::f32);
  };
  Inputs in;
  in.q = draw({p.b, p.s, p.h, p.d});
  in.k = draw({p.b, p.s, p.hkv, p.d});
  in.v = draw({p.b, p.s, p.hkv, p.d});
  in.dout = draw({p.b, p.s, p.h, p.d});
  return in;
}

// Gathered results, global token order, fp32.
struct Results {
  Tensor out, lse, dq, dk, dv;
  UspTimings timings;  // rank 0's
};

// Every element of out, lse, dq, dk and dv the same bits in a and b (two runs of one problem).
inline void expect_same_bits(const Results& a, const Results& b) {
  EXPECT_EQ(to_doubles(a.out), to_doubles(b.out));
  EXPECT_EQ(to_doubles(a.lse), to_doubles(b.lse));
  EXPECT_EQ(to_doubles(a.dq), to_doubles(b.dq));
  EXPECT_EQ(to_doubles(a.dk), to_doubles(b.dk));
  EXPECT_EQ(to_doubles(a.dv), to_doubles(b.dv));
}

// p.threads CPU kernel threads per rank (one by default).
inline AttentionOptions options_of(const UspCase& p) {
  return {.ulysses = p.ulysses,
          .ring = p.ring,
          .data = p.data,
          .ring_type = p.type,
          .placement = p.placement,
          .causal = p.causal,
          .double_ring = p.double_ring,
          .window = p.window,
          .cu_seqlens = p.cu_seqlens,
          .head_chunks = p.head_chunks,
          .threads = p.threads};
}

inline Results run_usp(const UspCase& p, const Inputs& in,
                       std::chrono::milliseconds timeout = std::chrono::seconds(60)) {
  const int sp = p.ulysses * p.ring, world = p.data * sp;
  const Layout layout{.type = p.type, .seq_len = p.s, .ulysses = p.ulysses, .ring = p.ring};
  const Tensor q = to_dtype(in.q, p.dtype), k = to_dtype(in.k, p.dtype),
               v = to_dtype(in.v, p.dtype), dout = to_dtype(in.dout, p.dtype);
  std::vector<Tensor> out(world), lse(world), dq(world), dk(world), dv(world);
  std::vector<std::size_t> leaked(world, 0);
  UspTimings timings;
  run_local(
      world,
      [&](Communicator& comm) {
        Attention att(comm, options_of(p));
        {
          const MeshCoord c = att.mesh().coord;
          const std::size_t slot =
              static_cast<std::size_t>(c.data * sp + c.ring * p.ulysses + c.ulysses);
          const Tensor ql = att.shard(q), kl = att.shard(k), vl = att.shard(v);
          const UspAttention::Output o = att.forward(ql, kl, vl);
          out[slot] = to_dtype(o.out, DType::f32);
          lse[slot] = to_dtype(o.lse, DType::f32);
          if (p.backward) {
            const UspAttention::Grads g = att.backward(ql, kl, vl, o.out, o.lse, att.shard(dout));
            EXPECT_EQ(g.dq.dtype(), p.dtype);
            EXPECT_EQ(g.dk.dtype(), p.dtype);
            EXPECT_EQ(g.dv.dtype(), p.dtype);
            dq[slot] = to_dtype(g.dq, DType::f32);
            dk[slot] = to_dtype(g.dk, DType::f32);
            dv[slot] = to_dtype(g.dv, DType::f32);
          }
          EXPECT_EQ(o.out.dtype(), p.dtype);
          if (comm.rank() == 0) timings = att.timings();
        }
        // Every tensor of the rank is gone: its allocator must hold nothing.
        leaked[static_cast<std::size_t>(comm.rank())] = att.allocator().stats().current;
      },
      timeout);
  for (int r = 0; r < world; ++r) EXPECT_EQ(leaked[r], 0u) << "rank " << r << " kept memory";
  // Every data-parallel group ran the same problem: their results must agree bit for bit.
  for (int i = sp; i < world; ++i) {
    const std::size_t a = static_cast<std::size_t>(i), o = static_cast<std::size_t>(i % sp);
    EXPECT_EQ(to_doubles(out[a]), to_doubles(out[o])) << "data-parallel rank " << i;
    if (p.backward) {
      EXPECT_EQ(to_doubles(dk[a]), to_doubles(dk[o])) << "data-parallel rank " << i;
    }
  }
  auto group0 = [&](const std::vector<Tensor>& all) {
    return std::vector<Tensor>(all.begin(), all.begin() + sp);
  };
  Results res;
  res.out = unshard(layout, group0(out), 1);
  res.lse = unshard(layout, group0(lse), 2);
  if (p.backward) {
    res.dq = unshard(layout, group0(dq), 1);
    res.dk = unshard(layout, group0(dk), 1);
    res.dv = unshard(layout, group0(dv), 1);
  }
  res.timings = timings;
  return res;
}

struct ErrorSet {
  double out = 0, lse = 0, dq = 0, dk = 0, dv = 0;
};
struct Errors : ErrorSet {
  ErrorSet naive;  // the same errors of a naive attention in the case's dtype
};

// Relative errors of the distributed run against the float64 reference on the global problem,
// with those of a naive attention in the case's dtype (support/tolerance.hpp) beside them.
inline Errors errors_vs_reference(const UspCase& p, const Inputs& in, const Results& res) {
  const Tensor q = to_dtype(in.q, p.dtype), k = to_dtype(in.k, p.dtype),
               v = to_dtype(in.v, p.dtype), dout = to_dtype(in.dout, p.dtype);
  const BlockMask mask = p.global_mask();
  const double scale = 1.0 / std::sqrt(static_cast<double>(p.d));
  const float scale_f = static_cast<float>(scale);
  const reference::ForwardResult f = reference::forward(q, k, v, mask, scale);
  const NaiveForward nf = naive_forward(q, k, v, mask, scale_f);
  Errors e;
  ErrorSet& n = e.naive;
  e.out = relative_error(to_doubles(res.out), f.out);
  e.lse = relative_error(to_doubles(res.lse), f.lse);
  n.out = relative_error(nf.out, f.out);
  n.lse = relative_error(nf.lse, f.lse);
  if (p.backward) {
    const reference::BackwardResult g = reference::backward(q, k, v, dout, mask, scale);
    const NaiveBackward nb = naive_backward(q, k, v, dout, mask, scale_f);
    e.dq = relative_error(to_doubles(res.dq), g.dq);
    e.dk = relative_error(to_doubles(res.dk), g.dk);
    e.dv = relative_error(to_doubles(res.dv), g.dv);
    n.dq = relative_error(nb.dq, g.dq);
    n.dk = relative_error(nb.dk, g.dk);
    n.dv = relative_error(nb.dv, g.dv);
  }
  return e;
}

inline Errors run_and_compare(const UspCase& p) {
  const Inputs in = make_inputs(p);
  return errors_vs_reference(p, in, run_usp(p, in));
}

// Each error within the relative bound of support/tolerance.hpp: at most kNaiveMultiple × the
// naive same-dtype run's error plus a floor, and never above the fixed acceptance bound (fp32
// 1e-5 for out and lse, 1e-4 for the gradients; bf16/fp16 2e-2).
inline void expect_within_bounds(const UspCase& p, const Errors& e) {
  const bool f32 = p.dtype == DType::f32;
  const Tolerance fwd{f32 ? 1e-5 : 2e-2}, bwd{f32 ? 1e-4 : 2e-2, kNaiveMultiple, kGradFloor};
  const ErrorSet& n = e.naive;
  EXPECT_TRUE(within(e.out, n.out, fwd)) << "out " << p.name();
  EXPECT_TRUE(within(e.lse, n.lse, fwd)) << "lse " << p.name();
  if (p.backward) {
    EXPECT_TRUE(within(e.dq, n.dq, bwd)) << "dq " << p.name();
    EXPECT_TRUE(within(e.dk, n.dk, bwd)) << "dk " << p.name();
    EXPECT_TRUE(within(e.dv, n.dv, bwd)) << "dv " << p.name();
  }
}

}  // namespace usp::test
