// The CUDA AttentionKernel: validates, describes tensors to the device code and launches it on
// the calling thread's compute stream; every call returns when its work is done.
#include <cstdint>
#include <limits>
#include <memory>

#include "check.hpp"
#include "launch.hpp"
#include "usp/cuda.hpp"

namespace usp::cuda {
namespace {

using detail::AttnArgs;
using detail::View4;

void require_device(const Tensor& t, const char* name) {
  USP_CHECK_ARG(t.device() == Device::cuda, "CUDA kernel: ", name, " must be a CUDA tensor, got ",
                t.describe());
  USP_CHECK_ARG(t.dim() == 0 || t.stride(t.dim() - 1) == 1 || t.size(t.dim() - 1) <= 1,
                "CUDA kernel: ", name, " must have a contiguous last dim, got strides of ",
                t.describe());
}

// q/k/v/dout operands are read 16 bytes at a time.
void require_aligned(const Tensor& t, const char* name) {
  const auto p = reinterpret_cast<std::uintptr_t>(t.data());
  bool ok = p % 16 == 0;
  for (int d = 0; d < 3; ++d) ok = ok && (t.stride(d) * 2) % 16 == 0;
  if (!ok)
    USP_FAIL(unsupported, "CUDA kernel: ", name, " ", t.describe(),
             " must start on a 16-byte boundary with strides of dims 0..2 a multiple of 8 "
             "elements (slices along the sequence of a [b, s, h, d] tensor always are)");
}

void copy3(std::int64_t* dst, const Tensor& t) {
  for (int d = 0; d < 3; ++d) dst[d] = t.stride(d);
}

int to_int(std::int64_t v, const char* what) {
  USP_CHECK_ARG(v >= 0 && v <= std::numeric_limits<int>::max(), "CUDA kernel: ", what, " = ", v,
                " must fit in 31 bits");
  return static_cast<int>(v);
}

View4 view4(const Tensor& t) {
  USP_CHECK_ARG(t.dim() <= 4, "CUDA kernel: at most 4 dims, got ", t.describe());
  View4 v;
  v.data = t.data();
  v.dtype = static_cast<int>(t.dtype());
  for (int i = t.dim() - 1, j = 3; i >= 0; --i, --j) {
    v.shape[j] = t.size(i);
    v.stride[j] = t.stride(i);
  }
  return v;
}

// lse [b, h, s] as the merge kernel reads it: stride[0..2] = b, h, s.
View4 lse_view(const Tensor& t) {
  View4 v;
  v.data = t.data();
  v.dtype = static_cast<int>(t.dtype());
  for (int d = 0; d < 3; ++d) {
    v.shape[d] = t.size(d);
    v.stride[d] = t.stride(d);
  }
  return v;
}

void require_same_shape(const Tensor& a, const Tensor& b, const char* an, const char* bn) {
  USP_CHECK_ARG(a.shape() == b.shape(), "CUDA kernel: ", an, " ", a.describe(), " and ", bn, " ",
                b.describe(), " must have the same shape");
}

class CudaKernel final : public AttentionKernel {
 public:
  CudaKernel(int device, Allocator* scratch, int forward, int backward)
      : device_(device), scratch_(scratch), forward_(forward), backward_(backward) {}
  Device device() const override { return Device::cuda; }
  std::string name() const override {
    std::string n = std::string("cuda-") + detail::impl_name(forward_);
    if (backward_ != forward_) n += std::string("-bwd-") + detail::impl_name(backward_);
    return n;
  }

  void forward(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
               float scale, Tensor& out, Tensor& lse) override {
    check_forward_args(q, k, v, mask, out, lse);
    AttnArgs a = common(q, k, v, mask, scale);
    require_device(out, "out");
    require_device(lse, "lse");
    a.out = out.data();
    a.out_dtype = static_cast<int>(out.dtype());
    copy3(a.out_str, out);
    a.lse = lse.data_as<float>();
    copy3(a.lse_str, lse);
    a.forward = forward_;
    cudaStream_t st = detail::compute_stream();
    detail::launch_forward(a, st);
    USP_CUDA_CHECK(cudaStreamSynchronize(st));
  }

