// USP attention: Ulysses all-to-all (scatter heads, gather sequence) → ring attention over the
// ring group → reverse all-to-all; the backward pass re-does the forward exchange of its inputs,
// runs the ring backward and sends the gradients home. u = 1 skips the all-to-all, r = 1 runs the
// kernel on the whole ring-local sequence.
#include "usp/attention.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "ring/ring.hpp"
#include "timing.hpp"
#include "ulysses/head_split.hpp"
#include "ulysses/ulysses.hpp"
#include "usp/backend.hpp"
#include "usp/error.hpp"

namespace usp {
namespace {

using detail::HeadExchange;
using detail::HeadSplit;
using Fields = std::vector<std::pair<std::string, std::string>>;

// Checks that every rank of `comm` has the same fields; otherwise throws (on every rank alike) an
// Error naming the ranks that differ from rank 0 and their values.
void check_agreement(const std::string& what, const std::vector<Fields>& per_rank) {
  const Fields& ref = per_rank.at(0);
  std::vector<bool> differs(ref.size(), false);
  std::vector<int> odd_ranks;
  for (std::size_t r = 1; r < per_rank.size(); ++r) {
    bool any = false;
    for (std::size_t f = 0; f < ref.size(); ++f) {
      if (per_rank[r][f].second != ref[f].second) differs[f] = any = true;
    }
    if (any) odd_ranks.push_back(static_cast<int>(r));
  }
  if (odd_ranks.empty()) return;
  std::ostringstream msg;
  auto describe = [&](int r) {
    msg << "rank " << r << " has ";
    const char* sep = "";
    for (std::size_t f = 0; f < ref.size(); ++f) {
      if (!differs[f]) continue;
      const auto& [name, value] = per_rank[static_cast<std::size_t>(r)][f];
      msg << sep << name << "=" << value;
      sep = ", ";
    }
  };
  msg << what << " mismatch across ranks: ";
  const std::size_t shown = std::min<std::size_t>(odd_ranks.size(), 4);
  for (std::size_t i = 0; i < shown; ++i) {
    describe(odd_ranks[i]);
    msg << "; ";
  }
  if (shown < odd_ranks.size()) msg << "(" << odd_ranks.size() - shown << " more ranks differ); ";
  describe(0);
  msg << " (every rank must construct UspAttention and call it alike)";
  USP_FAIL(invalid_argument, msg.str());
}

// All-gathers a POD from every rank of comm (through memory from `alloc` when comm is on a
// device).
template <class T>
std::vector<T> allgather_pod(Communicator& comm, Allocator& alloc, const T& mine,
                             UspTimings& timings) {
  std::vector<T> all(static_cast<std::size_t>(comm.size()));
  const auto t0 = detail::Clock::now();
  allgather_host(comm, alloc, &mine, all.data(), sizeof(T));
  const double dt = detail::seconds_since(t0);
  timings.comm_wait_s += dt;
  timings.comm_total_s += dt;
  return all;
}

struct ConfigDigest {
  std::int32_t ring_type, ulysses, ring, data, placement, causal;
  std::uint32_t scale_bits;
};

ConfigDigest digest(const UspConfig& c) {
  return {static_cast<std::int32_t>(c.ring_type),
          c.ulysses,
          c.ring,
          c.data,
          static_cast<std::int32_t>(c.placement),
          c.causal ? 1 : 0,
          std::bit_cast<std::uint32_t>(c.scale)};
}

Fields fields(const ConfigDigest& c) {
  const auto ring_type = static_cast<RingType>(c.ring_type);
  const auto placement = static_cast<Placement>(c.placement);
  const bool known_type = c.ring_type >= 0 && c.ring_type <= 2;
  const bool known_placement = c.placement >= 0 && c.placement <= 1;
  return {{"ring_type", known_type ? ring_type_name(ring_type) : std::to_string(c.ring_type)},
          {"ulysses", std::to_string(c.ulysses)},
          {"ring", std::to_string(c.ring)},
          {"data", std::to_string(c.data)},
          {"placement", known_placement ? placement_name(placement) : std::to_string(c.placement)},
          {"causal", c.causal ? "true" : "false"},
          {"scale", detail::concat(std::bit_cast<float>(c.scale_bits))}};
}

// Shapes and dtypes of q, k, v (dims -1 where a tensor is not 4-D).
struct ShapeDigest {
  std::int64_t dims[3][4];
  std::int32_t dtypes[3];
  bool operator==(const ShapeDigest&) const = default;
};

ShapeDigest digest(const Tensor& q, const Tensor& k, const Tensor& v) {
  ShapeDigest s{};
  const Tensor* ts[3] = {&q, &k, &v};
  for (int t = 0; t < 3; ++t) {
    for (int i = 0; i < 4; ++i) s.dims[t][i] = ts[t]->dim() == 4 ? ts[t]->size(i) : -1;
    s.dtypes[t] = static_cast<std::int32_t>(ts[t]->dtype());
  }
  return s;
}

Fields fields(const ShapeDigest& s) {
  Fields f;
  const char* names[3] = {"q", "k", "v"};
  for (int t = 0; t < 3; ++t) {
    f.emplace_back(names[t],
                   detail::concat("[", s.dims[t][0], ", ", s.dims[t][1], ", ", s.dims[t][2], ", ",
                                  s.dims[t][3], "] ", dtype_name(static_cast<DType>(s.dtypes[t]))));
  }
  return f;
}

template <class T>
std::vector<Fields> fields_of(const std::vector<T>& all) {
  std::vector<Fields> f;
  for (const T& x : all) f.push_back(fields(x));
  return f;
}

Layout make_layout(const UspConfig& c, std::int64_t seq_len) {
  Layout l;
  l.type = c.ring_type;
  l.seq_len = seq_len;
  l.ulysses = c.ulysses;
  l.ring = c.ring;
  return l;
}

// src in dtype t: src itself when it already is, otherwise a converted copy from alloc.
Tensor cast(AttentionKernel& kernel, Allocator& alloc, const Tensor& src, DType t) {
  if (src.dtype() == t) return src;
  Tensor dst = Tensor::empty(src.shape(), t, alloc);
  kernel.copy(src, dst);
  return dst;
}

}  // namespace

struct UspAttention::State {
  Communicator& world;
  AttentionKernel& kernel;
  Allocator& alloc;
  UspConfig config;
  Mesh mesh;
  UspTimings timings;
  std::vector<ShapeDigest> agreed;  // shapes every sp rank has been seen to share

