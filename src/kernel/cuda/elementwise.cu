// Fill / copy / add / merge on device, over strided views of up to 4 dims.
#include <cmath>

#include "device_util.cuh"

namespace usp::cuda::detail {
namespace {

__device__ __forceinline__ void unravel(std::int64_t i, const std::int64_t* shape,
                                        std::int64_t* idx) {
  for (int d = 3; d >= 0; --d) {
    idx[d] = i % shape[d];
    i /= shape[d];
  }
}

__device__ __forceinline__ std::int64_t offset(const std::int64_t* idx, const std::int64_t* st) {
  return idx[0] * st[0] + idx[1] * st[1] + idx[2] * st[2] + idx[3] * st[3];
}

__global__ void fill_kernel(View4 t, float value, std::int64_t n) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t idx[4];
    unravel(i, t.shape, idx);
    store_f32(t.data, offset(idx, t.stride), t.dtype, value);
  }
}

__global__ void copy_kernel(View4 src, View4 dst, std::int64_t n, bool add) {
  for (std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; i < n;
       i += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    std::int64_t idx[4];
    unravel(i, dst.shape, idx);
    float v = load_f32(src.data, offset(idx, src.stride), src.dtype);
    const std::int64_t o = offset(idx, dst.stride);
    if (add) v += load_f32(dst.data, o, dst.dtype);
    store_f32(dst.data, o, dst.dtype, v);
  }
}

// One thread per (b, s, h) row: reads both lse once, updates the d outputs, then the lse.
// out ← out − σ(lse_b − lse)·(out − out_b);  lse ← lse − log σ(lse − lse_b).
__global__ void merge_kernel(View4 out, View4 lse, View4 out_b, View4 lse_b, std::int64_t rows) {
  const std::int64_t S = out.shape[1], H = out.shape[2], D = out.shape[3];
  for (std::int64_t r = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x; r < rows;
       r += static_cast<std::int64_t>(gridDim.x) * blockDim.x) {
    const std::int64_t h = r % H, s = (r / H) % S, b = r / (H * S);
    float* lp =
        static_cast<float*>(lse.data) + b * lse.stride[0] + h * lse.stride[1] + s * lse.stride[2];
    const float la = *lp;
    const float lb = load_f32(
        lse_b.data, b * lse_b.stride[0] + h * lse_b.stride[1] + s * lse_b.stride[2], lse_b.dtype);
    if (lb == -INFINITY) continue;  // nothing to fold in
    float* o =
        static_cast<float*>(out.data) + b * out.stride[0] + s * out.stride[1] + h * out.stride[2];
    const std::int64_t ob = b * out_b.stride[0] + s * out_b.stride[1] + h * out_b.stride[2];
    if (la == -INFINITY) {
      for (std::int64_t d = 0; d < D; ++d)
        o[d * out.stride[3]] = load_f32(out_b.data, ob + d * out_b.stride[3], out_b.dtype);
      *lp = lb;
      continue;
    }
    const float x = lb - la;  // σ(x) = weight of the new partial
    const float sig = 1.0f / (1.0f + expf(-x));
    for (std::int64_t d = 0; d < D; ++d) {
      const float a = o[d * out.stride[3]];
      const float bv = load_f32(out_b.data, ob + d * out_b.stride[3], out_b.dtype);
      o[d * out.stride[3]] = a - sig * (a - bv);
    }
    // lse − log σ(lse − lse_b) = lse + log(1 + exp(lse_b − lse)) = max + log1p(exp(−|x|)).
    *lp = fmaxf(la, lb) + log1pf(expf(-fabsf(x)));
  }
}

std::int64_t numel(const View4& t) {
  return t.shape[0] * t.shape[1] * t.shape[2] * t.shape[3];
}

}  // namespace

void launch_fill(const View4& t, float value, cudaStream_t stream) {
  const std::int64_t n = numel(t);
  if (n == 0) return;
  fill_kernel<<<grid_for(n, 256), 256, 0, stream>>>(t, value, n);
  check_launch("fill");
}

void launch_copy(const View4& src, const View4& dst, cudaStream_t stream) {
  const std::int64_t n = numel(dst);
  if (n == 0) return;
  copy_kernel<<<grid_for(n, 256), 256, 0, stream>>>(src, dst, n, false);
  check_launch("copy");
}

void launch_add(const View4& src, const View4& dst, cudaStream_t stream) {
  const std::int64_t n = numel(dst);
  if (n == 0) return;
  copy_kernel<<<grid_for(n, 256), 256, 0, stream>>>(src, dst, n, true);
  check_launch("add");
}

void launch_merge(const View4& out, const View4& lse, const View4& out_b, const View4& lse_b,
                  cudaStream_t stream) {
  const std::int64_t rows = out.shape[0] * out.shape[1] * out.shape[2];
  if (rows == 0) return;
  merge_kernel<<<grid_for(rows, 128), 128, 0, stream>>>(out, lse, out_b, lse_b, rows);
  check_launch("merge");
}

}  // namespace usp::cuda::detail
