// "nccl": one process per GPU, launched by mpirun. MPI (the usp MPI communicator over the same
// ranks) broadcasts the NCCL unique id, runs barrier() and split(); data moves with NCCL on a
// communication stream per communicator, ordered after the posting thread's compute stream.
//
// Point-to-point (see comm/nccl/p2p_group.hpp for the rule): NCCL has no tags and no eager sends; a
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
#include "comm/nccl/nccl_comm.hpp"

#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include "usp/error.hpp"

namespace usp::cuda::detail {
namespace {

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

 protected:
  Request do_isend(const void* buf, std::size_t bytes, int peer, int tag) override {
    auto op = ch_->post(true, const_cast<void*>(buf), bytes, peer, info("send", peer, tag));
    return Request(std::make_unique<NcclRequest>(ch_, std::move(op)));
  }
  Request do_irecv(void* buf, std::size_t bytes, int peer, int tag) override {
    auto op = ch_->post(false, buf, bytes, peer, info("recv", peer, tag));
    return Request(std::make_unique<NcclRequest>(ch_, std::move(op)));
  }

  void do_alltoall(const void* send, void* recv, std::size_t bytes_per_rank) override {
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

  void do_allgather(const void* send, void* recv, std::size_t bytes) override {
    const OpInfo oi = info("allgather", -1, -1);
    ch_->launch(oi);
    if (bytes == 0) return;
    auto done = ch_->run_group(oi, [&](GroupCalls& g) { g.allgather(send, recv, bytes); });
    ch_->complete(done, oi);
  }

  // Host-level: this rank's queued GPU work is finished, then every rank meets in MPI (timed).
  void do_barrier() override {
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
  std::unique_ptr<Communicator> do_split(int color, int key) override {
    const OpInfo oi = info("split", -1, -1);
    ch_->launch(oi);
    ch_->usable(oi);
    sync_host();
    std::unique_ptr<Communicator> sub = host_->split(color, key);
    if (sub == nullptr) return nullptr;  // negative color: this rank joins no group
    return connect(std::move(sub), ch_->device(), ch_->world_rank(), name_ + "/split", timeout_,
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

  std::unique_ptr<Communicator> host_;  // MPI over the same ranks: ids, barrier, split
  std::shared_ptr<Channel> ch_;
};

}  // namespace

std::unique_ptr<Communicator> make_nccl_communicator(std::unique_ptr<Communicator> host,
                                                     std::shared_ptr<Channel> ch,
                                                     const std::string& name,
                                                     std::chrono::milliseconds timeout) {
  return std::make_unique<NcclCommunicator>(std::move(host), std::move(ch), name, timeout);
}

}  // namespace usp::cuda::detail
