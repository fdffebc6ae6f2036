// Which tensor-core forward runs: USP_CUDA_FWD (read once) or the kernel's explicit choice.
#include <cstdlib>
#include <string>

#include "check.hpp"
#include "launch.hpp"

namespace usp::cuda::detail {

int default_forward() {
  static const int value = [] {
    const char* env = std::getenv("USP_CUDA_FWD");
    const std::string v = env != nullptr ? env : "";
    if (v.empty() || v == "mma") return static_cast<int>(kFwdMma);
    if (v == "wmma") return static_cast<int>(kFwdWmma);
    USP_FAIL(invalid_argument, "USP_CUDA_FWD = '", v, "' must be 'wmma' or 'mma' (or unset)");
  }();
  return value;
}

const char* forward_name(int forward) {
  return forward == kFwdMma ? "mma" : "wmma";
}

void launch_forward(const AttnArgs& a, cudaStream_t stream) {
  const int f = a.forward == kFwdDefault ? default_forward() : a.forward;
  if (f == kFwdMma) {
    int dev = 0, major = 0;
    USP_CUDA_CHECK(cudaGetDevice(&dev));
    USP_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev));
    if (major >= 8) return launch_forward_mma(a, stream);
  }
  launch_forward_wmma(a, stream);
}

}  // namespace usp::cuda::detail
