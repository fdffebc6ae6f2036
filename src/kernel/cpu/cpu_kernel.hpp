// The CPU AttentionKernel: a thread pool, the tile ops of the CPU path and the allocator every
// call's workspace comes from; the calls check their arguments and run the passes (passes.hpp).
#pragma once

#include <string>

#include "kernel/cpu/passes.hpp"
#include "kernel/cpu/tile_ops.hpp"
#include "usp/kernel.hpp"
#include "usp/memory.hpp"
#include "util/thread_pool.hpp"

namespace usp::cpu {

class CpuKernel final : public AttentionKernel {
 public:
  CpuKernel(int threads, const TileOps& ops, Allocator& scratch);
  Device device() const override { return Device::host; }
  std::string name() const override;

  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
               float scale, Tensor& out, Tensor& lse) override;
  void backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                const Tensor& lse, const Tensor& dout, const BlockMask& mask, float scale,
                Tensor& dq, Tensor& dk, Tensor& dv, bool accumulate) override;
  bool forward_accumulate(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
                          float scale, Tensor& out, Tensor& lse) override;
  void merge(Tensor& out, Tensor& lse, const Tensor& out_b, const Tensor& lse_b) override;
  void fill_zero(Tensor& t) override;
  void fill_neg_inf(Tensor& t) override;
  void copy(const Tensor& src, Tensor& dst) override;
  void add(const Tensor& src, Tensor& dst) override;

  // The score tiles (query tile × key tile) the forward passes of the vector loops computed
  // since construction: the work the mask left (the AMX path does not count).
  std::int64_t score_tiles() const { return score_tiles_.load(); }

 private:
  detail::ThreadPool pool_;
  const TileOps& ops_;
  Allocator& scratch_;  // every call's workspace comes from here and returns before it ends
  std::atomic<std::int64_t> score_tiles_{0};
  Context context() { return Context{ops_, pool_, scratch_, &score_tiles_}; }
};

}  // namespace usp::cpu