  void backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                const Tensor& lse, const Tensor& dout, const BlockMask& mask, float scale,
                Tensor& dq, Tensor& dk, Tensor& dv, bool accumulate) override {
    check_backward_args(q, k, v, out, lse, dout, mask, dq, dk, dv);
    AttnArgs a = common(q, k, v, mask, scale);
    const Tensor* ts[] = {&out, &lse, &dout, &dq, &dk, &dv};
    const char* names[] = {"out", "lse", "dout", "dq", "dk", "dv"};
    for (int i = 0; i < 6; ++i) require_device(*ts[i], names[i]);
    USP_CHECK_ARG(dout.dtype() == q.dtype(), "CUDA kernel: dout dtype ", dtype_name(dout.dtype()),
                  " must equal q dtype ", dtype_name(q.dtype()));
    require_aligned(dout, "dout");
    for (int i = 3; i < 6; ++i)
      USP_CHECK_ARG(ts[i]->dtype() == DType::f32, "CUDA kernel: ", names[i], " must be fp32, got ",
                    ts[i]->describe());
    a.out = out.data();
    a.out_dtype = static_cast<int>(out.dtype());
    copy3(a.out_str, out);
    a.lse = lse.data_as<float>();
    copy3(a.lse_str, lse);
    a.dout = dout.data();
    copy3(a.dout_str, dout);
    a.dq = dq.data_as<float>();
    a.dk = dk.data_as<float>();
    a.dv = dv.data_as<float>();
    copy3(a.dq_str, dq);
    copy3(a.dk_str, dk);
    copy3(a.dv_str, dv);
    a.accumulate = accumulate;
    a.backward = backward_;
    cudaStream_t st = detail::compute_stream();
    const std::size_t delta_bytes =
        sizeof(float) * static_cast<std::size_t>(a.batch) * a.heads * a.sq;
    if (scratch_ != nullptr) {
      // From the rank's allocator, so its peak counts it; the Buffer is released after the
      // stream has finished with it (cudaFree synchronises the device as well).
      const Buffer delta(*scratch_, delta_bytes);
      // The allocator zeroes fresh memory on the legacy stream, which our non-blocking stream
      // does not wait for: finish that memset before the delta kernel writes the block.
      USP_CUDA_CHECK(cudaStreamSynchronize(cudaStreamLegacy));
      a.delta = static_cast<float*>(delta.data());
      detail::launch_backward(a, st);
      USP_CUDA_CHECK(cudaStreamSynchronize(st));
      return;
    }
    void* delta = nullptr;
    if (delta_bytes > 0) USP_CUDA_CHECK(cudaMallocAsync(&delta, delta_bytes, st));
    a.delta = static_cast<float*>(delta);
    try {
      detail::launch_backward(a, st);
    } catch (...) {
      if (delta != nullptr) (void)cudaFreeAsync(delta, st);
      throw;
    }
    if (delta != nullptr) USP_CUDA_CHECK(cudaFreeAsync(delta, st));
    USP_CUDA_CHECK(cudaStreamSynchronize(st));
  }

  void merge(Tensor& out, Tensor& lse, const Tensor& out_b, const Tensor& lse_b) override {
    require_device(out, "out");
    require_device(lse, "lse");
    require_device(out_b, "out_b");
    require_device(lse_b, "lse_b");
    USP_CHECK_ARG(out.dim() == 4 && lse.dim() == 3,
                  "merge: out must be [b, s, h, d] and lse "
                  "[b, h, s], got ",
                  out.describe(), " and ", lse.describe());
    require_same_shape(out, out_b, "out", "out_b");
    require_same_shape(lse, lse_b, "lse", "lse_b");
    USP_CHECK_ARG(
        lse.size(0) == out.size(0) && lse.size(1) == out.size(2) && lse.size(2) == out.size(1),
        "merge: lse ", lse.describe(), " must be [b, h, s] of out ", out.describe());
    USP_CHECK_ARG(
        out.dtype() == DType::f32 && lse.dtype() == DType::f32 && lse_b.dtype() == DType::f32,
        "merge: out, lse and lse_b must be fp32, got ", out.describe(), ", ", lse.describe(), ", ",
        lse_b.describe());
    run([&](cudaStream_t st) {
      detail::launch_merge(view4(out), lse_view(lse), view4(out_b), lse_view(lse_b), st);
    });
  }

  void fill_zero(Tensor& t) override {
    require_device(t, "t");
    run([&](cudaStream_t st) { detail::launch_fill(view4(t), 0.0f, st); });
  }
  void fill_neg_inf(Tensor& t) override {
    require_device(t, "t");
    run([&](cudaStream_t st) {
      detail::launch_fill(view4(t), -std::numeric_limits<float>::infinity(), st);
    });
  }
  void copy(const Tensor& src, Tensor& dst) override {
    require_device(src, "src");
    require_device(dst, "dst");
    require_same_shape(src, dst, "src", "dst");
    run([&](cudaStream_t st) { detail::launch_copy(view4(src), view4(dst), st); });
  }
  void add(const Tensor& src, Tensor& dst) override {
    require_device(src, "src");
    require_device(dst, "dst");
    require_same_shape(src, dst, "src", "dst");
    USP_CHECK_ARG(dst.dtype() == DType::f32, "add: dst must be fp32, got ", dst.describe());
    run([&](cudaStream_t st) { detail::launch_add(view4(src), view4(dst), st); });
  }

