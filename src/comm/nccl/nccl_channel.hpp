// The NCCL communicator's transport: one NCCL communicator, its communication stream and the
// point-to-point operations deferred until their group is launched (see nccl_comm.cpp for the
// rules), with every wait polled against a timeout and every failure aborting the communicator.
#pragma once

#include <nccl.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "comm/base/backoff.hpp"
#include "comm/base/wait_info.hpp"
#include "comm/nccl/p2p_group.hpp"
#include "kernel/cuda/check.hpp"
#include "kernel/cuda/event.hpp"
#include "usp/error.hpp"

#if !defined(NCCL_VERSION_CODE) || !defined(NCCL_MAJOR)
#error "nccl.h without NCCL_VERSION_CODE: usp's NCCL communicator needs NCCL >= 2.14"
#elif NCCL_VERSION_CODE < 21400
#error "usp's NCCL communicator needs NCCL >= 2.14 (non-blocking communicators, ncclCommFinalize)"
#endif

namespace usp::cuda::detail {

using Clock = std::chrono::steady_clock;
using usp::detail::Backoff;
using usp::detail::OpInfo;

// NCCL's text for `r`, with its last error message when it has one.
std::string nccl_text(ncclResult_t r);

// One posted isend/irecv, shared by its request and (until launched) the pending list.
struct Op {
  OpInfo info;
  std::shared_ptr<Event> done;  // recorded after the group that carries the op
  bool launched = false;
  std::string launch_error;  // why its group could not be launched
};

struct Pending {
  bool send = false;
  void* buf = nullptr;
  std::size_t bytes = 0;
  int peer = 0;
  std::shared_ptr<Op> op;
};

// Enqueues NCCL calls inside a group, remembering the first failure (the group is always ended).
class GroupCalls {
 public:
  GroupCalls(ncclComm_t comm, cudaStream_t stream) : comm_(comm), stream_(stream) {}
  void send(const void* buf, std::size_t bytes, int peer) {
    if (bytes > 0) note(ncclSend(buf, bytes, ncclInt8, peer, comm_, stream_), "ncclSend");
  }
  void recv(void* buf, std::size_t bytes, int peer) {
    if (bytes > 0) note(ncclRecv(buf, bytes, ncclInt8, peer, comm_, stream_), "ncclRecv");
  }
  void allgather(const void* send, void* recv, std::size_t bytes) {
    if (bytes > 0)
      note(ncclAllGather(send, recv, bytes, ncclInt8, comm_, stream_), "ncclAllGather");
  }
  void copy(void* dst, const void* src, std::size_t bytes) {
    if (bytes == 0 || failed_call_ != nullptr) return;
    const cudaError_t e = cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream_);
    if (e != cudaSuccess) {
      failed_call_ = "cudaMemcpyAsync";
      cuda_text_ = cudaGetErrorString(e);
    }
  }
  const char* failed_call() const { return failed_call_; }
  std::string failure_text() const { return cuda_text_.empty() ? nccl_text(result_) : cuda_text_; }

 private:
  void note(ncclResult_t r, const char* call) {
    if (failed_call_ == nullptr && r != ncclSuccess && r != ncclInProgress) {
      failed_call_ = call;
      result_ = r;
    }
  }
  ncclComm_t comm_;
  cudaStream_t stream_;
  const char* failed_call_ = nullptr;
  ncclResult_t result_ = ncclSuccess;
  std::string cuda_text_;
};

// The NCCL communicator, its stream and its deferred operations; shared with the requests, which
// may outlive the Communicator object.
class Channel {
 public:
  Channel(ncclComm_t comm, int device, int rank, int size, int world_rank,
          std::vector<int> world_of)
      : comm_(comm),
        device_(device),
        rank_(rank),
        size_(size),
        world_rank_(world_rank),
        world_of_(std::move(world_of)) {
    detail::set_device(device_);
    USP_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
  }

  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  int rank() const { return rank_; }
  int size() const { return size_; }
  int device() const { return device_; }
  int world_rank() const { return world_rank_; }
  void set_close_timeout(std::chrono::milliseconds t) { close_timeout_ = t; }

  OpInfo info(const char* op, int peer, int tag, const std::string& name,
              std::chrono::milliseconds timeout) const {
    const int pw = peer >= 0 && peer < size_ ? world_of_[static_cast<std::size_t>(peer)] : peer;
    return OpInfo{world_rank_, op, peer, pw, tag, name, timeout};
  }

  // Queues an isend/irecv; launches the pending set when it is one hop of a ring.
  std::shared_ptr<Op> post(bool send, void* buf, std::size_t bytes, int peer, OpInfo info);

  // Launches every pending isend/irecv as one group (nothing when none is pending).
  void launch(const OpInfo& why);

  // Runs `enqueue` inside ncclGroupStart/End on the communication stream, after the work the
  // calling thread queued so far on its compute stream; returns the event recorded after it.
  template <class F>
  std::shared_ptr<Event> run_group(const OpInfo& info, F&& enqueue) {
    usable(info);
    detail::set_device(device_);
    USP_CUDA_CHECK(cudaEventRecord(ready_.e, detail::compute_stream()));
    USP_CUDA_CHECK(cudaStreamWaitEvent(stream_, ready_.e, 0));
    check(ncclGroupStart(), "ncclGroupStart", info);
    GroupCalls calls(comm_, stream_);
    enqueue(calls);
    const ncclResult_t end = ncclGroupEnd();
    if (calls.failed_call() != nullptr)
      fail(usp::detail::concat("rank ", world_rank_, ": ", calls.failed_call(), " failed during ",
                               usp::detail::describe(info), ": ", calls.failure_text()));
    check(end, "ncclGroupEnd", info);
    // Non-blocking communicator: the group is enqueued on the stream once the state leaves
    // ncclInProgress (connection setup with new peers happens here).
    settle(info, Clock::now() + info.timeout, "launching");
    auto done = std::make_shared<Event>();
    USP_CUDA_CHECK(cudaEventRecord(done->e, stream_));
    return done;
  }

  // Blocks until `done` has completed, the communicator failed, or the timeout passed.
  void complete(const std::shared_ptr<Event>& done, const OpInfo& info);

  // One non-blocking look at `done` (throws when the communicator failed).
  bool ready(const std::shared_ptr<Event>& done, const OpInfo& info);

  // Throws Error(comm) when an earlier failure aborted the NCCL communicator.
  void usable(const OpInfo& info) const;

 private:
  void check(ncclResult_t r, const char* call, const OpInfo& info);

  void async_check(const OpInfo& info);

  // Polls until the communicator's state leaves ncclInProgress.
  void settle(const OpInfo& info, Clock::time_point deadline, const char* doing);

  [[noreturn]] void fail(const std::string& msg);

  // Stops every NCCL operation of this communicator; it is unusable afterwards.
  void abort(const std::string& reason);

  ncclComm_t comm_;
  int device_;
  int rank_;
  int size_;
  int world_rank_;
  std::vector<int> world_of_;  // communicator rank → world rank
  cudaStream_t stream_ = nullptr;
  Event ready_;  // re-recorded on the poster's compute stream before each group
  std::vector<Pending> pending_;
  std::string abort_reason_;
  std::chrono::milliseconds close_timeout_{std::chrono::seconds(60)};
};

}  // namespace usp::cuda::detail
