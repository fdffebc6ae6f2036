// USP attention: Ulysses all-to-all (scatter heads, gather sequence) → ring attention over the
// ring group → reverse all-to-all; the backward pass in reverse. Written once against
// AttentionKernel and Communicator.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "usp/comm.hpp"
#include "usp/kernel.hpp"
#include "usp/layout.hpp"
#include "usp/memory.hpp"
#include "usp/mesh.hpp"
#include "usp/timings.hpp"

namespace usp {

struct UspConfig {
  RingType ring_type = RingType::zigzag;
  int ulysses = 1;
  int ring = 1;
  int data = 1;
  Placement placement = Placement::ulysses_inner;
  bool causal = true;
  float scale = 0.0f;  // 0 → 1/sqrt(head size)
  // Refuse NaN and ±Inf inputs: every forward/backward first scans this rank's q, k, v (and out,
  // dout) and, when any rank of the sequence-parallel group holds one, throws on every rank an
  // Error(invalid_argument) naming the tensor, the rank and the first index. Off: non-finite
  // inputs propagate as in plain attention.
  bool check_finite = false;
  // The double ring: the ring group of `ring` ranks as ring / double_ring inner rings of
  // double_ring consecutive ring ranks. K/V go around the inner ring, then one hop on the outer
  // ring (ring rank g·double_ring + i to (g + 1)·double_ring + i), posted when a phase starts and
  // overlapped with its inner steps, so that slow links carry fewer, larger transfers. 0 (or
  // `ring`) is the single ring; it must divide `ring` and needs a ring type that passes K/V around
  // (not allgather). Exact like the single ring.
  int double_ring = 0;
  // A sliding window (flash-attention's (left, right), -1 unbounded) and packed documents
  // (cu_seqlens [0, l1, l1 + l2, ..., S] over the global sequence, batch 1): a query sees the
  // keys of its own document within its window (causal within it when causal). Both together
  // are allowed; the work follows the mask (ring steps and tiles with no visible pair are
  // skipped). Documents can change between calls: set_documents(). CPU kernel only.
  Window window{};
  std::vector<std::int64_t> cu_seqlens{};
  // The forward in head chunks: the call runs as head_chunks calls, each on an equal share of
  // the kv heads (and their query heads), one after the other, so that the exchanged q, the K/V
  // ring buffers and the fp32 accumulator exist for one chunk at a time (of a forward's about 10
  // shard-sized units per rank in fp16/bf16, all but the caller's q, k, v and the out being
  // filled are divided by head_chunks). The communication is the same bytes in head_chunks
  // times as many messages; the results are the same bits (heads are independent). 0: 2 when
  // the ring has more than one rank and the heads split evenly (kv heads divisible by
  // 2·ulysses), else 1; 1: one call; n > 1 must divide the kv heads into shares that ulysses
  // divides.
  int head_chunks = 0;
};

// One object per rank. Construction is collective over `world`: it validates the mesh, splits the
// sub-communicators and checks once that every rank got the same configuration (mismatches throw
// an Error naming the differing ranks and values).
class UspAttention {
 public:
  UspAttention(Communicator& world, AttentionKernel& kernel, Allocator& alloc,
               const UspConfig& config);
  ~UspAttention();
  UspAttention(const UspAttention&) = delete;
  UspAttention& operator=(const UspAttention&) = delete;

  struct Output {
    Tensor out;  // [b, s_local, h, d], dtype of q
    Tensor lse;  // [b, h, s_local], fp32
  };
  struct Grads {
    Tensor dq, dk, dv;  // shapes and dtype of q, k, v
  };

  // q [b, s_local, h, d], k and v [b, s_local, hkv, d]: this rank's shard in the layout order of
  // layout(global seq_len), s_local = seq_len / (u·r). Every call checks the shapes and dtype
  // against every other rank of the sequence-parallel group (one all-gather of a digest); a
  // mismatch throws, on every rank, an Error naming the ranks and shapes that differ. NaN and
  // ±Inf propagate as in the float64 reference: a row seeing a NaN score is NaN, one whose
  // visible scores are all -inf (an infinite q or k) is NaN with lse NaN (softmax's 0/0).
  Output forward(const Tensor& q, const Tensor& k, const Tensor& v);
  // out and lse as returned by forward; dout like out.
  Grads backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                 const Tensor& lse, const Tensor& dout);

  // Packed documents for the following calls (as UspConfig::cu_seqlens; empty: one document).
  // Local: every rank of the sequence-parallel group must set the same ones before its next
  // call (the call compares them, as it compares shapes).
  void set_documents(std::vector<std::int64_t> cu_seqlens);

  const UspConfig& config() const;
  const Mesh& mesh() const;
  Layout layout(std::int64_t seq_len) const;
  UspTimings timings() const;
  void reset_timings();

 private:
  struct State;
  std::unique_ptr<State> s_;
};

// The one-object entry point: what one rank needs for sequence-parallel attention, from the
// backend's name. Designated-initialiser friendly: usp::Attention attn(world, {.ulysses = 2,
// .ring = 4}).
struct AttentionOptions {
  std::string backend = "cpu";  // "cpu"/"local", "mpi", "cuda"/"cuda-local", "nccl" (backend.hpp):
                                // picks the kernel and the allocator, not the communicator
  int ulysses = 1, ring = 1, data = 1;
  RingType ring_type = RingType::zigzag;
  Placement placement = Placement::ulysses_inner;
  bool causal = true;
  float scale = 0.0f;         // 0 → 1/sqrt(head size)
  bool check_finite = false;  // UspConfig::check_finite
  int double_ring = 0;        // UspConfig::double_ring: inner ring size, 0 = the single ring
  Window window{};            // UspConfig::window
  std::vector<std::int64_t> cu_seqlens{};  // UspConfig::cu_seqlens
  int head_chunks = 0;                     // UspConfig::head_chunks (0: automatic)
  int threads = 0;  // CPU kernel threads per rank; 0 = default_threads(host_ranks(...))
};

// Owns the rank's allocator, kernel and UspAttention. Construction is collective over `world`
// (as UspAttention's); world.size() must be data × ulysses × ring. Tensors from shard, forward
// and backward live in allocator() (host memory, or the GPU for the CUDA backends).
class Attention {
 public:
  explicit Attention(Communicator& world, const AttentionOptions& options = {});
  ~Attention();
  Attention(const Attention&) = delete;
  Attention& operator=(const Attention&) = delete;

  // This rank's part of a global host tensor, in the layout order of layout(global seq_len):
  // [b, s, h, d] → [b, s/(u·r), h, d] (seq_dim 1; 2 for an lse-like [b, h, s]).
  Tensor shard(const Tensor& global, int seq_dim = 1) const;
  // Collective over the ranks sharing one sequence: every rank gets the global host tensor in
  // token order from everyone's `local` (same shape and dtype on every rank).
  Tensor gather(const Tensor& local, int seq_dim = 1);

  UspAttention::Output forward(const Tensor& q, const Tensor& k, const Tensor& v);
  UspAttention::Grads backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                               const Tensor& lse, const Tensor& dout);
  // UspAttention::set_documents: packed documents for the following calls.
  void set_documents(std::vector<std::int64_t> cu_seqlens);

  Layout layout(std::int64_t seq_len) const;
  const Mesh& mesh() const;
  UspTimings timings() const;
  int threads() const;  // the CPU kernel's threads (as chosen when options.threads is 0)
  Allocator& allocator();
  AttentionKernel& kernel();
  UspAttention& core();

 private:
  struct Parts;
  std::unique_ptr<Parts> p_;
};

}  // namespace usp
