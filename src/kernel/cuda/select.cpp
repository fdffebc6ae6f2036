// Which tensor-core forward and backward run: USP_CUDA_FWD / USP_CUDA_BWD (each read once per
// process) or the kernel's explicit choice; mma falls back to WMMA below sm_80.
#include <cstdlib>
#include <string>

#include "check.hpp"
#include "launch.hpp"

namespace usp::cuda::detail {
namespace {

// kImplMma or kImplWmma from the environment variable `var` ("mma" when unset or empty).
int from_env(const char* var) {
  const char* env = std::getenv(var);
  const std::string v = env != nullptr ? env : "";
  if (v.empty() || v == "mma") return kImplMma;
  if (v == "wmma") return kImplWmma;
  USP_FAIL(invalid_argument, var, " = '", v, "' must be 'wmma' or 'mma' (or unset)");
}

bool has_mma() {
  int dev = 0, major = 0;
  USP_CUDA_CHECK(cudaGetDevice(&dev));
  USP_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
  return major >= 8;
}

}  // namespace

int default_forward() {
  static const int value = from_env("USP_CUDA_FWD");
  return value;
}

int default_backward() {
  static const int value = from_env("USP_CUDA_BWD");
  return value;
}

const char* impl_name(int impl) {
  return impl == kImplMma ? "mma" : "wmma";
}

void launch_forward(const AttnArgs& a, cudaStream_t stream) {
  const int f = a.forward == kImplDefault ? default_forward() : a.forward;
  if (f == kImplMma && has_mma()) return launch_forward_mma(a, stream);
  launch_forward_wmma(a, stream);
}

void launch_backward(const AttnArgs& a, cudaStream_t stream) {
  if (a.batch == 0 || a.heads == 0) return;
  launch_delta(a, stream);
  const int f = a.backward == kImplDefault ? default_backward() : a.backward;
  if (f == kImplMma && has_mma()) return launch_backward_mma(a, stream);
  launch_backward_wmma(a, stream);
}

}  // namespace usp::cuda::detail
