// The usp::cuda entry points of a build without CUDA: queries answer "no", everything else throws
// Error(unsupported) naming what is missing.
#ifndef USP_HAVE_CUDA

#include "usp/cuda.hpp"
#include "usp/error.hpp"

#ifndef USP_NVCC_FOUND
#define USP_NVCC_FOUND 0
#endif

namespace usp::cuda {
namespace {
[[noreturn]] void unsupported(const char* what) {
  throw Error(ErrorKind::unsupported, std::string(what) + ": " + unavailable_reason());
}
}  // namespace

bool compiled() {
  return false;
}
int device_count() {
  return 0;
}
std::string unavailable_reason() {
  return USP_NVCC_FOUND
             ? "needs a build with CUDA (nvcc found: yes, but USP_WITH_CUDA=OFF); reconfigure "
               "with -DUSP_WITH_CUDA=ON"
             : "needs a build with CUDA (nvcc found: no); install the CUDA toolkit and "
               "reconfigure with -DUSP_WITH_CUDA=ON";
}
int current_device() {
  return 0;
}
std::string device_description(int) {
  unsupported("usp::cuda::device_description");
}
std::unique_ptr<Allocator> make_allocator(int) {
  unsupported("usp::cuda::make_allocator");
}
std::unique_ptr<AttentionKernel> make_kernel(int, Allocator*) {
  unsupported("usp::cuda::make_kernel");
}
std::unique_ptr<AttentionKernel> make_kernel(int, Allocator*, std::string_view, std::string_view) {
  unsupported("usp::cuda::make_kernel");
}
std::string default_forward() {
  return "mma";  // what a CUDA build picks when USP_CUDA_FWD is unset
}
std::string default_backward() {
  return "mma";  // what a CUDA build picks when USP_CUDA_BWD is unset
}
Tensor to_device(const Tensor&, Allocator&) {
  unsupported("usp::cuda::to_device");
}
Tensor to_host(const Tensor&, Allocator&) {
  unsupported("usp::cuda::to_host");
}
void synchronize() {}
void run_local(int, const std::function<void(Communicator&)>&, std::chrono::milliseconds, int) {
  unsupported("usp::cuda::run_local");
}
bool nccl_compiled() {
  return false;
}
std::unique_ptr<Communicator> nccl_world() {
  unsupported("usp::cuda::nccl_world");
}

}  // namespace usp::cuda

#endif  // USP_HAVE_CUDA
