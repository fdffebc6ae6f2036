// Packing, exchange and unpacking of the Ulysses all-to-all (see ulysses.hpp).
#include "ulysses/ulysses.hpp"

#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "usp/error.hpp"
#include "util/timing.hpp"

namespace usp::detail {
namespace {

constexpr std::size_t kAlign = 64;
std::size_t round_up(std::size_t n) {
  return (n + kAlign - 1) / kAlign * kAlign;
}

// The packed part of one tensor in one rank's block: the tensor's shape with s_local tokens and
// per_rank heads, contiguous, in the wire dtype.
Tensor::Dims part_shape(const HeadExchange& x) {
  Tensor::Dims shape = x.shard.shape();
  shape[static_cast<std::size_t>(x.head_dim)] = x.split->per_rank();
  return shape;
}

std::size_t part_bytes(const HeadExchange& x) {
  std::size_t n = dtype_size(x.wire);
  for (std::int64_t e : part_shape(x)) n *= static_cast<std::size_t>(e);
  return round_up(n);
}

// Byte layout of one block: every tensor's part, in order, each 64-byte aligned.
struct BlockLayout {
  std::vector<std::size_t> offset;
  std::size_t bytes = 0;
};

BlockLayout block_layout(const std::vector<HeadExchange>& items, int ranks) {
  BlockLayout b;
  for (const HeadExchange& x : items) {
    USP_CHECK_ARG(x.split != nullptr && x.split->ranks() == ranks,
                  "ulysses exchange: head split for ", x.split ? x.split->ranks() : 0,
                  " ranks in a group of ", ranks);
    const std::int64_t ls = x.shard.size(x.seq_dim);
    USP_CHECK_ARG(x.ring.size(x.seq_dim) == ls * ranks, "ulysses exchange: ring side ",
                  x.ring.describe(), " must hold ", ranks, " × ", ls, " tokens");
    USP_CHECK_ARG(x.shard.size(x.head_dim) == x.split->total() &&
                      x.ring.size(x.head_dim) == x.split->per_rank(),
                  "ulysses exchange: shard side ", x.shard.describe(), " and ring side ",
                  x.ring.describe(), " must hold ", x.split->total(), " and ", x.split->per_rank(),
                  " heads");
    b.offset.push_back(b.bytes);
    b.bytes += part_bytes(x);
  }
  return b;
}

Tensor part_view(std::byte* block, std::size_t offset, const HeadExchange& x, Device dev) {
  return Tensor::wrap(block + offset, part_shape(x), x.wire, dev);
}

void exchange(Communicator& comm, const void* send, void* recv, std::size_t block,
              UspTimings& timings) {
  const auto t0 = Clock::now();
  comm.alltoall(send, recv, block);
  const double dt = seconds_since(t0);
  timings.comm_wait_s += dt;
  timings.comm_total_s += dt;
  timings.bytes_sent += static_cast<std::int64_t>(block) * (comm.size() - 1);
}

std::byte* block_ptr(const Buffer& buf, std::size_t block, int i) {
  return static_cast<std::byte*>(buf.data()) + block * static_cast<std::size_t>(i);
}

// A [b, s, h, d] item whose ring side is contiguous in the wire dtype travels one batch at a
// time, straight into (scatter) or out of (gather) the ring side: for batch bi, ring rank i's
// tokens are rows [i·ls, (i+1)·ls) of ring[bi], i.e. block i of an all-to-all with blocks of
// ls·per_rank·d elements. Only the shard side needs a staging buffer, of one batch.
bool direct(const HeadExchange& x) {
  return x.seq_dim == 1 && x.head_dim == 2 && x.ring.dim() == 4 && x.ring.is_contiguous() &&
         x.ring.dtype() == x.wire;
}

// Bytes of one rank's block of one batch of a direct item.
std::size_t batch_block_bytes(const HeadExchange& x) {
  return static_cast<std::size_t>(x.shard.size(1) * x.split->per_rank() * x.shard.size(3)) *
         dtype_size(x.wire);
}

// Rank j's block of one batch of a direct item in a staging buffer: [1, ls, per_rank, d].
Tensor batch_part(const Buffer& staging, const HeadExchange& x, int j, Device dev) {
  return Tensor::wrap(block_ptr(staging, batch_block_bytes(x), j),
                      {1, x.shard.size(1), x.split->per_rank(), x.shard.size(3)}, x.wire, dev);
}

std::size_t direct_staging_bytes(const std::vector<HeadExchange>& items, int u) {
  std::size_t n = 0;
  for (const HeadExchange& x : items)
    if (direct(x)) n = std::max(n, batch_block_bytes(x) * static_cast<std::size_t>(u));
  return n;
}

std::byte* batch_ptr(const Tensor& ring, std::int64_t bi) {
  return static_cast<std::byte*>(ring.ptr({bi, 0, 0, 0}));
}

void scatter_direct(Communicator& comm, AttentionKernel& kernel, const Buffer& send,
                    const HeadExchange& x, UspTimings& timings) {
  const int u = comm.size();
  const Device dev = comm.device();
  for (std::int64_t bi = 0; bi < x.shard.size(0); ++bi) {
    const Tensor shard = x.shard.slice(0, bi, 1);
    for (int j = 0; j < u; ++j) {
      const Tensor part = batch_part(send, x, j, dev);
      for (const HeadSplit::Run& run : x.split->runs(j)) {
        Tensor dst = part.slice(2, run.slot, run.count);
        kernel.copy(shard.slice(2, run.head, run.count), dst);
      }
    }
    exchange(comm, send.data(), batch_ptr(x.ring, bi), batch_block_bytes(x), timings);
  }
}

void gather_direct(Communicator& comm, AttentionKernel& kernel, const Buffer& recv,
                   const HeadExchange& x, UspTimings& timings) {
  const int u = comm.size();
  const Device dev = comm.device();
  const bool sum = x.split->replicated();
  for (std::int64_t bi = 0; bi < x.shard.size(0); ++bi) {
    exchange(comm, batch_ptr(x.ring, bi), recv.data(), batch_block_bytes(x), timings);
    Tensor shard = x.shard.slice(0, bi, 1);
    if (sum) kernel.fill_zero(shard);
    for (int j = 0; j < u; ++j) {
      const Tensor part = batch_part(recv, x, j, dev);
      for (const HeadSplit::Run& run : x.split->runs(j)) {
        const Tensor src = part.slice(2, run.slot, run.count);
        Tensor dst = shard.slice(2, run.head, run.count);
        if (sum) {
          kernel.add(src, dst);
        } else {
          kernel.copy(src, dst);
        }
      }
    }
  }
}

// The items that are not direct, all in one all-to-all through send and receive staging.
std::vector<HeadExchange> staged(const std::vector<HeadExchange>& items) {
  std::vector<HeadExchange> out;
  for (const HeadExchange& x : items)
    if (!direct(x)) out.push_back(x);
  return out;
}

void check_sum_dtype(const HeadExchange& x) {
  USP_CHECK_ARG(!x.split->replicated() || x.shard.dtype() == DType::f32,
                "ulysses exchange: replicated heads are ", "summed into an fp32 shard side, got ",
                x.shard.describe());
}

// The frame of both directions: the direct tensors one by one through one_direct(staging, x),
// sharing one staging buffer; the rest packed into the blocks of a single all-to-all by
// pack(send, layout, rest) and read back from the received blocks by unpack(recv, layout, rest).
template <class Direct, class Pack, class Unpack>
void exchange_heads(Communicator& comm, Allocator& alloc, const std::vector<HeadExchange>& items,
                    UspTimings& timings, Direct one_direct, Pack pack, Unpack unpack) {
  const int u = comm.size();
  const std::size_t direct_bytes = direct_staging_bytes(items, u);
  if (direct_bytes > 0) {
    Buffer staging(alloc, direct_bytes);
    for (const HeadExchange& x : items)
      if (direct(x)) one_direct(staging, x);
  }

  const std::vector<HeadExchange> rest = staged(items);
  if (rest.empty()) return;
  const BlockLayout lay = block_layout(rest, u);
  const std::size_t total = lay.bytes * static_cast<std::size_t>(u);
  Buffer recv(alloc, total);
  {
    Buffer send(alloc, total);
    pack(send, lay, rest);
    exchange(comm, send.data(), recv.data(), lay.bytes, timings);
  }
  unpack(recv, lay, rest);
}

}  // namespace

void scatter_heads(Communicator& comm, AttentionKernel& kernel, Allocator& alloc,
                   const std::vector<HeadExchange>& items, UspTimings& timings) {
  const int u = comm.size();
  block_layout(items, u);  // validates every item
  const Device dev = comm.device();
  exchange_heads(
      comm, alloc, items, timings,
      [&](const Buffer& send, const HeadExchange& x) {
        scatter_direct(comm, kernel, send, x, timings);
      },
      [&](const Buffer& send, const BlockLayout& lay, const std::vector<HeadExchange>& rest) {
        for (int j = 0; j < u; ++j) {
          for (std::size_t n = 0; n < rest.size(); ++n) {
            const HeadExchange& x = rest[n];
            const Tensor part = part_view(block_ptr(send, lay.bytes, j), lay.offset[n], x, dev);
            for (const HeadSplit::Run& run : x.split->runs(j)) {
              Tensor dst = part.slice(x.head_dim, run.slot, run.count);
              kernel.copy(x.shard.slice(x.head_dim, run.head, run.count), dst);
            }
          }
        }
      },
      [&](const Buffer& recv, const BlockLayout& lay, const std::vector<HeadExchange>& rest) {
        for (int i = 0; i < u; ++i) {
          for (std::size_t n = 0; n < rest.size(); ++n) {
            const HeadExchange& x = rest[n];
            const std::int64_t ls = x.shard.size(x.seq_dim);
            Tensor dst = x.ring.slice(x.seq_dim, i * ls, ls);
            kernel.copy(part_view(block_ptr(recv, lay.bytes, i), lay.offset[n], x, dev), dst);
          }
        }
      });
}

void gather_heads(Communicator& comm, AttentionKernel& kernel, Allocator& alloc,
                  const std::vector<HeadExchange>& items, UspTimings& timings) {
  const int u = comm.size();
  block_layout(items, u);  // validates every item
  for (const HeadExchange& x : items) check_sum_dtype(x);
  const Device dev = comm.device();
  exchange_heads(
      comm, alloc, items, timings,
      [&](const Buffer& recv, const HeadExchange& x) {
        gather_direct(comm, kernel, recv, x, timings);
      },
      [&](const Buffer& send, const BlockLayout& lay, const std::vector<HeadExchange>& rest) {
        for (int i = 0; i < u; ++i) {
          for (std::size_t n = 0; n < rest.size(); ++n) {
            const HeadExchange& x = rest[n];
            const std::int64_t ls = x.shard.size(x.seq_dim);
            Tensor part = part_view(block_ptr(send, lay.bytes, i), lay.offset[n], x, dev);
            kernel.copy(x.ring.slice(x.seq_dim, i * ls, ls), part);
          }
        }
      },
      [&](const Buffer& recv, const BlockLayout& lay, const std::vector<HeadExchange>& rest) {
        for (std::size_t n = 0; n < rest.size(); ++n) {
          const HeadExchange& x = rest[n];
          const bool sum = x.split->replicated();
          Tensor shard = x.shard;
          if (sum) kernel.fill_zero(shard);
          for (int j = 0; j < u; ++j) {
            const Tensor part = part_view(block_ptr(recv, lay.bytes, j), lay.offset[n], x, dev);
            for (const HeadSplit::Run& run : x.split->runs(j)) {
              const Tensor src = part.slice(x.head_dim, run.slot, run.count);
              Tensor dst = shard.slice(x.head_dim, run.head, run.count);
              if (sum) {
                kernel.add(src, dst);
              } else {
                kernel.copy(src, dst);
              }
            }
          }
        }
      });
}

}  // namespace usp::detail
