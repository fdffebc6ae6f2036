// The block-attention kernel: the one interface through which the parallel algorithms compute.
// CPU and CUDA implement it; ring and Ulysses code never looks inside.
#pragma once

#include <memory>
#include <string>

#include "usp/mask.hpp"
#include "usp/tensor.hpp"

namespace usp {

class AttentionKernel {
 public:
  virtual ~AttentionKernel() = default;
  virtual Device device() const = 0;
  virtual std::string name() const = 0;

  // q [b, sq, h, d], k and v [b, sk, hkv, d] (same dtype; h a multiple of hkv; query head i uses
  // kv head i / (h / hkv)). Writes out [b, sq, h, d] (any dtype, fp32 for ring partials) and
  // lse [b, h, sq] (fp32, natural log of the sum of exp of scaled scores). A query row that sees
  // no key gets out = 0 and lse = -inf. Outputs may be strided views (last dim contiguous).
  // The mask is a local mode (MaskMode converts to it; causal modes with sq != sk are rejected)
  // or a general one (usp/mask.hpp: the attention's causal/window/document mask with the global
  // positions of the rows); tiles with no visible pair are skipped.
  virtual void forward(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
                       float scale, Tensor& out, Tensor& lse) = 0;

  // Gradients of the block given out/lse of the FULL attention the block belongs to (merged across
  // blocks): P = exp(scale·QKᵀ − lse), D = rowsum(dout ∘ out). dq [b, sq, h, d], dk and dv
  // [b, sk, hkv, d] are fp32; with accumulate the results are added to what they hold, otherwise
  // they are overwritten. Rows with lse = -inf contribute nothing.
  virtual void backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                        const Tensor& lse, const Tensor& dout, const BlockMask& mask, float scale,
                        Tensor& dq, Tensor& dk, Tensor& dv, bool accumulate) = 0;

  // Folds the attention of q over (k, v, mask) into an fp32 accumulator (out [b, sq, h, d], lse
  // [b, h, sq]; views allowed) that holds a partial result for the same query rows: afterwards
  // they hold the merge (see merge()) of the accumulator with what forward() would return, up to
  // fp32 rounding, with no partial result materialised. Rows with lse = -inf start empty (their
  // out is ignored). Throws Error on invalid arguments as forward() does (and for an out that is
  // not fp32). Returns false, touching nothing, when the kernel has no such path; the caller then
  // runs forward() into a scratch and merge().
  virtual bool forward_accumulate(const Tensor& q, const Tensor& k, const Tensor& v,
                                  const BlockMask& mask, float scale, Tensor& out, Tensor& lse) {
    (void)q, (void)k, (void)v, (void)mask, (void)scale, (void)out, (void)lse;
    return false;
  }

  // Folds a partial result (out_b, lse_b) into an fp32 accumulator (out, lse) of the same shape,
  // in the overflow-free form out ← out − σ(lse_b − lse)·(out − out_b), lse ← lse − log σ(lse −
  // lse_b). Correct when either lse is -inf. Row ranges are expressed by passing slices.
  virtual void merge(Tensor& out, Tensor& lse, const Tensor& out_b, const Tensor& lse_b) = 0;

  // Fills a tensor with zeros / lse with -inf (device-side helpers the algorithms need).
  virtual void fill_zero(Tensor& t) = 0;
  virtual void fill_neg_inf(Tensor& t) = 0;
  // dst = src converted to dst's dtype (same shape; views allowed).
  virtual void copy(const Tensor& src, Tensor& dst) = 0;
  // dst += src (fp32 dst, src of any dtype; same shape).
  virtual void add(const Tensor& src, Tensor& dst) = 0;
};

// Validates the forward/backward arguments shared by every implementation; throws Error naming
// the argument and the rule (shape mismatch, h % hkv != 0, d > 256, causal with sq != sk, ...).
void check_forward_args(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
                        const Tensor& out, const Tensor& lse);
void check_backward_args(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                         const Tensor& lse, const Tensor& dout, const BlockMask& mask,
                         const Tensor& dq, const Tensor& dk, const Tensor& dv);

// CPU implementation: tiled online softmax, never an sq×sk matrix, parallel over (b, h, query
// tiles) on `threads` threads (0 = hardware concurrency).
//
// Each forward/backward call takes its scratch (per-thread fp32 tiles and K/V — for the backward
// also Q/dout — packed to fp32 panels) as one block from `scratch` (a host allocator; nullptr =
// default_host_allocator()) and gives it back before returning, so a rank's allocator counts it
// in its peak and holds none of it between calls.
std::unique_ptr<AttentionKernel> make_cpu_kernel(int threads, Allocator* scratch = nullptr);

// The bytes one forward (backward = false) or backward call of make_cpu_kernel(threads) takes from
// its scratch allocator for q [b, sq, h, d] and k, v [b, sk, hkv, d], exactly (the formula is in
// src/kernel/cpu/workspace.hpp).
std::size_t cpu_kernel_scratch_bytes(bool backward, std::int64_t b, std::int64_t sq,
                                     std::int64_t sk, std::int64_t h, std::int64_t hkv,
                                     std::int64_t d, int threads);

}  // namespace usp
