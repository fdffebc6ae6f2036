// Launch interface between the host-side CUDA kernel class (kernel.cpp) and the device code
// (*.cu). Plain structs of pointers, sizes and element strides; every launch is asynchronous on
// `stream` and reports launch errors as usp::Error.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace usp::cuda::detail {

// Element type codes shared with usp::DType (f32 = 0, bf16 = 1, f16 = 2).
enum : int { kF32 = 0, kBF16 = 1, kF16 = 2 };

// A tensor of up to 4 dims as the device sees it (leading dims padded with size 1).
struct View4 {
  void* data = nullptr;
  std::int64_t shape[4] = {1, 1, 1, 1};
  std::int64_t stride[4] = {0, 0, 0, 0};
  int dtype = kF32;
};

// Implementations of the forward and of the backward: kImplWmma (WMMA fragments, scores through
// shared memory, any sm_70+: attention_fwd.cu, attention_bwd.cu) and kImplMma (mma.sync with
// scores in registers, sm_80+: attention_fwd_mma.cu, attention_bwd_mma.cu). kImplDefault picks
// default_forward() / default_backward().
enum : int { kImplDefault = -1, kImplWmma = 0, kImplMma = 1 };

// Attention operands: [b, s, h, d] with d contiguous; lse [b, h, s] fp32.
struct AttnArgs {
  int batch = 0, heads = 0, kv_heads = 0, sq = 0, sk = 0, head_dim = 0;
  int mask = 0;             // usp::MaskMode as int: 0 none, 1 causal, 2 causal_strict
  int dtype = kF16;         // of q, k, v (and dout)
  float scale = 1.0f;       // softmax scale (natural units)
  const void* q = nullptr;  // [b, sq, h, d]
  const void* k = nullptr;  // [b, sk, hkv, d]
  const void* v = nullptr;  // [b, sk, hkv, d]
  std::int64_t q_str[3] = {}, k_str[3] = {}, v_str[3] = {};  // strides of dims 0, 1, 2
  // forward outputs / backward inputs
  void* out = nullptr;  // [b, sq, h, d], dtype out_dtype
  int out_dtype = kF32;
  std::int64_t out_str[3] = {};
  float* lse = nullptr;  // [b, h, sq]
  std::int64_t lse_str[3] = {};
  // backward only
  const void* dout = nullptr;  // like q (dtype)
  std::int64_t dout_str[3] = {};
  float* dq = nullptr;  // fp32 [b, sq, h, d]
  float* dk = nullptr;  // fp32 [b, sk, hkv, d]
  float* dv = nullptr;
  std::int64_t dq_str[3] = {}, dk_str[3] = {}, dv_str[3] = {};
  bool accumulate = false;
  int forward = kImplDefault;   // forward only: which implementation (kImpl*)
  int backward = kImplDefault;  // backward only: which implementation (kImpl*)
  float* delta = nullptr;       // scratch [b, h, sq] fp32, contiguous: rowsum(dout ∘ out)
};

// Returns false when (dtype, head_dim) has no compiled kernel.
bool supported(int dtype, int head_dim);
// The implementation named by USP_CUDA_FWD / USP_CUDA_BWD ("wmma" or "mma"; unset or empty:
// "mma"), each read once per process; any other value throws usp::Error(invalid_argument)
// naming the variable.
int default_forward();
int default_backward();
const char* impl_name(int impl);  // "wmma" / "mma"
// Run a.forward / a.backward (kImplDefault: the default above); kImplMma falls back to kImplWmma
// on a device below sm_80. launch_backward needs a.delta allocated and runs launch_delta first.
void launch_forward(const AttnArgs& a, cudaStream_t stream);
void launch_forward_wmma(const AttnArgs& a, cudaStream_t stream);
void launch_forward_mma(const AttnArgs& a, cudaStream_t stream);
void launch_backward(const AttnArgs& a, cudaStream_t stream);
void launch_delta(const AttnArgs& a, cudaStream_t stream);  // a.delta = rowsum(dout ∘ out)
void launch_backward_wmma(const AttnArgs& a, cudaStream_t stream);
void launch_backward_mma(const AttnArgs& a, cudaStream_t stream);

// Element-wise helpers over views of the same shape.
void launch_fill(const View4& t, float value, cudaStream_t stream);
void launch_copy(const View4& src, const View4& dst, cudaStream_t stream);
void launch_add(const View4& src, const View4& dst, cudaStream_t stream);  // dst fp32
// out fp32 [b, s, h, d], lse fp32 [b, h, s] (given as View4 with shape [b, h, s, 1]).
void launch_merge(const View4& out, const View4& lse, const View4& out_b, const View4& lse_b,
                  cudaStream_t stream);

}  // namespace usp::cuda::detail
