// The CPU AttentionKernel: a thread pool, per-call workspaces (per-worker tiles and packed panels
// from the kernel's allocator) and the passes that use them.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "kernel/cpu/tile_ops.hpp"
#include "kernel/cpu/tiling.hpp"
#include "usp/kernel.hpp"
#include "usp/memory.hpp"
#include "util/thread_pool.hpp"

namespace usp::cpu {

// Which pass a workspace serves: the tiles each needs differ.
enum class Pass : std::uint8_t { forward, backward };

// Packed fp32 tiles of one worker, each 64-byte aligned, rows dpad floats wide (s and dp kBc
// wide). R = task_rows(pass, sq) query rows and K = min(kBwdTiles·kBc, pad_vec(sk)) keys (the
// backward's key block) at most. A pass sets only the tiles it uses (the others are null).
struct Tiles {
  float* q = nullptr;      // [R][dpad]  query rows (forward: kFwdTiles query tiles)
  float* s = nullptr;      // [min(R, kBr)][kBc]   scores, then probabilities
  float* dp = nullptr;     // [R][kBc]   dout·vᵀ, then score gradients (backward)
  float* acc = nullptr;    // [R][dpad]  output accumulator (forward)
  float* dk = nullptr;     // [K][dpad]  dk accumulator (backward)
  float* dv = nullptr;     // [K][dpad]  dv accumulator (backward)
  float* row_m = nullptr;  // [R] (forward)
  float* row_l = nullptr;  // [R] (forward)
  float* line = nullptr;   // [dpad]
};

// Tile rows a call needs: R (rows = sq) or K (rows = sk) above.
int tile_rows(std::int64_t rows, int most);
// Query rows one task of the pass owns: R above (forward kFwdTiles·kBr, backward kBr at most).
int task_rows(Pass pass, std::int64_t sq);

// Floats of one worker's tiles for the pass:
//   forward:  2·R·dpad + min(R, kBr)·kBc + 2·R + dpad
//   backward: 2·K·dpad + 2·R·kBc + dpad
std::size_t tile_floats(Pass pass, int dpad, int R, int K);

// The scratch memory of one forward or backward call, one block from the kernel's allocator:
// `workers` sets of tiles, then `panel_floats` of packed panels. It lives for the call only, so
// between calls a rank holds nothing but its tensors, and during a call the allocator counts it.
class Workspace {
 public:
  Workspace(Allocator& alloc, Pass pass, int workers, int dpad, int R, int K,
            std::size_t panel_floats);
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  const Tiles& tiles(int worker) const { return tiles_[static_cast<std::size_t>(worker)]; }
  float* panels() const { return panels_; }

 private:
  Buffer block_;
  std::vector<Tiles> tiles_;
  float* panels_ = nullptr;
};

// Consecutive (batch, kv head) groups processed together: their K/V (and for the backward Q/dout)
// are packed into fp32 panels once, then every tile task of the batch reads the panels. Batches
// are sized to give the pool enough tasks while bounding the panel memory.
struct GroupBatch {
  std::int64_t first, count;  // groups [first, first + count), group = b · hkv + kv head
};
std::vector<GroupBatch> plan_batches(std::int64_t groups, std::int64_t tasks_per_group,
                                     std::size_t floats_per_group, int threads);
// Groups in the largest batch.
std::int64_t largest_batch(const std::vector<GroupBatch>& batches);

// Element addressing of a [b, s, h, d] or [b, h, s] host tensor.
struct View {
  char* base;
  std::int64_t s0, s1, s2;  // byte strides of the first three dims
  DType dtype;
  explicit View(const Tensor& t);
  void* at(std::int64_t i0, std::int64_t i1, std::int64_t i2) const {
    return base + i0 * s0 + i1 * s1 + i2 * s2;
  }
};

struct Problem {
  std::int64_t b, sq, sk, h, hkv, d;
  int dpad;  // d rounded up to kVec
  MaskMode mask;
  float scale;
  bool fold = false;  // forward: out (fp32) and lse hold a partial result to fold into
  std::int64_t group() const { return h / hkv; }
  std::int64_t q_tiles() const { return (sq + kBr - 1) / kBr; }
  std::int64_t k_tiles() const { return (sk + kBc - 1) / kBc; }
  // Key range [0, end) any query of rows [i0, i1) may see.
  std::int64_t key_end(std::int64_t i1) const;
  // First query row that sees key j0 or later.
  std::int64_t first_query(std::int64_t j0) const;
  // The query tile (of tile_rows rows) of the first query that sees key j0 or later; the last
  // tile when no query does.
  std::int64_t first_query_tile(std::int64_t j0, int tile_rows) const;
  // Whether the tile (rows from i0, keys from j0..j1) needs per-element masking.
  bool tile_needs_mask(std::int64_t i0, std::int64_t j1) const;
};

Problem make_problem(const Tensor& q, const Tensor& k, MaskMode mask, float scale);

// Panel floats of one group and the tasks per group the batching balances, per pass (forward.cpp,
// backward.cpp), and the floats of a whole call's workspace on `threads` workers (pack.cpp).
struct PanelPlan {
  std::size_t per_group;
  std::int64_t tasks_per_group;
};
PanelPlan forward_panels(const Problem& p);
PanelPlan backward_panels(const Problem& p);
std::size_t workspace_floats(Pass pass, const Problem& p, int threads);

// What the passes run on: the inner loops, the pool and the allocator of their workspace.
struct Context {
  const TileOps& ops;
  detail::ThreadPool& pool;
  Allocator& scratch;
};

class CpuKernel final : public AttentionKernel {
 public:
  CpuKernel(int threads, const TileOps& ops, Allocator& scratch);
  Device device() const override { return Device::host; }
  std::string name() const override;

