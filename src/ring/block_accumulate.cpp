// Chunked forward-and-merge of one block (see block_accumulate.hpp).
#include "ring/block_accumulate.hpp"

#include <algorithm>
#include <thread>

#include "usp/error.hpp"

namespace usp::detail {
namespace {

// Query rows per work item of a kernel call: the CPU kernel's query tile; GPU kernels use tiles
// of up to 128 rows.
constexpr std::int64_t kHostTileRows = 64;
constexpr std::int64_t kDeviceTileRows = 128;
// Work items per call: a few per host thread; a few waves of a large GPU's multiprocessors.
constexpr std::int64_t kItemsPerHostThread = 4;
constexpr std::int64_t kDeviceItems = 1024;
// Each kernel call packs the block's whole K/V again (converted to fp32 panels) and the CPU
// forward works on 256-row query blocks, so a host chunk has at least 256 rows: with 128 (8 ranks
// × 4 heads, s = 16384, d = 128) the re-packing took ~10 % of the ring's time. Larger floors pay
// more (512: ~2 %, 1024: ~1 %) but hold a larger fp32 partial: 4 bytes × chunk × heads × d.
constexpr std::int64_t kHostMinChunkRows = 256;

std::int64_t ceil_div(std::int64_t a, std::int64_t b) {
  return (a + b - 1) / b;
}

}  // namespace

std::int64_t accumulate_chunk_rows(Device device, std::int64_t b, std::int64_t h,
                                   std::int64_t rows) {
  USP_CHECK_ARG(b >= 1 && h >= 1 && rows >= 0, "accumulate chunk: b ", b, ", h ", h, ", rows ",
                rows, " must be positive");
  std::int64_t tile = kHostTileRows, items = kDeviceItems;
  if (device == Device::host) {
    const auto threads =
        static_cast<std::int64_t>(std::max(1u, std::thread::hardware_concurrency()));
    items = kItemsPerHostThread * threads;
  } else {
    tile = kDeviceTileRows;
  }
  std::int64_t chunk = tile * ceil_div(items, b * h);
  if (device == Device::host) chunk = std::max(chunk, kHostMinChunkRows);
  return std::max<std::int64_t>(1, std::min(chunk, rows));
}

BlockAccumulator::BlockAccumulator(AttentionKernel& kernel, Allocator& alloc,
                                   std::int64_t chunk_rows)
    : kernel_(kernel), alloc_(alloc), chunk_(chunk_rows) {
  USP_CHECK_ARG(chunk_rows >= 1, "accumulate chunk rows ", chunk_rows, " must be >= 1");
}

void BlockAccumulator::add_piece(const Tensor& q, const Tensor& k, const Tensor& v,
                                 const BlockMask& mask, float scale, Tensor& out, Tensor& lse) {
  const std::int64_t rows = q.size(1);
  if (!scratch_out_.defined() || scratch_out_.size(0) != q.size(0) || scratch_out_.size(1) < rows ||
      scratch_out_.size(2) != q.size(2) || scratch_out_.size(3) != q.size(3)) {
    scratch_out_ = Tensor();  // the old scratch goes before the new one comes
    scratch_lse_ = Tensor();
    scratch_out_ = Tensor::empty({q.size(0), rows, q.size(2), q.size(3)}, DType::f32, alloc_);
    scratch_lse_ = Tensor::empty({q.size(0), q.size(2), rows}, DType::f32, alloc_);
  }
  Tensor ob = scratch_out_.slice(1, 0, rows), lb = scratch_lse_.slice(2, 0, rows);
  kernel_.forward(q, k, v, mask, scale, ob, lb);
  kernel_.merge(out, lse, ob, lb);
}

void BlockAccumulator::add(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
                           float scale, Tensor& out, Tensor& lse) {
  const std::int64_t sq = q.size(1), sk = k.size(1);
  USP_CHECK_ARG(mask.general() || mask.mode() == MaskMode::none || sq == sk, "accumulate: a ",
                mask_name(mask.mode()), " block needs as many queries as keys, got q ",
                q.describe(), " and k ", k.describe());
  USP_CHECK_ARG(out.dim() == 4 && out.size(1) == sq && lse.dim() == 3 && lse.size(2) == sq,
                "accumulate: out ", out.describe(), " and lse ", lse.describe(),
                " must hold the rows of q ", q.describe());
  // A kernel that folds into the accumulator itself needs neither chunks nor scratch.
  if (kernel_.forward_accumulate(q, k, v, mask, scale, out, lse)) return;
  for (std::int64_t a = 0; a < sq; a += chunk_) {
    const std::int64_t c = std::min(chunk_, sq - a);
    const Tensor qc = q.slice(1, a, c);
    Tensor oc = out.slice(1, a, c), lc = lse.slice(2, a, c);
    if (mask.general()) {  // the chunk's rows keep their global positions
      add_piece(qc, k, v, mask.rows_from(a), scale, oc, lc);
      continue;
    }
    if (mask.mode() == MaskMode::none) {
      add_piece(qc, k, v, mask, scale, oc, lc);
      continue;
    }
    if (a > 0) add_piece(qc, k.slice(1, 0, a), v.slice(1, 0, a), MaskMode::none, scale, oc, lc);
    add_piece(qc, k.slice(1, a, c), v.slice(1, a, c), mask, scale, oc, lc);
  }
}

}  // namespace usp::detail
