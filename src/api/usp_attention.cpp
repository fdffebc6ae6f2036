// USP attention: Ulysses all-to-all (scatter heads, gather sequence) → ring attention over the
// ring group → reverse all-to-all; the backward pass re-does the forward exchange of its inputs,
// runs the ring backward and sends the gradients home. u = 1 skips the all-to-all, r = 1 runs the
// kernel on the whole ring-local sequence.
#include "usp/attention.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "api/finite_check.hpp"
#include "api/indeterminate_rows.hpp"
#include "ring/ring.hpp"
#include "ulysses/head_split.hpp"
#include "ulysses/ulysses.hpp"
#include "usp/agree.hpp"
#include "usp/error.hpp"
#include "util/timing.hpp"

namespace usp {
namespace {

using detail::HeadExchange;
using detail::HeadSplit;

constexpr std::string_view kCallAlike = "every rank must construct UspAttention and call it alike";

// The shortest text that reads back as exactly x (so that two scales differing in one bit differ).
std::string exact(float x) {
  char buf[32];
  const auto res = std::to_chars(buf, buf + sizeof buf, x);
  return std::string(buf, res.ptr);
}

// The enum's name, or its number when it has none (so that two unknown values still differ).
template <class E>
std::string enum_text(E e, const char* name) {
  return std::string_view(name) == "unknown" ? std::to_string(static_cast<int>(e)) : name;
}

// "none", or the count and a digest of the document starts (so that two lists differing in one
// entry differ).
std::string documents_text(const std::vector<std::int64_t>& cu) {
  if (cu.empty()) return "none";
  std::uint64_t h = 14695981039346656037ull;
  for (const std::int64_t x : cu) h = (h ^ static_cast<std::uint64_t>(x)) * 1099511628211ull;
  return std::to_string(cu.size() - 1) + " documents #" + std::to_string(h);
}

// The attention's mask when it has a window or documents (null: the plain modes).
std::shared_ptr<const AttentionMask> mask_of(const UspConfig& c) {
  AttentionMask m{c.causal, c.window, c.cu_seqlens};
  if (m.plain()) return nullptr;
  return std::make_shared<const AttentionMask>(std::move(m));
}

Fields config_fields(const UspConfig& c) {
  return {{"ring_type", enum_text(c.ring_type, ring_type_name(c.ring_type))},
          {"ulysses", std::to_string(c.ulysses)},
          {"ring", std::to_string(c.ring)},
          {"data", std::to_string(c.data)},
          {"placement", enum_text(c.placement, placement_name(c.placement))},
          {"causal", c.causal ? "true" : "false"},
          {"scale", exact(c.scale)},
          {"check_finite", c.check_finite ? "true" : "false"},
          {"double_ring", std::to_string(c.double_ring)},
          {"window", std::to_string(c.window.left) + "," + std::to_string(c.window.right)},
          {"cu_seqlens", documents_text(c.cu_seqlens)},
          {"head_chunks", std::to_string(c.head_chunks)}};
}

// Shapes and dtypes of q, k, v (dims -1 where a tensor is not 4-D).
Fields shape_fields(const Tensor& q, const Tensor& k, const Tensor& v) {
  Fields f;
  const std::pair<const char*, const Tensor*> ts[3] = {{"q", &q}, {"k", &k}, {"v", &v}};
  for (const auto& [name, t] : ts) {
    std::int64_t d[4];
    for (int i = 0; i < 4; ++i) d[i] = t->dim() == 4 ? t->size(i) : -1;
    f.emplace_back(name, detail::concat("[", d[0], ", ", d[1], ", ", d[2], ", ", d[3], "] ",
                                        dtype_name(t->dtype())));
  }
  return f;
}

// Counts the time until it is destroyed (also by an exception) as blocking communication.
struct CommTime {
  UspTimings& t;
  detail::Clock::time_point t0 = detail::Clock::now();
  explicit CommTime(UspTimings& timings) : t(timings) {}
  CommTime(const CommTime&) = delete;
  CommTime& operator=(const CommTime&) = delete;
  ~CommTime() {
    const double dt = detail::seconds_since(t0);
    t.comm_wait_s += dt;
    t.comm_total_s += dt;
  }
};

// agree_fields over comm, its time counted as blocking communication.
void agree_timed(Communicator& comm, Allocator& alloc, const Fields& mine, std::string_view what,
                 UspTimings& timings) {
  const CommTime count{timings};
  agree_fields(comm, alloc, mine, what, kCallAlike);
}

// FNV-1a over every name and value (each ended by a zero byte).
std::uint64_t digest_of(const Fields& fields) {
  std::uint64_t h = 14695981039346656037ull;
  const auto add = [&h](std::string_view s) {
    for (const char c : s) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    h *= 1099511628211ull;
  };
  for (const auto& [name, value] : fields) {
    add(name);
    add(value);
  }
  return h;
}

// True when every rank of comm has the same digest (collective; counted as communication).
bool digests_agree(Communicator& comm, Allocator& alloc, std::uint64_t mine, UspTimings& timings) {
  std::vector<std::uint64_t> all(static_cast<std::size_t>(comm.size()));
  {
    const CommTime count{timings};
    allgather_host(comm, alloc, &mine, all.data(), sizeof mine);
  }
  return std::all_of(all.begin(), all.end(), [&](std::uint64_t d) { return d == mine; });
}

Layout layout_of(const UspConfig& c, std::int64_t seq_len) {
  return {.type = c.ring_type, .seq_len = seq_len, .ulysses = c.ulysses, .ring = c.ring};
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
  std::shared_ptr<const AttentionMask> mask;  // a window or documents (null: plain)

  // The dimensions, scale, head splits and mask of one forward/backward call, validated.
  struct CallGeometry {
    std::int64_t b, ls, h, hkv, d;
    float scale;
    HeadSplit qs, kvs;
    BlockMask mask;  // of the whole ring-local sequence (identity positions: r = 1 calls)
    Layout layout;
    int u = 1, r = 1;              // the degrees
    std::int64_t len = 0, hu = 0;  // ring side: u·s_local tokens, qs.per_rank() query heads
  };

  // agree: first compare the shapes across the sequence-parallel group (every call does; a head
  // chunk of an agreed call need not).
  CallGeometry geometry(const Tensor& q, const Tensor& k, const Tensor& v, bool agree = true);
  // The forward of one call (or head chunk) of geometry p, before the NaN rows are marked.
  UspAttention::Output forward_rows(const CallGeometry& p, const Tensor& q, const Tensor& k,
                                    const Tensor& v);
  // How many head chunks a forward of q [b, s, h, d] and k [b, s, hkv, d] runs in
  // (UspConfig::head_chunks; 1 for shapes the call itself will refuse).
  int head_chunks(const Tensor& q, const Tensor& k) const;

  // q and the packed kv on the ring side: my ring rank's whole ring-local sequence, my heads
  // (the shard-side tensors themselves, kv packed, when u = 1). `more` (ring sides allocated by
  // the caller) travel in the same all-to-all; with u = 1 they are not touched.
  struct RingSide {
    Tensor q, kv;
  };
  RingSide to_ring_side(const CallGeometry& p, const Tensor& q, const Tensor& k, const Tensor& v,
                        std::vector<HeadExchange> more);
  // check_finite: the named tensors scanned, the sequence-parallel group compared (counted as
  // communication).
  void refuse_non_finite(const std::vector<std::pair<std::string_view, const Tensor*>>& ts) {
    const CommTime count{timings};
    detail::refuse_non_finite(*mesh.sp, alloc, world.rank(), ts);
  }
  detail::RingContext ring_context(const CallGeometry& p) {
    return {*mesh.ring,         kernel, alloc,   config.ring_type, config.causal, p.scale, timings,
            config.double_ring, mask,   p.layout};
  }
};

UspAttention::State::CallGeometry UspAttention::State::geometry(const Tensor& q, const Tensor& k,
                                                                const Tensor& v, bool agree) {
  // Shapes are compared across the sequence-parallel group at every call, first, so that every
  // rank fails alike (also when one rank alone changes shape): one all-gather of a digest; the
  // fields themselves travel only when the digests differ, to name what differs.
  if (agree) {
    Fields mine = shape_fields(q, k, v);
    mine.emplace_back("cu_seqlens", mask != nullptr ? documents_text(mask->cu_seqlens) : "none");
    if (!digests_agree(*mesh.sp, alloc, digest_of(mine), timings))
      agree_timed(*mesh.sp, alloc, mine, "input shape mismatch", timings);
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
  CallGeometry p{q.size(0),
                 q.size(1),
                 q.size(2),
                 k.size(2),
                 q.size(3),
                 config.scale,
                 HeadSplit::even(q.size(2), u),
                 HeadSplit::kv_for_queries(q.size(2), k.size(2), u),
                 config.causal ? MaskMode::causal : MaskMode::none,
                 Layout{}};
  USP_CHECK_ARG(p.ls >= 1, "s_local ", p.ls, " must be >= 1");
  p.layout = layout_of(config, p.ls * u * config.ring);
  p.layout.validate();
  if (mask != nullptr) {
    mask->validate(p.layout.seq_len, p.b);
    p.mask = BlockMask(mask, Positions{}, Positions{});  // r = 1: the sequence in token order
  }
  if (p.scale == 0.0f) p.scale = 1.0f / std::sqrt(static_cast<float>(p.d));
  p.u = u;
  p.r = config.ring;
  p.len = p.ls * u;
  p.hu = p.qs.per_rank();
  return p;
}

int UspAttention::State::head_chunks(const Tensor& q, const Tensor& k) const {
  if (q.dim() != 4 || k.dim() != 4) return 1;
  const std::int64_t h = q.size(2), hkv = k.size(2), u = config.ulysses;
  // n equal shares of the kv heads, each (and its query heads) split by Ulysses as a whole call
  // splits them: no kv head replicated that the whole call would not replicate.
  const auto splits = [&](std::int64_t n) {
    return hkv % n == 0 && h % hkv == 0 && (hkv / n) % u == 0;
  };
  if (config.head_chunks == 0) return config.ring > 1 && splits(2) ? 2 : 1;
  if (config.head_chunks == 1) return 1;
  USP_CHECK_ARG(splits(config.head_chunks), "head_chunks ", config.head_chunks,
                " must divide the kv heads (", hkv, ") into shares that ulysses (", u,
                ") divides, with query heads (", h, ") a multiple of the kv heads");
  return config.head_chunks;
}

UspAttention::State::RingSide UspAttention::State::to_ring_side(const CallGeometry& p,
                                                                const Tensor& q, const Tensor& k,
                                                                const Tensor& v,
                                                                std::vector<HeadExchange> more) {
  if (p.u == 1) return {q, detail::pack_kv(kernel, alloc, k, v)};
  RingSide rs{Tensor::empty({p.b, p.len, p.hu, p.d}, q.dtype(), alloc),
              Tensor::empty({2 * p.b, p.len, p.kvs.per_rank(), p.d}, k.dtype(), alloc)};
  std::vector<HeadExchange> items{{q, rs.q, 1, 2, &p.qs, q.dtype()},
                                  {k, detail::kv_keys(rs.kv), 1, 2, &p.kvs, k.dtype()},
                                  {v, detail::kv_values(rs.kv), 1, 2, &p.kvs, v.dtype()}};
  items.insert(items.end(), more.begin(), more.end());
  detail::scatter_heads(*mesh.ulysses, kernel, alloc, items, timings);
  return rs;
}

UspAttention::UspAttention(Communicator& world, AttentionKernel& kernel, Allocator& alloc,
                           const UspConfig& config)
    : s_(new State{world, kernel, alloc, config, Mesh{}, UspTimings{}, mask_of(config)}) {
  // Agree on the configuration before anything that could fail on some ranks only.
  agree_timed(world, alloc, config_fields(config), "configuration mismatch", s_->timings);
  USP_CHECK_ARG(std::isfinite(config.scale) && config.scale >= 0.0f, "softmax scale ", config.scale,
                " must be finite and >= 0 (0 means 1/sqrt(head_size))");
  const MeshShape shape{config.data, config.ulysses, config.ring, config.placement};
  shape.validate(world.size());
  USP_CHECK_ARG(
      config.double_ring >= 0 && (config.double_ring == 0 || config.ring % config.double_ring == 0),
      "double_ring ", config.double_ring, " must be 0 (the single ring) or divide ring ",
      config.ring, " (inner rings of double_ring consecutive ring ranks)");
  USP_CHECK_ARG(config.head_chunks >= 0, "head_chunks ", config.head_chunks,
                " must be >= 0 (0: automatic, 1: one call)");
  USP_CHECK_ARG(config.double_ring == 0 || config.double_ring == config.ring ||
                    config.ring_type != RingType::allgather,
                "double_ring ", config.double_ring,
                " needs a ring that passes K/V around (basic, stripe, zigzag); allgather gathers "
                "K/V in one step and has no inner ring");
  // The window and the documents' own rules now; their end (the sequence length) and the batch
  // at every call.
  if (s_->mask != nullptr)
    s_->mask->validate(config.cu_seqlens.empty() ? 1 : config.cu_seqlens.back(), 1);
  s_->mesh = make_mesh(world, shape);
}

UspAttention::~UspAttention() = default;

void UspAttention::set_documents(std::vector<std::int64_t> cu_seqlens) {
  s_->config.cu_seqlens = std::move(cu_seqlens);
  s_->mask = mask_of(s_->config);
}

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
  return layout_of(s_->config, seq_len);
}

UspAttention::Output UspAttention::forward(const Tensor& q, const Tensor& k, const Tensor& v) {
  State& st = *s_;
  // Shapes agreed, validated and checked for non-finite values on the whole call, so that every
  // message names the caller's tensors and indices, whatever the chunks.
  const State::CallGeometry whole = st.geometry(q, k, v);
  if (st.config.check_finite) st.refuse_non_finite({{"q", &q}, {"k", &k}, {"v", &v}});
  const int n = st.head_chunks(q, k);
  if (n == 1) {
    Output o = st.forward_rows(whole, q, k, v);
    detail::mark_indeterminate_rows(o.out, o.lse);
    return o;
  }
  // Chunk c: kv heads [c·hkv/n, (c + 1)·hkv/n) and their query heads, as views; each chunk's
  // result is copied into the whole call's, and freed, before the next chunk starts.
  const std::int64_t hq = q.size(2) / n, hk = k.size(2) / n;
  Output o{Tensor::empty(q.shape(), q.dtype(), st.alloc),
           Tensor::empty({whole.b, whole.h, whole.ls}, DType::f32, st.alloc)};
  for (int c = 0; c < n; ++c) {
    const Tensor qc = q.slice(2, c * hq, hq), kc = k.slice(2, c * hk, hk),
                 vc = v.slice(2, c * hk, hk);
    Output part = st.forward_rows(st.geometry(qc, kc, vc, /*agree=*/false), qc, kc, vc);
    Tensor out = o.out.slice(2, c * hq, hq), lse = o.lse.slice(1, c * hq, hq);
    st.kernel.copy(part.out, out);
    st.kernel.copy(part.lse, lse);
  }
  detail::mark_indeterminate_rows(o.out, o.lse);
  return o;
}

UspAttention::Output UspAttention::State::forward_rows(const CallGeometry& p, const Tensor& q,
                                                       const Tensor& k, const Tensor& v) {
  State& st = *this;
  AttentionKernel& kern = st.kernel;
  Allocator& alloc = st.alloc;
  const int u = p.u, r = p.r;

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
    State::RingSide rs = st.to_ring_side(p, q, k, v, {});
    Tensor &q_r = rs.q, &kv = rs.kv;
    if (r == 1) {
      out_r = Tensor::empty({p.b, p.len, p.hu, p.d}, q.dtype(), alloc);
      lse_r = Tensor::empty({p.b, p.hu, p.len}, DType::f32, alloc);
      detail::timed(st.timings.compute_s, [&] {
        kern.forward(q_r, detail::kv_keys(kv), detail::kv_values(kv), p.mask, p.scale, out_r,
                     lse_r);
      });
    } else {
      detail::RingForward res = detail::ring_forward(st.ring_context(p), q_r, std::move(kv));
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
  const State::CallGeometry p = st.geometry(q, k, v);
  const int u = p.u, r = p.r;
  USP_CHECK_ARG(out.shape() == q.shape(), "out ", out.describe(), " must have the shape of q ",
                q.describe());
  USP_CHECK_ARG(dout.shape() == q.shape(), "dout ", dout.describe(), " must have the shape of q ",
                q.describe());
  USP_CHECK_ARG(lse.dim() == 3 && lse.size(0) == p.b && lse.size(1) == p.h && lse.size(2) == p.ls &&
                    lse.dtype() == DType::f32,
                "lse ", lse.describe(), " must be fp32 [", p.b, ", ", p.h, ", ", p.ls,
                "] as forward returned it");
  if (st.config.check_finite)
    st.refuse_non_finite({{"q", &q}, {"k", &k}, {"v", &v}, {"out", &out}, {"dout", &dout}});

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
    Tensor out_r = out, dout_r = dout, lse_r = lse;
    if (u > 1) {
      out_r = Tensor::empty({p.b, p.len, p.hu, p.d}, out.dtype(), alloc);
      dout_r = Tensor::empty({p.b, p.len, p.hu, p.d}, dout.dtype(), alloc);
      lse_r = Tensor::empty({p.b, p.hu, p.len}, DType::f32, alloc);
    }
    State::RingSide rs = st.to_ring_side(p, q, k, v,
                                         {{out, out_r, 1, 2, &p.qs, out.dtype()},
                                          {dout, dout_r, 1, 2, &p.qs, dout.dtype()},
                                          {lse, lse_r, 2, 1, &p.qs, DType::f32}});
    Tensor &q_r = rs.q, &kv = rs.kv;
    if (r == 1) {
      dq_r = Tensor::empty({p.b, p.len, p.hu, p.d}, DType::f32, alloc);
      dkv_r = Tensor::empty(kv.shape(), DType::f32, alloc);
      Tensor dk = detail::kv_keys(dkv_r), dv = detail::kv_values(dkv_r);
      detail::timed(st.timings.compute_s, [&] {
        kern.backward(q_r, detail::kv_keys(kv), detail::kv_values(kv), out_r, lse_r, dout_r, p.mask,
                      p.scale, dq_r, dk, dv, /*accumulate=*/false);
      });
    } else {
      detail::RingBackward res =
          detail::ring_backward(st.ring_context(p), q_r, std::move(kv), out_r, lse_r, dout_r);
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
