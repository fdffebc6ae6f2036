// nccl_compiled()/nccl_world() of a CUDA build without NCCL (src/cuda/nccl/ has the real ones).
#ifndef USP_HAVE_NCCL

#include "usp/cuda.hpp"
#include "usp/error.hpp"

namespace usp::cuda {

bool nccl_compiled() {
  return false;
}

std::unique_ptr<Communicator> nccl_world() {
  USP_FAIL(unsupported,
           "backend 'nccl' needs a build with NCCL and MPI (nccl.h, libnccl and MPI found at "
           "configure time, -DUSP_WITH_NCCL=ON); this build has CUDA but no NCCL");
}

}  // namespace usp::cuda

#endif  // USP_HAVE_NCCL