  // Everything one call needs, validated.
  struct Problem {
    std::int64_t b, ls, h, hkv, d;
    float scale;
    HeadSplit qs, kvs;
    MaskMode mask;
  };

  Problem problem(const Tensor& q, const Tensor& k, const Tensor& v);
  detail::RingContext ring_context(float scale) {
    return {*mesh.ring, kernel, alloc, config.ring_type, config.causal, scale, timings};
  }
};

UspAttention::State::Problem UspAttention::State::problem(const Tensor& q, const Tensor& k,
                                                          const Tensor& v) {
  // Shapes are compared across the sequence-parallel group first, so that every rank fails alike.
  const ShapeDigest mine = digest(q, k, v);
  bool known = false;
  for (const ShapeDigest& s : agreed) known = known || s == mine;
  if (!known) {
    check_agreement("input shape", fields_of(allgather_pod(*mesh.sp, alloc, mine, timings)));
    agreed.push_back(mine);
  }

  USP_CHECK_ARG(q.dim() == 4, "q ", q.describe(), " must be 4-D [b, s_local, nheads, head_size]");
  USP_CHECK_ARG(k.dim() == 4 && v.dim() == 4, "k ", k.describe(), " and v ", v.describe(),
                " must be 4-D [b, s_local, kv_heads, head_size]");
  USP_CHECK_ARG(k.shape() == v.shape(), "k ", k.describe(), " and v ", v.describe(),
                " must have the same shape");
  USP_CHECK_ARG(q.size(0) == k.size(0) && q.size(1) == k.size(1) && q.size(3) == k.size(3), "q ",
                q.describe(), " and k ", k.describe(),
                " must agree in batch, sequence length and head size");
  USP_CHECK_ARG(q.dtype() == k.dtype() && q.dtype() == v.dtype(),
                "q, k and v must have one dtype, got ", dtype_name(q.dtype()), ", ",
                dtype_name(k.dtype()), ", ", dtype_name(v.dtype()));

  const int u = config.ulysses;
  Problem p{q.size(0),
            q.size(1),
            q.size(2),
            k.size(2),
            q.size(3),
            config.scale,
            HeadSplit::even(q.size(2), u),
            HeadSplit::kv_for_queries(q.size(2), k.size(2), u),
            config.causal ? MaskMode::causal : MaskMode::none};
  USP_CHECK_ARG(p.ls >= 1, "s_local ", p.ls, " must be >= 1");
  make_layout(config, p.ls * u * config.ring).validate();
  if (p.scale == 0.0f) p.scale = 1.0f / std::sqrt(static_cast<float>(p.d));
  return p;
}

UspAttention::UspAttention(Communicator& world, AttentionKernel& kernel, Allocator& alloc,
                           const UspConfig& config)
    : s_(new State{world, kernel, alloc, config, Mesh{}, UspTimings{}, {}}) {
  // Agree on the configuration before anything that could fail on some ranks only.
  check_agreement("configuration",
                  fields_of(allgather_pod(world, alloc, digest(config), s_->timings)));
  USP_CHECK_ARG(std::isfinite(config.scale) && config.scale >= 0.0f, "softmax scale ", config.scale,
                " must be finite and >= 0 (0 means 1/sqrt(head_size))");
  const MeshShape shape{config.data, config.ulysses, config.ring, config.placement};
  shape.validate(world.size());
  s_->mesh = make_mesh(world, shape);
}

UspAttention::~UspAttention() = default;

const UspConfig& UspAttention::config() const {
  return s_->config;
}
const Mesh& UspAttention::mesh() const {
  return s_->mesh;
}
UspTimings UspAttention::timings() const {
  return s_->timings;
}
void UspAttention::reset_timings() {
  s_->timings = UspTimings{};
}

Layout UspAttention::layout(std::int64_t seq_len) const {
  return make_layout(s_->config, seq_len);
}

UspAttention::Output UspAttention::forward(const Tensor& q, const Tensor& k, const Tensor& v) {
  State& st = *s_;
  AttentionKernel& kern = st.kernel;
  Allocator& alloc = st.alloc;
  const State::Problem p = st.problem(q, k, v);
  const int u = st.config.ulysses, r = st.config.ring;
  const std::int64_t len = p.ls * u, hu = p.qs.per_rank();

  if (u == 1 && r == 1) {
    Output o{Tensor::empty(q.shape(), q.dtype(), alloc),
             Tensor::empty({p.b, p.h, p.ls}, DType::f32, alloc)};
    detail::timed(st.timings.compute_s,
                  [&] { kern.forward(q, k, v, p.mask, p.scale, o.out, o.lse); });
    return o;
  }

  // Ring side: my ring rank's whole ring-local sequence, my heads; K and V packed for the ring.
  Tensor out_r, lse_r;
  {
    Tensor q_r = q, kv;
    if (u > 1) {
      q_r = Tensor::empty({p.b, len, hu, p.d}, q.dtype(), alloc);
      kv = Tensor::empty({2 * p.b, len, p.kvs.per_rank(), p.d}, k.dtype(), alloc);
      detail::scatter_heads(*st.mesh.ulysses, kern, alloc,
                            {{q, q_r, 1, 2, &p.qs, q.dtype()},
                             {k, detail::kv_keys(kv), 1, 2, &p.kvs, k.dtype()},
                             {v, detail::kv_values(kv), 1, 2, &p.kvs, v.dtype()}},
                            st.timings);
    } else {
      kv = detail::pack_kv(kern, alloc, k, v);
    }
    if (r == 1) {
      out_r = Tensor::empty({p.b, len, hu, p.d}, q.dtype(), alloc);
      lse_r = Tensor::empty({p.b, hu, len}, DType::f32, alloc);
      detail::timed(st.timings.compute_s, [&] {
        kern.forward(q_r, detail::kv_keys(kv), detail::kv_values(kv), p.mask, p.scale, out_r,
                     lse_r);
      });
    } else {
      detail::RingForward res = detail::ring_forward(st.ring_context(p.scale), q_r, std::move(kv));
      out_r = std::move(res.out);
      lse_r = std::move(res.lse);
    }
  }

  // The fp32 accumulator is cast to the input dtype once, into the ring-side tensor the reverse
  // all-to-all sends from, and is freed before the shard-side output exists.
  out_r = cast(kern, alloc, out_r, q.dtype());
  if (u == 1) return {std::move(out_r), std::move(lse_r)};
  Output o{Tensor::empty(q.shape(), q.dtype(), alloc),
           Tensor::empty({p.b, p.h, p.ls}, DType::f32, alloc)};
  detail::gather_heads(
      *st.mesh.ulysses, kern, alloc,
      {{o.out, out_r, 1, 2, &p.qs, q.dtype()}, {o.lse, lse_r, 2, 1, &p.qs, DType::f32}},
      st.timings);
  return o;
}

UspAttention::Grads UspAttention::backward(const Tensor& q, const Tensor& k, const Tensor& v,
                                           const Tensor& out, const Tensor& lse,
                                           const Tensor& dout) {
  State& st = *s_;
  AttentionKernel& kern = st.kernel;
  Allocator& alloc = st.alloc;
  const State::Problem p = st.problem(q, k, v);
  const int u = st.config.ulysses, r = st.config.ring;
  const std::int64_t len = p.ls * u, hu = p.qs.per_rank(), hkv_u = p.kvs.per_rank();
  USP_CHECK_ARG(out.shape() == q.shape(), "out ", out.describe(), " must have the shape of q ",
                q.describe());
  USP_CHECK_ARG(dout.shape() == q.shape(), "dout ", dout.describe(), " must have the shape of q ",
                q.describe());
  USP_CHECK_ARG(lse.dim() == 3 && lse.size(0) == p.b && lse.size(1) == p.h && lse.size(2) == p.ls &&
                    lse.dtype() == DType::f32,
                "lse ", lse.describe(), " must be fp32 [", p.b, ", ", p.h, ", ", p.ls,
                "] as forward returned it");

  if (u == 1 && r == 1) {
    Tensor dq = Tensor::empty(q.shape(), DType::f32, alloc);
    Tensor dk = Tensor::empty(k.shape(), DType::f32, alloc);
    Tensor dv = Tensor::empty(v.shape(), DType::f32, alloc);
    detail::timed(st.timings.compute_s, [&] {
      kern.backward(q, k, v, out, lse, dout, p.mask, p.scale, dq, dk, dv, /*accumulate=*/false);
    });
    return {cast(kern, alloc, dq, q.dtype()), cast(kern, alloc, dk, k.dtype()),
            cast(kern, alloc, dv, v.dtype())};
  }

  // Ring side: re-do the forward exchange for q, k, v and bring out, dout, lse along.
  Tensor dq_r, dkv_r;  // fp32
  {
    Tensor q_r = q, kv, out_r = out, dout_r = dout, lse_r = lse;
    if (u > 1) {
      q_r = Tensor::empty({p.b, len, hu, p.d}, q.dtype(), alloc);
      kv = Tensor::empty({2 * p.b, len, hkv_u, p.d}, k.dtype(), alloc);
      out_r = Tensor::empty({p.b, len, hu, p.d}, out.dtype(), alloc);
      dout_r = Tensor::empty({p.b, len, hu, p.d}, dout.dtype(), alloc);
      lse_r = Tensor::empty({p.b, hu, len}, DType::f32, alloc);
      detail::scatter_heads(*st.mesh.ulysses, kern, alloc,
                            {{q, q_r, 1, 2, &p.qs, q.dtype()},
                             {k, detail::kv_keys(kv), 1, 2, &p.kvs, k.dtype()},
                             {v, detail::kv_values(kv), 1, 2, &p.kvs, v.dtype()},
                             {out, out_r, 1, 2, &p.qs, out.dtype()},
                             {dout, dout_r, 1, 2, &p.qs, dout.dtype()},
                             {lse, lse_r, 2, 1, &p.qs, DType::f32}},
                            st.timings);
    } else {
      kv = detail::pack_kv(kern, alloc, k, v);
    }
    if (r == 1) {
      dq_r = Tensor::empty({p.b, len, hu, p.d}, DType::f32, alloc);
      dkv_r = Tensor::empty(kv.shape(), DType::f32, alloc);
      Tensor dk = detail::kv_keys(dkv_r), dv = detail::kv_values(dkv_r);
      detail::timed(st.timings.compute_s, [&] {
        kern.backward(q_r, detail::kv_keys(kv), detail::kv_values(kv), out_r, lse_r, dout_r, p.mask,
                      p.scale, dq_r, dk, dv, /*accumulate=*/false);
      });
    } else {
      detail::RingBackward res =
          detail::ring_backward(st.ring_context(p.scale), q_r, std::move(kv), out_r, lse_r, dout_r);
      dq_r = std::move(res.dq);
      dkv_r = std::move(res.dkv);
    }
  }

  // Replicated kv heads come home in fp32 and are summed there; otherwise each gradient is cast
  // to the input dtype once, into the ring-side tensor the reverse all-to-all sends from, and its
  // fp32 accumulator is freed right away.
  const bool sum = u > 1 && p.kvs.replicated();
  const DType kv_wire = sum ? DType::f32 : k.dtype();
  dq_r = cast(kern, alloc, dq_r, q.dtype());
  dkv_r = cast(kern, alloc, dkv_r, kv_wire);
  if (u == 1) return {std::move(dq_r), detail::kv_keys(dkv_r), detail::kv_values(dkv_r)};
  Grads g{Tensor::empty(q.shape(), q.dtype(), alloc), Tensor::empty(k.shape(), kv_wire, alloc),
          Tensor::empty(v.shape(), kv_wire, alloc)};
  detail::gather_heads(*st.mesh.ulysses, kern, alloc,
                       {{g.dq, dq_r, 1, 2, &p.qs, q.dtype()},
                        {g.dk, detail::kv_keys(dkv_r), 1, 2, &p.kvs, kv_wire},
                        {g.dv, detail::kv_values(dkv_r), 1, 2, &p.kvs, kv_wire}},
                       st.timings);
  dq_r = Tensor();
  dkv_r = Tensor();
  g.dk = cast(kern, alloc, g.dk, k.dtype());
  g.dv = cast(kern, alloc, g.dv, v.dtype());
  return g;
}

}  // namespace usp
