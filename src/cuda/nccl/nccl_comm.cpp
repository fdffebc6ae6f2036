// "nccl": one process per GPU, launched by mpirun. MPI (the usp MPI communicator over the same
// ranks) broadcasts the NCCL unique id, runs barrier() and split(); data moves with NCCL on a
// communication stream per communicator, ordered after the posting thread's compute stream.
//
// Point-to-point (see comm/p2p_group.hpp for the rule): NCCL has no tags and no eager sends; a
// transfer progresses only while both sides run it inside a launched group, and the groups of a
// communicator run one after another. isend/irecv are therefore deferred and launched together:
//   - at once when the pending set is one hop of a ring (a receive from rank − k and a send to
//     rank + k, posted back to back in either order — how the ring driver posts each step), so the
//     transfer overlaps the blocks computed after the post;
//   - otherwise at the first wait()/test() of any request or the next collective, barrier or split,
//     all pending operations in ONE group.
// Consequences users must respect:
//   - every rank posts its transfers to a given peer in the same order as that peer posts the
//     matching ones; tags are checked but do not take part in matching;
//   - send and receive sizes must agree (NCCL cannot detect a mismatch: it would hang, and the
//     wait then times out);
//   - one thread uses a communicator at a time.
//
// Timeouts: the communicator is non-blocking (ncclConfig_t::blocking = 0), so initialisation,
// group launches and transfers are all polled (ncclCommGetAsyncError, cudaEventQuery) against the
// communicator's timeout. On timeout or an asynchronous NCCL error the NCCL communicator is
// aborted (ncclCommAbort) and the wait throws Error(timeout) / Error(comm) naming rank, peer and
// operation; later operations on that communicator throw Error(comm) saying it was aborted.
//
// NCCL refuses two ranks on one GPU: with one GPU only world size 1 runs on this backend (several
// ranks sharing one GPU is what "cuda-local" is for). nccl_world() checks this first and says so.
#include <nccl.h>

#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "comm/backoff.hpp"
#include "comm/gpu_assignment.hpp"
#include "comm/p2p_group.hpp"
#include "comm/wait_info.hpp"
#include "kernel/cuda/check.hpp"
#include "kernel/cuda/event.hpp"
#include "usp/comm_mpi.hpp"
#include "usp/cuda.hpp"
#include "usp/error.hpp"

#if !defined(NCCL_VERSION_CODE) || !defined(NCCL_MAJOR)
#error "nccl.h without NCCL_VERSION_CODE: usp's NCCL communicator needs NCCL >= 2.14"
#elif NCCL_VERSION_CODE < 21400
#error "usp's NCCL communicator needs NCCL >= 2.14 (non-blocking communicators, ncclCommFinalize)"
#endif

namespace usp::cuda {
namespace {

using Clock = std::chrono::steady_clock;
using usp::detail::Backoff;
using usp::detail::OpInfo;

std::string nccl_text(ncclResult_t r) {
  std::string s = ncclGetErrorString(r);
  const char* last = ncclGetLastError(nullptr);
  if (last != nullptr && *last != '\0') s += std::string(" (") + last + ")";
  return s;
}

using usp::cuda::detail::Event;

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

