// The communicator conformance suite (tests/conformance/comm_conformance.hpp) on the "nccl"
// backend: one process per GPU under mpirun, so a machine with one GPU runs world size 1 only and
// the tests that need several ranks skip there. As on MPI, every process runs every test; a test of
// fewer ranks runs on the first ranks of the job (a split of the NCCL world: every test gets a
// fresh NCCL communicator, so one aborted by a timeout is not reused) while the others wait at its
// end.
//
// NCCL lacks some of the suite's guarantees (src/comm/nccl/nccl_comm.cpp, top comment); the
// tests needing them skip, naming the missing one:
//   - matches_tags: a peer's transfers are matched in posting order, tags are only checked;
//   - requests_complete_alone: the first wait launches every pending isend/irecv in one group
//     (Channel::launch), and the wait lasts until the whole group is matched;
//   - detects_size_mismatch: NCCL transfers carry no size; a mismatch hangs until the timeout;
//   - unmatched_self_recv_times_out: NCCL refuses a receive from oneself without a send in the
//     same group ("Trying to recv to self without a matching send", ncclInvalidUsage), which the
//     launch reports as Error(comm) rather than waiting for the timeout;
// and its timeout messages may end in " (still launching it: ...)" (Channel::settle).
#include "cuda/nccl_conformance.hpp"

#include <chrono>
#include <cstdio>
#include <exception>
#include <functional>
#include <memory>
#include <string>

#include "conformance/comm_conformance.hpp"
#include "conformance/device_comm_buffer.hpp"
#include "mpi/mpi_gtest_main.hpp"
#include "usp/backend.hpp"
#include "usp/cuda.hpp"

namespace usp::test {
namespace {

// The NCCL world and its GPU while run_nccl_conformance runs.
Communicator* g_world = nullptr;
int g_device = 0;

CommWorld nccl_world() {
  CommWorld w;
  w.name = "nccl";
  w.run = [](int ranks, std::chrono::milliseconds timeout,
             const std::function<void(Communicator&)>& fn) {
    return run_on_first_ranks(*g_world, ranks, timeout, fn);
  };
  w.max_ranks = [] { return g_world->size(); };
  w.buffer = [](std::size_t bytes) -> std::unique_ptr<CommBuffer> {
    return std::make_unique<DeviceCommBuffer>(bytes, g_device);
  };
  w.unavailable = []() -> std::string {
    if (usp::cuda::device_count() == 0) return "no GPU (" + usp::cuda::unavailable_reason() + ")";
    if (!usp::cuda::nccl_compiled())
      return "built without NCCL (" + usp::backend_unavailable_reason("nccl") + ")";
    if (g_world == nullptr) return "no NCCL world: run `mpirun -np N usp_nccl_tests --conformance`";
    return "";
  };
  w.matches_tags = false;
  w.requests_complete_alone = false;
  w.detects_size_mismatch = false;
  w.unmatched_self_recv_times_out = false;
  w.timeout_message_adds_detail = true;
  return w;
}

INSTANTIATE_TEST_SUITE_P(Nccl, CommConformance, ::testing::Values(nccl_world()),
                         [](const auto& info) { return info.param.name; });

}  // namespace

int run_nccl_conformance(MpiSession& mpi, int argc, char** argv) {
  std::unique_ptr<Communicator> world = usp::cuda::nccl_world();
  g_world = world.get();
  g_device = usp::cuda::current_device();
  if (mpi.rank() == 0)
    std::printf("nccl world: %d rank(s), rank 0 on %s\n", world->size(),
                usp::cuda::device_description(g_device).c_str());
  const int rc = usp::mpi_test::run_all_in(mpi, argc, argv, 1, std::chrono::seconds(60));
  g_world = nullptr;
  world.reset();
  return rc;
}

}  // namespace usp::test