 private:
  template <class F>
  void run(F&& f) {
    detail::set_device(device_);
    cudaStream_t st = detail::compute_stream();
    f(st);
    USP_CUDA_CHECK(cudaStreamSynchronize(st));
  }

  AttnArgs common(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
                  float scale) {
    detail::set_device(device_);
    require_device(q, "q");
    require_device(k, "k");
    require_device(v, "v");
    const DType t = q.dtype();
    if (t != DType::f16 && t != DType::bf16)
      USP_FAIL(unsupported, "CUDA kernel: q dtype ", dtype_name(t),
               " is not supported (fp16 and bf16 are)");
    const int d = to_int(q.size(3), "head size");
    if (!detail::supported(static_cast<int>(t), d))
      USP_FAIL(unsupported, "CUDA kernel: head size d = ", d,
               " is not supported (16, 32, 64 and 128 are)");
    require_aligned(q, "q");
    require_aligned(k, "k");
    require_aligned(v, "v");
    AttnArgs a;
    a.batch = to_int(q.size(0), "batch");
    a.sq = to_int(q.size(1), "query length");
    a.heads = to_int(q.size(2), "heads");
    a.sk = to_int(k.size(1), "key length");
    a.kv_heads = to_int(k.size(2), "kv heads");
    USP_CHECK_ARG(a.batch * static_cast<std::int64_t>(a.heads) <= 65535,
                  "CUDA kernel: batch × heads = ", a.batch * static_cast<std::int64_t>(a.heads),
                  " must be <= 65535");
    a.head_dim = d;
    if (mask.general())
      USP_FAIL(unsupported, "CUDA kernel: the mask ", mask.describe(),
               " is not supported (the CUDA kernels take the local modes none, causal and "
               "causal_strict; documents and windows run on the CPU kernel)");
    a.mask = static_cast<int>(mask.mode());
    a.dtype = static_cast<int>(t);
    a.scale = scale;
    a.q = q.data();
    a.k = k.data();
    a.v = v.data();
    copy3(a.q_str, q);
    copy3(a.k_str, k);
    copy3(a.v_str, v);
    return a;
  }

  int device_;
  Allocator* scratch_;  // null: cudaMallocAsync
  int forward_;         // detail::kImplWmma or kImplMma
  int backward_;        // detail::kImplWmma or kImplMma
};

}  // namespace

namespace {

// "mma" / "wmma" / "" (the environment's choice, env_default()) → detail::kImpl*.
int impl_of(std::string_view name, int (*env_default)(), const char* what, const char* var) {
  if (name.empty()) return env_default();
  if (name == "mma") return detail::kImplMma;
  USP_CHECK_ARG(name == "wmma", "make_kernel: ", what, " = '", name,
                "' must be 'wmma', 'mma' or empty (", var, ")");
  return detail::kImplWmma;
}

}  // namespace

std::unique_ptr<AttentionKernel> make_kernel(int device, Allocator* scratch) {
  return make_kernel(device, scratch, "", "");
}

std::string default_forward() {
  return detail::impl_name(detail::default_forward());
}

std::string default_backward() {
  return detail::impl_name(detail::default_backward());
}

std::unique_ptr<AttentionKernel> make_kernel(int device, Allocator* scratch,
                                             std::string_view forward, std::string_view backward) {
  const int fwd = impl_of(forward, detail::default_forward, "forward", "USP_CUDA_FWD");
  const int bwd = impl_of(backward, detail::default_backward, "backward", "USP_CUDA_BWD");
  const int n = device_count();
  if (n == 0)
    throw Error(ErrorKind::unsupported, "usp::cuda::make_kernel: " + unavailable_reason());
  USP_CHECK_ARG(device >= 0 && device < n, "make_kernel: device = ", device, " must be in [0, ", n,
                ")");
  USP_CHECK_ARG(scratch == nullptr || scratch->device() == Device::cuda,
                "make_kernel: scratch allocator is on device ",
                device_name(scratch != nullptr ? scratch->device() : Device::cuda),
                ", the CUDA kernel needs a CUDA allocator");
  return std::make_unique<CudaKernel>(device, scratch, fwd, bwd);
}

}  // namespace usp::cuda