  void forward(const Tensor& q, const Tensor& k, const Tensor& v, MaskMode mask, float scale,
               Tensor& out, Tensor& lse) override;
  void backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                const Tensor& lse, const Tensor& dout, MaskMode mask, float scale, Tensor& dq,
                Tensor& dk, Tensor& dv, bool accumulate) override;
  bool forward_accumulate(const Tensor& q, const Tensor& k, const Tensor& v, MaskMode mask,
                          float scale, Tensor& out, Tensor& lse) override;
  void merge(Tensor& out, Tensor& lse, const Tensor& out_b, const Tensor& lse_b) override;
  void fill_zero(Tensor& t) override;
  void fill_neg_inf(Tensor& t) override;
  void copy(const Tensor& src, Tensor& dst) override;
  void add(const Tensor& src, Tensor& dst) override;

 private:
  detail::ThreadPool pool_;
  const TileOps& ops_;
  Allocator& scratch_;  // every call's workspace comes from here and returns before it ends
  Context context() { return Context{ops_, pool_, scratch_}; }
};

// Forward prologue of `rows` query rows starting at i0 of (batch bi, head hi), padded to
// rows_pad, shared by the fp32 and AMX forwards: the running max m (base-2 units), sum l and
// accumulator acc (pitch dp) start empty (-inf, 0, 0), or with p.fold from the partial result in
// out (fp32) and lse: m = lse·log2 e, l = 1, acc = out row (an lse of -inf starts empty).
void start_forward_rows(const Problem& p, float* acc, int dp, int d, float* m, float* l, int rows,
                        int rows_pad, const View& vo, const View& vl, std::int64_t bi,
                        std::int64_t hi, std::int64_t i0);
// Forward epilogue of `rows` query rows starting at i0 of (batch bi, head hi), shared by the fp32
// and AMX forwards: each acc row (pitch dp) is divided by its softmax sum l and stored to out
// (its dtype); lse = (m + log2 l)·ln 2 with the running max m in base-2 units. A row with l = 0
// saw no key: zeros and lse = -inf. acc is modified.
void finish_forward_rows(float* acc, int dp, int d, const float* m, const float* l, int rows,
                         const View& vo, const View& vl, std::int64_t bi, std::int64_t hi,
                         std::int64_t i0);

// Passes (forward.cpp, backward.cpp).
void run_forward(const Problem& p, const Context& cx, const Tensor& q, const Tensor& k,
                 const Tensor& v, Tensor& out, Tensor& lse);
void run_backward(const Problem& p, const Context& cx, const Tensor& q, const Tensor& k,
                  const Tensor& v, const Tensor& out, const Tensor& lse, const Tensor& dout,
                  Tensor& dq, Tensor& dk, Tensor& dv, bool accumulate);

// Tile packing shared by the passes (pack.cpp).
// rows [r0, r0 + n) of head `head` in batch b → dst[n][ld] fp32, columns [d, ld) and rows
// [n, n_pad) zeroed.
void pack_rows(const TileOps& ops, const View& t, std::int64_t b, std::int64_t r0, int n,
               std::int64_t head, int d, float* dst, int ld, int n_pad);
// Same rows transposed: dst[c][r] for c < d, r < n; columns [n, n_pad) zeroed.
void pack_cols(const TileOps& ops, const View& t, std::int64_t b, std::int64_t r0, int n,
               std::int64_t head, int d, float* dst, int ld, int n_pad, float* line);
// Sets s[r][j] = -inf where key j0 + j is hidden from query i0 + r or j >= n_valid.
void apply_mask(const Problem& p, std::int64_t i0, int rows, std::int64_t j0, int n_valid,
                int n_pad, float* s, int ld);

}  // namespace usp::cpu
