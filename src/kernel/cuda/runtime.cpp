// CUDA runtime glue: device queries, per-thread compute streams, host↔device copies.
#include <cstring>
#include <string>

#include "check.hpp"
#include "launch.hpp"
#include "usp/cuda.hpp"

namespace usp::cuda {
namespace detail {
namespace {

struct ThreadStream {
  cudaStream_t stream = nullptr;
  int device = -1;
  ~ThreadStream() {
    if (stream != nullptr) {
      int cur = 0;
      if (cudaGetDevice(&cur) == cudaSuccess && cur != device) (void)cudaSetDevice(device);
      (void)cudaStreamSynchronize(stream);
      (void)cudaStreamDestroy(stream);
    }
  }
};
thread_local ThreadStream t_stream;

}  // namespace

void set_device(int device) {
  int cur = -1;
  USP_CUDA_CHECK(cudaGetDevice(&cur));
  if (cur != device) USP_CUDA_CHECK(cudaSetDevice(device));
}

}  // namespace detail

int current_device() {
  int cur = 0;
  if (cudaGetDevice(&cur) != cudaSuccess) {
    (void)cudaGetLastError();
    return 0;
  }
  return cur;
}

namespace detail {

cudaStream_t compute_stream() {
  int cur = 0;
  USP_CUDA_CHECK(cudaGetDevice(&cur));
  if (t_stream.stream != nullptr && t_stream.device != cur) {
    // The thread moved to another device: the old stream belongs to the old one.
    USP_CUDA_CHECK(cudaSetDevice(t_stream.device));
    (void)cudaStreamSynchronize(t_stream.stream);
    (void)cudaStreamDestroy(t_stream.stream);
    t_stream.stream = nullptr;
    USP_CUDA_CHECK(cudaSetDevice(cur));
  }
  if (t_stream.stream == nullptr) {
    USP_CUDA_CHECK(cudaStreamCreateWithFlags(&t_stream.stream, cudaStreamNonBlocking));
    t_stream.device = cur;
  }
  return t_stream.stream;
}

}  // namespace detail

bool compiled() {
  return true;
}

int device_count() {
  int n = 0;
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    (void)cudaGetLastError();  // clear the sticky-free error state
    return 0;
  }
  return n;
}

std::string unavailable_reason() {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError();
    return std::string("needs a GPU: cudaGetDeviceCount failed: ") + cudaGetErrorString(e) + " (" +
           cudaGetErrorName(e) + ")";
  }
  if (n == 0) return "needs a GPU: cudaGetDeviceCount found 0 devices";
  return "";
}

std::string device_description(int device) {
  cudaDeviceProp p{};
  USP_CUDA_CHECK(cudaGetDeviceProperties(&p, device));
  char buf[384];
  std::snprintf(buf, sizeof buf, "%s (sm_%d%d, %.1f GiB, %d SMs)", p.name, p.major, p.minor,
                static_cast<double>(p.totalGlobalMem) / (1024.0 * 1024.0 * 1024.0),
                p.multiProcessorCount);
  return buf;
}

void synchronize() {
  if (device_count() == 0) return;
  USP_CUDA_CHECK(cudaStreamSynchronize(detail::compute_stream()));
}

Tensor to_device(const Tensor& host, Allocator& device_alloc) {
  USP_CHECK_ARG(host.device() == Device::host, "to_device: src must be a host tensor, got ",
                host.describe());
  USP_CHECK_ARG(device_alloc.device() == Device::cuda,
                "to_device: allocator must be a CUDA allocator, got one on ",
                device_name(device_alloc.device()));
  Tensor src = host.is_contiguous() ? host : to_dtype(host, host.dtype());
  Tensor dst = Tensor::empty(host.shape(), host.dtype(), device_alloc);
  if (dst.nbytes() == 0) return dst;
  // On the compute stream, finished before returning: a plain cudaMemcpy from pageable memory may
  // return before the data reaches the device, and the non-blocking compute stream would not wait
  // for it (a kernel queued next could read the buffer before it is filled).
  cudaStream_t st = detail::compute_stream();
  USP_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src.data(), dst.nbytes(), cudaMemcpyHostToDevice, st));
  USP_CUDA_CHECK(cudaStreamSynchronize(st));
  return dst;
}

Tensor to_host(const Tensor& device, Allocator& host_alloc) {
  USP_CHECK_ARG(device.device() == Device::cuda, "to_host: src must be a CUDA tensor, got ",
                device.describe());
  USP_CHECK_ARG(host_alloc.device() == Device::host, "to_host: allocator must be a host allocator");
  Tensor dst = Tensor::empty(device.shape(), device.dtype(), host_alloc);
  if (dst.nbytes() == 0) return dst;
  cudaStream_t st = detail::compute_stream();
  if (device.is_contiguous()) {
    USP_CUDA_CHECK(cudaStreamSynchronize(st));
    USP_CUDA_CHECK(cudaMemcpy(dst.data(), device.data(), dst.nbytes(), cudaMemcpyDeviceToHost));
    return dst;
  }
  // Strided view: compact on the device first.
  void* tmp = nullptr;
  USP_CUDA_CHECK(cudaMallocAsync(&tmp, dst.nbytes(), st));
  detail::View4 s, d;
  const int nd = device.dim();
  USP_CHECK_ARG(nd <= 4, "to_host: at most 4 dims, got ", device.describe());
  s.data = device.data();
  d.data = tmp;
  s.dtype = d.dtype = static_cast<int>(device.dtype());
  std::int64_t run = 1;
  for (int i = nd - 1, j = 3; i >= 0; --i, --j) {
    s.shape[j] = d.shape[j] = device.size(i);
    s.stride[j] = device.stride(i);
    d.stride[j] = run;
    run *= device.size(i);
  }
  detail::launch_copy(s, d, st);
  USP_CUDA_CHECK(cudaStreamSynchronize(st));
  cudaError_t e = cudaMemcpy(dst.data(), tmp, dst.nbytes(), cudaMemcpyDeviceToHost);
  (void)cudaFreeAsync(tmp, st);
  USP_CUDA_CHECK(e);
  return dst;
}

}  // namespace usp::cuda
