// Backend selection, the CUDA entry points' behaviour on a machine without GPU (or without a CUDA
// build), and the device allocator's accounting when a GPU is present.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include "support/errors.hpp"
#include "usp/backend.hpp"
#include "usp/cuda.hpp"
#include "usp/error.hpp"

namespace {

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

TEST(CudaBackend, NamesAndAliases) {
  const auto names = usp::backend_names();
  for (const char* n : {"local", "cpu", "mpi", "cuda-local", "nccl"})
    EXPECT_NE(std::find(names.begin(), names.end(), n), names.end()) << n;
  EXPECT_EQ(usp::canonical_backend("cpu"), "local");
  EXPECT_EQ(usp::canonical_backend("cuda-local"), "cuda-local");
  EXPECT_EQ(usp::backend_device("cuda-local"), usp::Device::cuda);
  EXPECT_EQ(usp::backend_device("nccl"), usp::Device::cuda);
  EXPECT_EQ(usp::backend_device("local"), usp::Device::host);
}

TEST(CudaBackend, UnknownNameListsKnownOnes) {
  auto e = usp::test::expect_error([] { (void)usp::make_kernel("gpu"); });
  EXPECT_EQ(e.kind(), usp::ErrorKind::invalid_argument);
  EXPECT_TRUE(has(e.what(), "'gpu'")) << e.what();
  EXPECT_TRUE(has(e.what(), "cuda-local")) << e.what();
  EXPECT_THROW((void)usp::backend_available("cuda"), usp::Error);
}

TEST(CudaBackend, LocalIsAlwaysAvailable) {
  EXPECT_TRUE(usp::backend_available("local"));
  EXPECT_TRUE(usp::backend_available("cpu"));
  EXPECT_EQ(usp::backend_unavailable_reason("local"), "");
  auto k = usp::make_kernel("cpu", 1);
  ASSERT_NE(k, nullptr);
  EXPECT_EQ(k->device(), usp::Device::host);
  auto a = usp::make_allocator("local");
  EXPECT_EQ(a->device(), usp::Device::host);
  auto e = usp::test::expect_error([] { (void)usp::make_kernel("local", -1); });
  EXPECT_EQ(e.kind(), usp::ErrorKind::invalid_argument);
  EXPECT_TRUE(has(e.what(), "threads = -1")) << e.what();
}

TEST(CudaBackend, GpuBackendsSayWhatIsMissing) {
  if (usp::cuda::device_count() > 0) {
    EXPECT_TRUE(usp::backend_available("cuda-local"));
    auto k = usp::make_kernel("cuda-local");
    EXPECT_EQ(k->device(), usp::Device::cuda);
    GTEST_SKIP() << "a GPU is present: the no-GPU messages are not reachable";
  }
  EXPECT_FALSE(usp::backend_available("cuda-local"));
  EXPECT_FALSE(usp::backend_available("nccl"));
  const std::string why = usp::backend_unavailable_reason("cuda-local");
  EXPECT_TRUE(has(why, "backend 'cuda-local'")) << why;
  if (usp::cuda::compiled()) {
    EXPECT_TRUE(has(why, "needs a GPU")) << why;
  } else {
    EXPECT_TRUE(has(why, "needs a build with CUDA (nvcc found: ")) << why;
    EXPECT_TRUE(has(why, "USP_WITH_CUDA=ON")) << why;
  }
  for (const char* b : {"cuda-local", "nccl"}) {
    auto e = usp::test::expect_error([&] { (void)usp::make_kernel(b); });
    EXPECT_EQ(e.kind(), usp::ErrorKind::unsupported) << b;
    EXPECT_TRUE(has(e.what(), std::string("backend '") + b + "'")) << e.what();
    auto e2 = usp::test::expect_error([&] { (void)usp::make_allocator(b); });
    EXPECT_EQ(e2.kind(), usp::ErrorKind::unsupported) << b;
  }
  auto e3 =
      usp::test::expect_error([] { usp::run_ranks("cuda-local", 2, [](usp::Communicator&) {}); });
  EXPECT_EQ(e3.kind(), usp::ErrorKind::unsupported);
  EXPECT_EQ(usp::cuda::unavailable_reason().empty(), false);
}

TEST(CudaBackend, CudaEntryPointsThrowWithoutGpu) {
  if (usp::cuda::device_count() > 0) GTEST_SKIP() << "a GPU is present";
  auto e = usp::test::expect_error([] { (void)usp::cuda::make_allocator(0); });
  EXPECT_EQ(e.kind(), usp::ErrorKind::unsupported);
  auto e2 = usp::test::expect_error([] { (void)usp::cuda::make_kernel(0); });
  EXPECT_EQ(e2.kind(), usp::ErrorKind::unsupported);
  auto e3 = usp::test::expect_error([] { usp::cuda::run_local(2, [](usp::Communicator&) {}); });
  EXPECT_EQ(e3.kind(), usp::ErrorKind::unsupported);
  EXPECT_TRUE(has(e3.what(), "cuda")) << e3.what();
  auto e4 = usp::test::expect_error([] { (void)usp::cuda::nccl_world(); });
  EXPECT_EQ(e4.kind(), usp::ErrorKind::unsupported);
  EXPECT_TRUE(has(e4.what(), "nccl") || has(e4.what(), "CUDA")) << e4.what();
  EXPECT_EQ(usp::cuda::device_count(), 0);
}

TEST(CudaBackend, KernelImplementationNamesAreChecked) {
  // The default (USP_CUDA_FWD / USP_CUDA_BWD unset in the test environment) is mma for both.
  EXPECT_EQ(usp::cuda::default_forward(), "mma");
  EXPECT_EQ(usp::cuda::default_backward(), "mma");
  if (!usp::cuda::compiled()) GTEST_SKIP() << "built without CUDA: make_kernel only says so";
  // The names are checked before any GPU is looked for.
  auto e = usp::test::expect_error([] { (void)usp::cuda::make_kernel(0, nullptr, "mma", "fast"); });
  EXPECT_EQ(e.kind(), usp::ErrorKind::invalid_argument);
  EXPECT_TRUE(has(e.what(), "backward = 'fast'")) << e.what();
  EXPECT_TRUE(has(e.what(), "USP_CUDA_BWD")) << e.what();
  auto e2 = usp::test::expect_error([] { (void)usp::cuda::make_kernel(0, nullptr, "tensor", ""); });
  EXPECT_EQ(e2.kind(), usp::ErrorKind::invalid_argument);
  EXPECT_TRUE(has(e2.what(), "forward = 'tensor'")) << e2.what();
  EXPECT_TRUE(has(e2.what(), "USP_CUDA_FWD")) << e2.what();
  if (usp::cuda::device_count() == 0) return;
  EXPECT_EQ(usp::cuda::make_kernel(0, nullptr, "mma", "wmma")->name(), "cuda-mma-bwd-wmma");
  EXPECT_EQ(usp::cuda::make_kernel(0, nullptr, "wmma", "wmma")->name(), "cuda-wmma");
  EXPECT_EQ(usp::cuda::make_kernel(0, nullptr, "mma", "mma")->name(), "cuda-mma");
}

TEST(CudaBackend, ProcessPerRankBackendsAreNotThreadLaunched) {
  for (const char* b : {"mpi", "nccl"}) {
    auto e = usp::test::expect_error([&] { usp::run_ranks(b, 2, [](usp::Communicator&) {}); });
    EXPECT_EQ(e.kind(), usp::ErrorKind::invalid_argument) << b;
    EXPECT_TRUE(has(e.what(), "mpirun")) << e.what();
  }
}

TEST(CudaAllocator, AccountsCurrentAndPeakPerRank) {
  if (usp::cuda::device_count() == 0) GTEST_SKIP() << "skipped: no GPU";
  auto a = usp::cuda::make_allocator(0);
  auto b = usp::cuda::make_allocator(0);
  EXPECT_EQ(a->device(), usp::Device::cuda);
  void* p = a->allocate(1 << 20);
  void* q = a->allocate(3 << 20);
  EXPECT_EQ(a->stats().current, std::size_t{4} << 20);
  a->deallocate(p, 1 << 20);
  EXPECT_EQ(a->stats().current, std::size_t{3} << 20);
  EXPECT_EQ(a->stats().peak, std::size_t{4} << 20);
  EXPECT_EQ(b->stats().current, 0u);  // another rank's allocator is untouched
  a->deallocate(q, 3 << 20);
  EXPECT_EQ(a->stats().current, 0u);
}

}  // namespace
