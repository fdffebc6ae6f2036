// Backend selection for "nccl" in builds and on machines that cannot run it (CI: no GPU, no NCCL):
// make_world says what is missing; thread backends are sent to run_ranks.
#include <gtest/gtest.h>

#include <string>

#include "support/errors.hpp"
#include "usp/backend.hpp"
#include "usp/cuda.hpp"
#include "usp/error.hpp"

namespace {

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(NcclBackend, MakeWorldWithoutGpuOrNcclSaysWhatIsMissing) {
  if (usp::backend_available("nccl")) GTEST_SKIP() << "this build and machine can run 'nccl'";
  const usp::Error e = usp::test::expect_error([] { (void)usp::make_world("nccl"); });
  EXPECT_EQ(e.kind(), usp::ErrorKind::unsupported) << e.what();
  EXPECT_TRUE(has(e.what(), "backend 'nccl'")) << e.what();
  EXPECT_EQ(std::string(e.what()), usp::backend_unavailable_reason("nccl"));
  if (usp::cuda::device_count() > 0) {
    EXPECT_FALSE(usp::cuda::nccl_compiled());
    EXPECT_TRUE(has(e.what(), "NCCL")) << e.what();
  } else {
    EXPECT_TRUE(has(e.what(), "GPU") || has(e.what(), "CUDA")) << e.what();
  }
}

TEST(NcclBackend, NcclWorldWithoutGpuOrNcclThrowsUnsupported) {
  if (usp::backend_available("nccl")) GTEST_SKIP() << "this build and machine can run 'nccl'";
  const usp::Error e = usp::test::expect_error([] { (void)usp::cuda::nccl_world(); });
  EXPECT_EQ(e.kind(), usp::ErrorKind::unsupported) << e.what();
  EXPECT_TRUE(has(e.what(), "nccl") || has(e.what(), "CUDA")) << e.what();
}

TEST(NcclBackend, MakeWorldRefusesThreadBackendsAndUnknownNames) {
  for (const char* b : {"local", "cpu", "cuda-local"}) {
    const usp::Error e = usp::test::expect_error([&] { (void)usp::make_world(b); });
    EXPECT_EQ(e.kind(), usp::ErrorKind::invalid_argument) << b;
    EXPECT_TRUE(has(e.what(), "run_ranks") && has(e.what(), b)) << e.what();
  }
  const usp::Error e = usp::test::expect_error([] { (void)usp::make_world("ncl"); });
  EXPECT_EQ(e.kind(), usp::ErrorKind::invalid_argument);
  EXPECT_TRUE(has(e.what(), "'ncl' is unknown") && has(e.what(), "nccl")) << e.what();
}

TEST(NcclBackend, MakeWorldMpiNeedsAnMpiProgram) {
  // Not started by mpirun with an MpiSession (or built without MPI): a clear error, never a hang.
  const usp::Error e = usp::test::expect_error([] { (void)usp::make_world("mpi"); });
  EXPECT_TRUE(e.kind() == usp::ErrorKind::comm || e.kind() == usp::ErrorKind::unsupported)
      << e.what();
  EXPECT_TRUE(has(e.what(), "MPI")) << e.what();
}

}  // namespace
