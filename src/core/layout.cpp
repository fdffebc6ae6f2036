// Layouts: global token index ↔ (ring rank, ulysses rank, local index), and host shard/unshard.
#include "usp/layout.hpp"

#include <array>
#include <cstring>
#include <string>

#include "usp/error.hpp"
#include "util/enum_names.hpp"

namespace usp {

const char* ring_type_name(RingType t) {
  static constexpr std::array<const char*, 4> kNames{"basic", "stripe", "zigzag",
                                                     "allgather"};  // RingType order
  return detail::enum_name(t, kNames);
}

RingType parse_ring_type(std::string_view s) {
  if (s == "basic") return RingType::basic;
  if (s == "stripe" || s == "strip") return RingType::stripe;
  if (s == "zigzag") return RingType::zigzag;
  if (s == "allgather") return RingType::allgather;
  USP_FAIL(invalid_argument, "ring type '", s,
           "' is unknown (allowed: basic, stripe, zigzag, allgather)");
}

void Layout::validate() const {
  USP_CHECK_ARG(ulysses >= 1, "ulysses degree ", ulysses, " must be >= 1");
  USP_CHECK_ARG(ring >= 1, "ring degree ", ring, " must be >= 1");
  USP_CHECK_ARG(seq_len >= 1, "seq_len ", seq_len, " must be >= 1");
  const std::int64_t ur = static_cast<std::int64_t>(ulysses) * ring;
  if (two_chunks_per_rank(type)) {
    USP_CHECK_ARG(seq_len % (2 * ur) == 0, "seq_len ", seq_len,
                  " is not divisible by 2·ulysses·ring = ", 2 * ur, " (ulysses ", ulysses,
                  ", ring ", ring, "; ", ring_type_name(type), " needs two chunks per ring rank)");
  } else {
    USP_CHECK_ARG(seq_len % ur == 0, "seq_len ", seq_len,
                  " is not divisible by ulysses·ring = ", ur, " (ulysses ", ulysses, ", ring ",
                  ring, "; the ", ring_type_name(type), " layout gives every rank an equal shard)");
  }
}

std::pair<int, std::int64_t> Layout::ring_locate(std::int64_t token) const {
  USP_CHECK_ARG(token >= 0 && token < seq_len, "token ", token, " is outside the sequence [0, ",
                seq_len, ")");
  const std::int64_t p = ring;
  switch (type) {
    case RingType::basic: {
      const std::int64_t len = ring_len();
      return {static_cast<int>(token / len), token % len};
    }
    case RingType::stripe:
      return {static_cast<int>(token % p), token / p};
    case RingType::zigzag:
    case RingType::allgather: {
      const std::int64_t chunk = seq_len / (2 * p);
      const std::int64_t c = token / chunk;
      const std::int64_t off = token % chunk;
      if (c < p) return {static_cast<int>(c), off};
      return {static_cast<int>(2 * p - 1 - c), chunk + off};
    }
  }
  USP_FAIL(internal, "unknown ring type");
}

std::int64_t Layout::ring_global(int ring_rank, std::int64_t ring_index) const {
  USP_CHECK_ARG(ring_rank >= 0 && ring_rank < ring, "ring rank ", ring_rank, " is outside [0, ",
                ring, ")");
  USP_CHECK_ARG(ring_index >= 0 && ring_index < ring_len(), "ring-local index ", ring_index,
                " is outside [0, ", ring_len(), ")");
  const std::int64_t p = ring;
  switch (type) {
    case RingType::basic:
      return ring_rank * ring_len() + ring_index;
    case RingType::stripe:
      return ring_index * p + ring_rank;
    case RingType::zigzag:
    case RingType::allgather: {
      const std::int64_t chunk = seq_len / (2 * p);
      if (ring_index < chunk) return ring_rank * chunk + ring_index;
      return (2 * p - 1 - ring_rank) * chunk + (ring_index - chunk);
    }
  }
  USP_FAIL(internal, "unknown ring type");
}

Positions Layout::ring_positions(int ring_rank) const {
  USP_CHECK_ARG(ring_rank >= 0 && ring_rank < ring, "ring rank ", ring_rank, " is outside [0, ",
                ring, ")");
  const std::int64_t p = ring;
  switch (type) {
    case RingType::basic:
      return {.start = ring_rank * ring_len()};
    case RingType::stripe:
      return {.start = ring_rank, .stride = p};
    case RingType::zigzag:
    case RingType::allgather: {
      const std::int64_t chunk = seq_len / (2 * p);
      return {
          .start = ring_rank * chunk, .split = chunk, .start2 = (2 * p - 1 - ring_rank) * chunk};
    }
  }
  USP_FAIL(internal, "unknown ring type");
}

TokenLocation Layout::locate(std::int64_t token) const {
  const auto [rr, ri] = ring_locate(token);
  const std::int64_t part = shard_len();
  TokenLocation loc;
  loc.ring_rank = rr;
  loc.ulysses_rank = static_cast<int>(ri / part);
  loc.index = ri % part;
  return loc;
}

std::int64_t Layout::global(int ring_rank, int ulysses_rank, std::int64_t index) const {
  USP_CHECK_ARG(ulysses_rank >= 0 && ulysses_rank < ulysses, "ulysses rank ", ulysses_rank,
                " is outside [0, ", ulysses, ")");
  USP_CHECK_ARG(index >= 0 && index < shard_len(), "local index ", index, " is outside [0, ",
                shard_len(), ")");
  return ring_global(ring_rank, ulysses_rank * shard_len() + index);
}

namespace {

// A maximal run of consecutive tokens: global [global, global+len) ↔ local [local, local+len).
struct Run {
  std::int64_t global;
  std::int64_t local;
  std::int64_t len;
};

std::vector<Run> shard_runs(const Layout& layout, int ring_rank, int ulysses_rank) {
  std::vector<Run> runs;
  const std::int64_t n = layout.shard_len();
  for (std::int64_t i = 0; i < n;) {
    const std::int64_t g = layout.global(ring_rank, ulysses_rank, i);
    std::int64_t len = 1;
    // Within a run the mapping is g+k ↔ i+k; stripe with ring > 1 never continues a run.
    if (layout.type != RingType::stripe || layout.ring == 1) {
      while (i + len < n && layout.global(ring_rank, ulysses_rank, i + len) == g + len) ++len;
    }
    runs.push_back({g, i, len});
    i += len;
  }
  return runs;
}

struct Geometry {
  std::int64_t outer = 1;     // product of dims before seq_dim
  std::size_t row_bytes = 0;  // bytes of one token row (dims after seq_dim)
};

Geometry geometry(const Tensor& t, int seq_dim) {
  Geometry g;
  for (int d = 0; d < seq_dim; ++d) g.outer *= t.size(d);
  std::int64_t inner = 1;
  for (int d = seq_dim + 1; d < t.dim(); ++d) inner *= t.size(d);
  g.row_bytes = static_cast<std::size_t>(inner) * dtype_size(t.dtype());
  return g;
}

Tensor contiguous_host(const Tensor& t) {
  if (t.is_contiguous()) return t;
  return to_dtype(t, t.dtype());
}

void check_host_tensor(const Tensor& t, int seq_dim, const char* what) {
  USP_CHECK_ARG(t.defined(), what, " tensor is undefined");
  USP_CHECK_ARG(t.device() == Device::host, what, " tensor must be on the host, got ",
                t.describe());
  USP_CHECK_ARG(seq_dim >= 0 && seq_dim < t.dim(), "seq_dim ", seq_dim, " is not a dimension of ",
                what, " tensor ", t.describe());
}

}  // namespace

Tensor shard(const Layout& layout, const Tensor& global, int ring_rank, int ulysses_rank,
             int seq_dim, Allocator& alloc) {
  layout.validate();
  check_host_tensor(global, seq_dim, "global");
  USP_CHECK_ARG(global.size(seq_dim) == layout.seq_len, "global tensor ", global.describe(),
                " has ", global.size(seq_dim), " tokens along dimension ", seq_dim,
                ", the layout has seq_len ", layout.seq_len);
  USP_CHECK_ARG(ring_rank >= 0 && ring_rank < layout.ring, "ring rank ", ring_rank,
                " is outside [0, ", layout.ring, ")");
  USP_CHECK_ARG(ulysses_rank >= 0 && ulysses_rank < layout.ulysses, "ulysses rank ", ulysses_rank,
                " is outside [0, ", layout.ulysses, ")");

  const Tensor src = contiguous_host(global);
  Tensor::Dims shape = src.shape();
  const std::int64_t n = layout.shard_len();
  shape[static_cast<std::size_t>(seq_dim)] = n;
  Tensor dst = Tensor::empty(shape, src.dtype(), alloc);

  const Geometry g = geometry(src, seq_dim);
  const auto runs = shard_runs(layout, ring_rank, ulysses_rank);
  const auto* s = static_cast<const unsigned char*>(src.data());
  auto* d = static_cast<unsigned char*>(dst.data());
  for (std::int64_t o = 0; o < g.outer; ++o) {
    const unsigned char* so = s + static_cast<std::size_t>(o * layout.seq_len) * g.row_bytes;
    unsigned char* dq = d + static_cast<std::size_t>(o * n) * g.row_bytes;
    for (const Run& r : runs) {
      std::memcpy(dq + static_cast<std::size_t>(r.local) * g.row_bytes,
                  so + static_cast<std::size_t>(r.global) * g.row_bytes,
                  static_cast<std::size_t>(r.len) * g.row_bytes);
    }
  }
  return dst;
}

Tensor unshard(const Layout& layout, const std::vector<Tensor>& locals, int seq_dim,
               Allocator& alloc) {
  layout.validate();
  const std::size_t ranks = static_cast<std::size_t>(layout.ulysses) * layout.ring;
  USP_CHECK_ARG(locals.size() == ranks, "unshard got ", locals.size(),
                " local tensors, the layout has ulysses·ring = ", ranks, " ranks");
  const std::int64_t n = layout.shard_len();
  const Tensor& first = locals.front();
  check_host_tensor(first, seq_dim, "local");
  for (std::size_t i = 0; i < ranks; ++i) {
    const Tensor& t = locals[i];
    check_host_tensor(t, seq_dim, "local");
    USP_CHECK_ARG(t.size(seq_dim) == n, "local tensor ", i, " ", t.describe(), " has ",
                  t.size(seq_dim), " tokens along dimension ", seq_dim, ", expected shard_len ", n);
    bool same = t.dim() == first.dim() && t.dtype() == first.dtype();
    for (int d = 0; same && d < t.dim(); ++d) same = t.size(d) == first.size(d);
    USP_CHECK_ARG(same, "local tensor ", i, " ", t.describe(), " does not match local tensor 0 ",
                  first.describe());
  }

  Tensor::Dims shape = first.shape();
  shape[static_cast<std::size_t>(seq_dim)] = layout.seq_len;
  Tensor dst = Tensor::empty(shape, first.dtype(), alloc);
  const Geometry g = geometry(first, seq_dim);
  auto* d = static_cast<unsigned char*>(dst.data());
  for (int rr = 0; rr < layout.ring; ++rr) {
    for (int ur = 0; ur < layout.ulysses; ++ur) {
      const Tensor src = contiguous_host(
          locals[static_cast<std::size_t>(rr) * layout.ulysses + static_cast<std::size_t>(ur)]);
      const auto* s = static_cast<const unsigned char*>(src.data());
      const auto runs = shard_runs(layout, rr, ur);
      for (std::int64_t o = 0; o < g.outer; ++o) {
        const unsigned char* so = s + static_cast<std::size_t>(o * n) * g.row_bytes;
        unsigned char* dq = d + static_cast<std::size_t>(o * layout.seq_len) * g.row_bytes;
        for (const Run& r : runs) {
          std::memcpy(dq + static_cast<std::size_t>(r.global) * g.row_bytes,
                      so + static_cast<std::size_t>(r.local) * g.row_bytes,
                      static_cast<std::size_t>(r.len) * g.row_bytes);
        }
      }
    }
  }
  return dst;
}

}  // namespace usp
