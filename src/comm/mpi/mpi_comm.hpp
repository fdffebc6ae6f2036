// The MPI communicator: non-blocking MPI operations completed by a polled wait that honours the
// communicator's timeout, MPI errors turned into usp::Error.
#pragma once

#include "comm/mpi/mpi_include.hpp"

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "comm/base/wait_info.hpp"
#include "usp/comm.hpp"

namespace usp::detail {

// Process-wide MPI facts set by MpiSession (or on first use when MPI was initialized by others).
struct MpiProcess {
  bool serialize = true;  // the library is not MPI_THREAD_MULTIPLE: one MPI call at a time
  std::mutex m;
};
MpiProcess& mpi_process();
// Holds the process-wide MPI lock when calls must be serialized.
std::unique_lock<std::mutex> mpi_lock();

// Throws Error(comm) naming the call and the operation when rc is not MPI_SUCCESS.
void mpi_check(int rc, const char* call, const OpInfo& info);

class MpiCommunicator final : public Communicator {
 public:
  // Takes ownership of `comm` (freed in the destructor).
  MpiCommunicator(MPI_Comm comm, std::string name, std::chrono::milliseconds timeout);
  ~MpiCommunicator() override;
  MpiCommunicator(const MpiCommunicator&) = delete;
  MpiCommunicator& operator=(const MpiCommunicator&) = delete;

  int rank() const override { return rank_; }
  int size() const override { return size_; }
  std::string backend() const override { return "mpi"; }

 protected:
  Request do_isend(const void* buf, std::size_t bytes, int peer, int tag) override;
  Request do_irecv(void* buf, std::size_t bytes, int peer, int tag) override;
  void do_alltoall(const void* send, void* recv, std::size_t bytes_per_rank) override;
  void do_allgather(const void* send, void* recv, std::size_t bytes) override;
  void do_barrier() override;
  std::unique_ptr<Communicator> do_split(int color, int key) override;
  TagLimit tag_limit() const override;

 private:
  OpInfo info(const char* op, int peer, int tag) const;

  MPI_Comm comm_;
  int rank_ = 0;
  int size_ = 1;
  int world_rank_ = 0;
  std::vector<int> world_of_;  // group rank -> MPI_COMM_WORLD rank
};

}  // namespace usp::detail
