// The NCCL communicator's transport (nccl_channel.hpp): closing, deferred point-to-point groups,
// polled completion, and aborting the NCCL communicator on any failure.
#include "comm/nccl/nccl_channel.hpp"

namespace usp::cuda::detail {

std::string nccl_text(ncclResult_t r) {
  std::string s = ncclGetErrorString(r);
  const char* last = ncclGetLastError(nullptr);
  if (last != nullptr && *last != '\0') s += std::string(" (") + last + ")";
  return s;
}

Channel::~Channel() {
  (void)cudaSetDevice(device_);
  if (comm_ != nullptr) {
    // Let launched transfers finish, then finalize; abort whatever cannot finish in time.
    const Clock::time_point deadline = Clock::now() + close_timeout_;
    Backoff backoff;
    bool clean = true;
    while (cudaStreamQuery(stream_) == cudaErrorNotReady) {
      if (Clock::now() >= deadline) {
        clean = false;
        break;
      }
      backoff.pause();
    }
    if (clean) {
      ncclResult_t r = ncclCommFinalize(comm_);
      clean = r == ncclSuccess || r == ncclInProgress;
      ncclResult_t state = ncclInProgress;
      while (clean && state == ncclInProgress) {
        clean = ncclCommGetAsyncError(comm_, &state) == ncclSuccess &&
                (state == ncclSuccess || state == ncclInProgress) && Clock::now() < deadline;
        if (clean && state == ncclInProgress) backoff.pause();
      }
    }
    if (clean) {
      (void)ncclCommDestroy(comm_);
    } else {
      (void)ncclCommAbort(comm_);
    }
    comm_ = nullptr;
  }
  (void)cudaStreamDestroy(stream_);
}

std::shared_ptr<Op> Channel::post(bool send, void* buf, std::size_t bytes, int peer, OpInfo info) {
  usable(info);
  auto op = std::make_shared<Op>();
  op->info = std::move(info);
  pending_.push_back(Pending{send, buf, bytes, peer, op});
  std::vector<usp::detail::P2PPosting> shape;
  shape.reserve(pending_.size());
  for (const Pending& p : pending_) shape.push_back({p.send, p.peer});
  if (usp::detail::is_ring_hop(shape, rank_, size_)) launch(op->info);
  return op;
}

void Channel::launch(const OpInfo& why) {
  if (pending_.empty()) return;
  std::vector<Pending> ops = std::move(pending_);
  pending_.clear();
  std::shared_ptr<Event> done;
  try {
    done = run_group(why, [&](GroupCalls& g) {
      for (const Pending& p : ops) {
        if (p.send) {
          g.send(p.buf, p.bytes, p.peer);
        } else {
          g.recv(p.buf, p.bytes, p.peer);
        }
      }
    });
  } catch (const std::exception& e) {
    for (Pending& p : ops) p.op->launch_error = e.what();
    throw;
  }
  for (Pending& p : ops) {
    p.op->done = done;
    p.op->launched = true;
  }
}

void Channel::complete(const std::shared_ptr<Event>& done, const OpInfo& info) {
  const Clock::time_point deadline = Clock::now() + info.timeout;
  Backoff backoff;
  while (!ready(done, info)) {
    if (Clock::now() >= deadline) {
      const std::string msg = usp::detail::timeout_message(info);
      abort(msg);
      throw Error(ErrorKind::timeout, msg);
    }
    backoff.pause();
  }
}

bool Channel::ready(const std::shared_ptr<Event>& done, const OpInfo& info) {
  usable(info);
  const cudaError_t e = cudaEventQuery(done->e);
  if (e == cudaSuccess) return true;
  if (e != cudaErrorNotReady)
    fail(usp::detail::concat("rank ", world_rank_, ": cudaEventQuery failed during ",
                             usp::detail::describe(info), ": ", cudaGetErrorName(e), " (",
                             cudaGetErrorString(e), ")"));
  async_check(info);
  return false;
}

void Channel::usable(const OpInfo& info) const {
  if (comm_ == nullptr)
    USP_FAIL(comm, "rank ", world_rank_, ": cannot run ", usp::detail::describe(info),
             ": the NCCL communicator was aborted after an earlier failure (", abort_reason_, ")");
}

void Channel::check(ncclResult_t r, const char* call, const OpInfo& info) {
  if (r == ncclSuccess || r == ncclInProgress) return;
  fail(usp::detail::concat("rank ", world_rank_, ": ", call, " failed during ",
                           usp::detail::describe(info), ": ", nccl_text(r)));
}

void Channel::async_check(const OpInfo& info) {
  ncclResult_t state = ncclSuccess;
  const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
  check(r, "ncclCommGetAsyncError", info);
  if (state != ncclSuccess && state != ncclInProgress)
    fail(usp::detail::concat("rank ", world_rank_, ": NCCL reported an error during ",
                             usp::detail::describe(info), ": ", nccl_text(state)));
}

void Channel::settle(const OpInfo& info, Clock::time_point deadline, const char* doing) {
  Backoff backoff;
  for (;;) {
    ncclResult_t state = ncclSuccess;
    check(ncclCommGetAsyncError(comm_, &state), "ncclCommGetAsyncError", info);
    if (state == ncclSuccess) return;
    if (state != ncclInProgress)
      fail(usp::detail::concat("rank ", world_rank_, ": NCCL reported an error ", doing, " ",
                               usp::detail::describe(info), ": ", nccl_text(state)));
    if (Clock::now() >= deadline) {
      const std::string msg =
          usp::detail::concat(usp::detail::timeout_message(info), " (still ", doing,
                              " it: a peer has not posted the matching operation)");
      abort(msg);
      throw Error(ErrorKind::timeout, msg);
    }
    backoff.pause();
  }
}

void Channel::fail(const std::string& msg) {
  abort(msg);
  throw Error(ErrorKind::comm, msg);
}

void Channel::abort(const std::string& reason) {
  if (comm_ == nullptr) return;
  abort_reason_ = reason;
  (void)cudaSetDevice(device_);
  (void)ncclCommAbort(comm_);
  comm_ = nullptr;
}

}  // namespace usp::cuda::detail
