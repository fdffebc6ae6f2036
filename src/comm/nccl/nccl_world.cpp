// Starting the NCCL communicator: every rank tells the others its GPU (and rank 0 the unique id)
// through MPI, the GPUs are checked to be distinct, then the non-blocking NCCL communicator is
// initialised and polled against the timeout. nccl_world() and split() start one this way.
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "comm/nccl/gpu_assignment.hpp"
#include "comm/nccl/nccl_comm.hpp"
#include "usp/comm_mpi.hpp"
#include "usp/cuda.hpp"
#include "usp/error.hpp"

namespace usp::cuda {
namespace detail {
namespace {

// What each rank tells the others before NCCL starts (plain bytes, sent through MPI).
struct Hello {
  ncclUniqueId id;  // meaningful on rank 0
  int id_ok = 0;    // rank 0 could create the id
  int world_rank = 0;
  int device = 0;
  int device_count = 0;
  char host[128] = {};
  char bus_id[32] = {};
  char error[256] = {};  // rank 0's ncclGetUniqueId failure
};

}  // namespace

std::unique_ptr<Communicator> connect(std::unique_ptr<Communicator> host, int device,
                                      int world_rank, const std::string& name,
                                      std::chrono::milliseconds timeout, bool check_gpus) {
  host->set_name(name);
  host->set_timeout(timeout);
  const int n = host->size(), r = host->rank();
  detail::set_device(device);

  Hello mine;
  std::memset(&mine.id, 0, sizeof mine.id);
  mine.world_rank = world_rank;
  mine.device = device;
  mine.device_count = device_count();
  (void)gethostname(mine.host, sizeof mine.host - 1);
  if (cudaDeviceGetPCIBusId(mine.bus_id, sizeof mine.bus_id - 1, device) != cudaSuccess) {
    (void)cudaGetLastError();
    std::snprintf(mine.bus_id, sizeof mine.bus_id, "device %d", device);
  }
  if (r == 0) {
    const ncclResult_t rc = ncclGetUniqueId(&mine.id);
    mine.id_ok = rc == ncclSuccess ? 1 : 0;
    if (rc != ncclSuccess)
      std::snprintf(mine.error, sizeof mine.error, "%s", nccl_text(rc).c_str());
  }
  std::vector<Hello> all(static_cast<std::size_t>(n));
  host->allgather(&mine, all.data(), sizeof(Hello));  // timed: a missing rank is reported

  if (check_gpus) {
    std::vector<usp::detail::GpuSlot> slots;
    for (const Hello& h : all) slots.push_back({h.host, h.bus_id, h.device, h.device_count});
    const std::string shared = usp::detail::shared_gpu_message(slots);
    if (!shared.empty()) throw Error(ErrorKind::invalid_argument, shared);
  }
  if (!all[0].id_ok)
    USP_FAIL(comm, "rank ", world_rank, ": NCCL communicator '", name,
             "' cannot start: ncclGetUniqueId failed on its rank 0 (world rank ", all[0].world_rank,
             "): ", all[0].error);
  std::vector<int> world_of;
  for (const Hello& h : all) world_of.push_back(h.world_rank);

  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclComm_t comm = nullptr;
  const ncclResult_t rc = ncclCommInitRankConfig(&comm, n, all[0].id, r, &config);
  const std::string what = usp::detail::concat("NCCL initialisation of comm '", name, "' (rank ", r,
                                               " of ", n, ", GPU ", device, ")");
  auto give_up = [&](ErrorKind kind, const std::string& why) {
    if (comm != nullptr) (void)ncclCommAbort(comm);
    throw Error(kind, usp::detail::concat("rank ", world_rank, ": ", why));
  };
  if (rc != ncclSuccess && rc != ncclInProgress)
    give_up(ErrorKind::comm, "ncclCommInitRankConfig failed during " + what + ": " + nccl_text(rc));
  const Clock::time_point deadline = Clock::now() + timeout;
  Backoff backoff;
  for (;;) {
    ncclResult_t state = ncclInProgress;
    const ncclResult_t q = ncclCommGetAsyncError(comm, &state);
    if (q != ncclSuccess)
      give_up(ErrorKind::comm, "ncclCommGetAsyncError failed during " + what + ": " + nccl_text(q));
    if (state == ncclSuccess) break;
    if (state != ncclInProgress)
      give_up(ErrorKind::comm, "NCCL reported an error during " + what + ": " + nccl_text(state));
    if (Clock::now() >= deadline)
      give_up(ErrorKind::timeout, "timed out after " + usp::detail::format_duration(timeout) +
                                      " waiting for " + what + " (every rank must create it)");
    backoff.pause();
  }
  std::shared_ptr<Channel> ch;
  try {
    ch = std::make_shared<Channel>(comm, device, r, n, world_rank, std::move(world_of));
  } catch (...) {
    (void)ncclCommAbort(comm);
    throw;
  }
  return make_nccl_communicator(std::move(host), std::move(ch), name, timeout);
}

}  // namespace detail

bool nccl_compiled() {
  return true;
}

std::unique_ptr<Communicator> nccl_world() {
  const int gpus = device_count();
  if (gpus == 0) throw Error(ErrorKind::unsupported, "backend 'nccl' " + unavailable_reason());
  std::unique_ptr<Communicator> host = make_mpi_communicator();  // throws when MPI is not up
  const int rank = host->rank();
  return detail::connect(std::move(host), rank % gpus, rank, "world", std::chrono::seconds(300),
                         true);
}

}  // namespace usp::cuda
