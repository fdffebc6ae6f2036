// The backward's pre-pass, shared by both backward kernels: delta = rowsum(dout ∘ out) per query
// row, fp32, one warp per row.
#include "device_util.cuh"

namespace usp::cuda::detail {
namespace {

__global__ void delta_kernel(AttnArgs a, std::int64_t rows) {
  const int lane = threadIdx.x % 32;
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * (blockDim.x / 32);
  for (std::int64_t row =
           blockIdx.x * static_cast<std::int64_t>(blockDim.x / 32) + threadIdx.x / 32;
       row < rows; row += warps) {
    const std::int64_t i = row % a.sq, h = (row / a.sq) % a.heads, b = row / (a.sq * a.heads);
    const std::int64_t od = b * a.dout_str[0] + i * a.dout_str[1] + h * a.dout_str[2];
    const std::int64_t oo = b * a.out_str[0] + i * a.out_str[1] + h * a.out_str[2];
    float s = 0.0f;
    for (int c = lane; c < a.head_dim; c += 32)
      s += load_f32(a.dout, od + c, a.dtype) * load_f32(a.out, oo + c, a.out_dtype);
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (lane == 0) a.delta[row] = s;  // row = (b·h + head)·sq + i
  }
}

}  // namespace

void launch_delta(const AttnArgs& a, cudaStream_t stream) {
  const std::int64_t rows = static_cast<std::int64_t>(a.batch) * a.heads * a.sq;
  if (rows == 0) return;
  delta_kernel<<<grid_for(rows, 8), 256, 0, stream>>>(a, rows);
  check_launch("attention backward delta");
}

}  // namespace usp::cuda::detail
