// Device allocator: cudaMalloc/cudaFree on one GPU; accounting is the base class's, so current and
// peak are exactly the bytes this rank holds (no caching). Fresh memory is zeroed.
#include <memory>

#include "check.hpp"
#include "usp/cuda.hpp"

namespace usp::cuda {
namespace {

class CudaAllocator final : public Allocator {
 public:
  explicit CudaAllocator(int device) : device_(device) {}
  Device device() const override { return Device::cuda; }

 protected:
  void* do_allocate(std::size_t bytes) override {
    if (bytes == 0) return nullptr;
    detail::set_device(device_);
    void* p = nullptr;
    cudaError_t e = cudaMalloc(&p, bytes);
    if (e != cudaSuccess) {
      (void)cudaGetLastError();
      std::size_t free_b = 0, total_b = 0;
      (void)cudaMemGetInfo(&free_b, &total_b);
      USP_FAIL(internal, "CUDA allocator: cudaMalloc of ", bytes, " bytes on device ", device_,
               " failed: ", cudaGetErrorString(e), " (free ", free_b >> 20, " MiB of ",
               total_b >> 20, " MiB; this allocator holds ", stats().current >> 20, " MiB)");
    }
    // Zeroed, so Tensor::zeros holds on the device too (cheap next to the kernels). The zeroing
    // must be finished before this returns: the ranks' compute streams are non-blocking and would
    // not wait for a memset queued on a default stream.
    e = cudaMemsetAsync(p, 0, bytes, cudaStreamPerThread);
    if (e == cudaSuccess) e = cudaStreamSynchronize(cudaStreamPerThread);
    if (e != cudaSuccess) {
      (void)cudaFree(p);
      USP_CUDA_CHECK(e);
    }
    return p;  // cudaMalloc returns 256-byte aligned memory
  }
  void do_deallocate(void* p, std::size_t) noexcept override {
    if (p == nullptr) return;
    int cur = -1;
    if (cudaGetDevice(&cur) == cudaSuccess && cur != device_) (void)cudaSetDevice(device_);
    // Work still queued on the device may use p: cudaFree synchronises the device first.
    (void)cudaFree(p);
  }

 private:
  int device_;
};

}  // namespace

std::unique_ptr<Allocator> make_allocator(int device) {
  const int n = device_count();
  if (n == 0)
    throw Error(ErrorKind::unsupported, "usp::cuda::make_allocator: " + unavailable_reason());
  USP_CHECK_ARG(device >= 0 && device < n, "make_allocator: device = ", device, " must be in [0, ",
                n, ")");
  return std::make_unique<CudaAllocator>(device);
}

}  // namespace usp::cuda