  ~Channel() {
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
  std::shared_ptr<Op> post(bool send, void* buf, std::size_t bytes, int peer, OpInfo info) {
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

  // Launches every pending isend/irecv as one group (nothing when none is pending).
  void launch(const OpInfo& why) {
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
  void complete(const std::shared_ptr<Event>& done, const OpInfo& info) {
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

  // One non-blocking look at `done` (throws when the communicator failed).
  bool ready(const std::shared_ptr<Event>& done, const OpInfo& info) {
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

  // Throws Error(comm) when an earlier failure aborted the NCCL communicator.
  void usable(const OpInfo& info) const {
    if (comm_ == nullptr)
      USP_FAIL(comm, "rank ", world_rank_, ": cannot run ", usp::detail::describe(info),
               ": the NCCL communicator was aborted after an earlier failure (", abort_reason_,
               ")");
  }

 private:
  void check(ncclResult_t r, const char* call, const OpInfo& info) {
    if (r == ncclSuccess || r == ncclInProgress) return;
    fail(usp::detail::concat("rank ", world_rank_, ": ", call, " failed during ",
                             usp::detail::describe(info), ": ", nccl_text(r)));
  }

  void async_check(const OpInfo& info) {
    ncclResult_t state = ncclSuccess;
    const ncclResult_t r = ncclCommGetAsyncError(comm_, &state);
    check(r, "ncclCommGetAsyncError", info);
    if (state != ncclSuccess && state != ncclInProgress)
      fail(usp::detail::concat("rank ", world_rank_, ": NCCL reported an error during ",
                               usp::detail::describe(info), ": ", nccl_text(state)));
  }

  // Polls until the communicator's state leaves ncclInProgress.
  void settle(const OpInfo& info, Clock::time_point deadline, const char* doing) {
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

  [[noreturn]] void fail(const std::string& msg) {
    abort(msg);
    throw Error(ErrorKind::comm, msg);
  }

  // Stops every NCCL operation of this communicator; it is unusable afterwards.
  void abort(const std::string& reason) {
    if (comm_ == nullptr) return;
    abort_reason_ = reason;
    (void)cudaSetDevice(device_);
    (void)ncclCommAbort(comm_);
    comm_ = nullptr;
  }

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

class NcclRequest final : public Request::Impl {
 public:
  NcclRequest(std::shared_ptr<Channel> ch, std::shared_ptr<Op> op)
      : ch_(std::move(ch)), op_(std::move(op)) {}
  void wait() override {
    start();
    ch_->complete(op_->done, op_->info);
  }
  bool test() override {
    start();
    return ch_->ready(op_->done, op_->info);
  }

 private:
  // Launches the pending set this op belongs to, unless that already happened (or failed).
  void start() {
    if (op_->launched) return;
    if (op_->launch_error.empty()) ch_->launch(op_->info);
    if (!op_->launched)
      USP_FAIL(comm, "rank ", op_->info.self_world, ": ", usp::detail::describe(op_->info),
               " was never started: launching its group failed: ", op_->launch_error);
  }

  std::shared_ptr<Channel> ch_;
  std::shared_ptr<Op> op_;
};

bool overlaps(const void* a, std::size_t na, const void* b, std::size_t nb) {
  const auto pa = reinterpret_cast<std::uintptr_t>(a);
  const auto pb = reinterpret_cast<std::uintptr_t>(b);
  return na > 0 && nb > 0 && pa < pb + nb && pb < pa + na;
}

std::unique_ptr<Communicator> create(std::unique_ptr<Communicator> host, int device, int world_rank,
                                     const std::string& name, std::chrono::milliseconds timeout,
                                     bool check_gpus);

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(std::unique_ptr<Communicator> host, std::shared_ptr<Channel> ch,
                   const std::string& name, std::chrono::milliseconds timeout)
      : host_(std::move(host)), ch_(std::move(ch)) {
    name_ = name;
    timeout_ = timeout;
  }
  ~NcclCommunicator() override { ch_->set_close_timeout(timeout_); }
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  int rank() const override { return ch_->rank(); }
  int size() const override { return ch_->size(); }
  Device device() const override { return Device::cuda; }
  std::string backend() const override { return "nccl"; }

  Request isend(const void* buf, std::size_t bytes, int peer, int tag) override {
    check_p2p("isend", buf, bytes, peer, tag);
    auto op = ch_->post(true, const_cast<void*>(buf), bytes, peer, info("send", peer, tag));
    return Request(std::make_unique<NcclRequest>(ch_, std::move(op)));
  }
  Request irecv(void* buf, std::size_t bytes, int peer, int tag) override {
    check_p2p("irecv", buf, bytes, peer, tag);
    auto op = ch_->post(false, buf, bytes, peer, info("recv", peer, tag));
    return Request(std::make_unique<NcclRequest>(ch_, std::move(op)));
  }

  void alltoall(const void* send, void* recv, std::size_t bytes_per_rank) override {
    const std::size_t total = bytes_per_rank * static_cast<std::size_t>(size());
    USP_CHECK_ARG((send != nullptr && recv != nullptr) || bytes_per_rank == 0,
                  "alltoall: null buffer with ", bytes_per_rank, " bytes per rank");
    USP_CHECK_ARG(!overlaps(send, total, recv, total),
                  "alltoall: send and recv buffers overlap (in-place is not supported)");
    const OpInfo oi = info("alltoall", -1, -1);
    ch_->launch(oi);  // pending point-to-point first, in their own group
    if (bytes_per_rank == 0) return;
    const auto* s = static_cast<const unsigned char*>(send);
    auto* r = static_cast<unsigned char*>(recv);
    const int me = rank(), n = size();
    auto done = ch_->run_group(oi, [&](GroupCalls& g) {
      g.copy(r + me * bytes_per_rank, s + me * bytes_per_rank, bytes_per_rank);
      for (int j = 0; j < n; ++j) {
        if (j == me) continue;
        g.send(s + j * bytes_per_rank, bytes_per_rank, j);
        g.recv(r + j * bytes_per_rank, bytes_per_rank, j);
      }
    });
    ch_->complete(done, oi);
  }

  void allgather(const void* send, void* recv, std::size_t bytes) override {
    const std::size_t total = bytes * static_cast<std::size_t>(size());
    USP_CHECK_ARG((send != nullptr && recv != nullptr) || bytes == 0,
                  "allgather: null buffer with ", bytes, " bytes per rank");
    USP_CHECK_ARG(!overlaps(send, bytes, recv, total),
                  "allgather: send and recv buffers overlap (in-place is not supported)");
    const OpInfo oi = info("allgather", -1, -1);
    ch_->launch(oi);
    if (bytes == 0) return;
    auto done = ch_->run_group(oi, [&](GroupCalls& g) { g.allgather(send, recv, bytes); });
    ch_->complete(done, oi);
  }

  // Host-level: this rank's queued GPU work is finished, then every rank meets in MPI (timed).
  void barrier() override {
    const OpInfo oi = info("barrier", -1, -1);
    ch_->launch(oi);
    ch_->usable(oi);
    detail::set_device(ch_->device());
    USP_CUDA_CHECK(cudaStreamSynchronize(detail::compute_stream()));
    sync_host();
    host_->barrier();
  }

  // MPI_Comm_split for the ranks, then a fresh NCCL communicator per group: the group's rank 0
  // creates a unique id that MPI hands to the others (works with every NCCL since 2.14).
  std::unique_ptr<Communicator> split(int color, int key) override {
    const OpInfo oi = info("split", -1, -1);
    ch_->launch(oi);
    ch_->usable(oi);
    sync_host();
    std::unique_ptr<Communicator> sub = host_->split(color, key);
    if (sub == nullptr) return nullptr;  // negative color: this rank joins no group
    return create(std::move(sub), ch_->device(), ch_->world_rank(), name_ + "/split", timeout_,
                  false);
  }

 private:
  OpInfo info(const char* op, int peer, int tag) const {
    return ch_->info(op, peer, tag, name_, timeout_);
  }
  void sync_host() {
    host_->set_name(name_);
    host_->set_timeout(timeout_);
  }
  void check_p2p(const char* op, const void* buf, std::size_t bytes, int peer, int tag) const {
    USP_CHECK_ARG(peer >= 0 && peer < size(), op, ": peer ", peer, " is out of range [0, ", size(),
                  ") on comm '", name_, "'");
    USP_CHECK_ARG(tag >= 0, op, ": tag ", tag, " must be >= 0 (negative tags are reserved)");
    USP_CHECK_ARG(buf != nullptr || bytes == 0, op, ": buffer is null but bytes = ", bytes);
  }

  std::unique_ptr<Communicator> host_;  // MPI over the same ranks: ids, barrier, split
  std::shared_ptr<Channel> ch_;
};

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

std::unique_ptr<Communicator> create(std::unique_ptr<Communicator> host, int device, int world_rank,
                                     const std::string& name, std::chrono::milliseconds timeout,
                                     bool check_gpus) {
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
  return std::make_unique<NcclCommunicator>(std::move(host), std::move(ch), name, timeout);
}

}  // namespace

bool nccl_compiled() {
  return true;
}

std::unique_ptr<Communicator> nccl_world() {
  const int gpus = device_count();
  if (gpus == 0) throw Error(ErrorKind::unsupported, "backend 'nccl' " + unavailable_reason());
  std::unique_ptr<Communicator> host = make_mpi_communicator();  // throws when MPI is not up
  const int rank = host->rank();
  return create(std::move(host), rank % gpus, rank, "world", std::chrono::seconds(300), true);
}

}  // namespace usp::cuda
