// NCCL error text for the NCCL communicator's messages.
#include "comm/nccl/nccl_channel.hpp"

namespace usp::cuda::detail {

std::string nccl_text(ncclResult_t r) {
  std::string s = ncclGetErrorString(r);
  const char* last = ncclGetLastError(nullptr);
  if (last != nullptr && *last != '\0') s += std::string(" (") + last + ")";
  return s;
}

}  // namespace usp::cuda::detail
