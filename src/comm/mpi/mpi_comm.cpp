// MPI communicator. MPI has no timeouts of its own, so every operation is started non-blocking
// and completed by polling MPI_Testall until it finishes or the deadline passes; a dead or
// absent peer thus yields an error naming rank, peer and operation instead of a hang.
#include "comm/mpi/mpi_comm.hpp"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdio>
#include <utility>

#include "comm/base/backoff.hpp"
#include "usp/error.hpp"

namespace usp::detail {

MpiProcess& mpi_process() {
  static MpiProcess p;
  return p;
}

std::unique_lock<std::mutex> mpi_lock() {
  MpiProcess& p = mpi_process();
  return p.serialize ? std::unique_lock<std::mutex>(p.m) : std::unique_lock<std::mutex>();
}

void mpi_check(int rc, const char* call, const OpInfo& info) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {};
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS)
    std::snprintf(text, sizeof text, "code %d", rc);
  USP_FAIL(comm, "rank ", info.self_world, ": ", call, " failed during ", describe(info), ": ",
           text);
}

namespace {

constexpr std::size_t kChunk = std::size_t{1} << 30;  // p2p messages travel in <= 1 GiB pieces

using Clock = std::chrono::steady_clock;

// Polls until every request completes (true) or the deadline passes (false).
bool poll(std::vector<MPI_Request>& reqs, std::vector<MPI_Status>& st, Clock::time_point deadline,
          const OpInfo& info) {
  st.resize(reqs.size());
  Backoff backoff;
  for (;;) {
    int flag = 0;
    int rc;
    {
      auto lk = mpi_lock();
      rc = MPI_Testall(static_cast<int>(reqs.size()), reqs.data(), &flag, st.data());
    }
    if (rc == MPI_ERR_IN_STATUS) {
      for (const MPI_Status& s : st)
        if (s.MPI_ERROR != MPI_SUCCESS && s.MPI_ERROR != MPI_ERR_PENDING)
          mpi_check(s.MPI_ERROR, "MPI_Testall", info);
    }
    mpi_check(rc, "MPI_Testall", info);
    if (flag) return true;
    if (Clock::now() >= deadline) return false;
    backoff.pause();
  }
}

// Stops what can be stopped after a timeout: receives are cancelled, other requests released
// (MPI completes them in the background).
void abandon(std::vector<MPI_Request>& reqs, bool cancel) {
  auto lk = mpi_lock();
  for (MPI_Request& r : reqs) {
    if (r == MPI_REQUEST_NULL) continue;
    if (cancel) MPI_Cancel(&r);
    MPI_Request_free(&r);
  }
}

// A contiguous byte type for `bytes` so that counts fit MPI's int.
struct ByteType {
  MPI_Datatype type = MPI_BYTE;
  int count = 0;
  bool owned = false;
  ByteType(std::size_t bytes, const char* op) {
    if (bytes <= static_cast<std::size_t>(INT_MAX)) {
      count = static_cast<int>(bytes);
      return;
    }
    std::size_t unit = std::size_t{1} << 20;
    while (bytes % unit) unit >>= 1;
    USP_CHECK_ARG(bytes / unit <= static_cast<std::size_t>(INT_MAX), op, ": ", bytes,
                  " bytes per rank cannot be described to MPI (use a multiple of 1 KiB)");
    count = static_cast<int>(bytes / unit);
    auto lk = mpi_lock();
    MPI_Type_contiguous(static_cast<int>(unit), MPI_BYTE, &type);
    MPI_Type_commit(&type);
    owned = true;
  }
  ~ByteType() {
    if (!owned) return;
    auto lk = mpi_lock();
    MPI_Type_free(&type);
  }
  ByteType(const ByteType&) = delete;
  ByteType& operator=(const ByteType&) = delete;
};

class P2pImpl final : public Request::Impl {
 public:
  P2pImpl(OpInfo info, bool recv, std::vector<MPI_Request> reqs, std::vector<std::size_t> sizes)
      : info_(std::move(info)), recv_(recv), reqs_(std::move(reqs)), sizes_(std::move(sizes)) {}
  ~P2pImpl() override {
    if (!finished_) abandon(reqs_, recv_);
  }

  void wait() override {
    if (!finished_ && !poll(reqs_, st_, Clock::now() + info_.timeout, info_)) {
      abandon(reqs_, recv_);
      finished_ = true;
      throw Error(ErrorKind::timeout, timeout_message(info_));
    }
    finish();
  }

  bool test() override {
    if (finished_) return true;
    if (!poll(reqs_, st_, Clock::time_point::min(), info_)) return false;
    finish();  // may throw a size mismatch; wait() then returns at once
    return true;
  }

 private:
  void finish() {
    if (finished_) return;
    finished_ = true;
    if (!recv_) return;
    for (std::size_t i = 0; i < st_.size(); ++i) {
      int count = 0;
      MPI_Get_count(&st_[i], MPI_BYTE, &count);
      if (static_cast<std::size_t>(count) != sizes_[i])
        USP_FAIL(comm, "rank ", info_.self_world, ": ", describe(info_), ": the receive expects ",
                 total(), " bytes but the message is shorter", " (sizes must match)");
    }
  }
  std::size_t total() const {
    std::size_t t = 0;
    for (std::size_t s : sizes_) t += s;
    return t;
  }

  OpInfo info_;
  bool recv_;
  std::vector<MPI_Request> reqs_;
  std::vector<std::size_t> sizes_;
  std::vector<MPI_Status> st_;
  bool finished_ = false;
};

// Posts one message as pieces of at most kChunk bytes, each through post(offset, bytes, &req)
// (MPI_Isend or MPI_Irecv) under the MPI lock. A failed post releases the pieces already posted
// and throws naming `call`; otherwise returns one request covering every piece.
template <class Post>
Request post_chunks(OpInfo oi, bool recv, std::size_t bytes, const char* call, Post post) {
  std::vector<MPI_Request> reqs;
  std::vector<std::size_t> sizes;
  std::size_t off = 0;
  do {
    const std::size_t n = std::min(kChunk, bytes - off);
    MPI_Request r;
    int rc;
    {
      auto lk = mpi_lock();
      rc = post(off, static_cast<int>(n), &r);
    }
    if (rc != MPI_SUCCESS) abandon(reqs, recv);
    mpi_check(rc, call, oi);
    reqs.push_back(r);
    sizes.push_back(n);
    off += n;
  } while (off < bytes);
  return Request(std::make_unique<P2pImpl>(std::move(oi), recv, std::move(reqs), std::move(sizes)));
}

// Completes one non-blocking collective or throws the timeout naming it. MPI forbids freeing or
// cancelling a pending collective, so a timed-out one is left to complete (or not) on its own.
void complete(MPI_Request req, const OpInfo& info) {
  std::vector<MPI_Request> reqs{req};
  std::vector<MPI_Status> st;
  if (!poll(reqs, st, Clock::now() + info.timeout, info))
    throw Error(ErrorKind::timeout, timeout_message(info));
}

// Starts one non-blocking collective with start(&request) under the MPI lock, then completes it.
template <class Start>
void run_collective(const OpInfo& info, const char* call, Start start) {
  MPI_Request req;
  int rc;
  {
    auto lk = mpi_lock();
    rc = start(&req);
  }
  mpi_check(rc, call, info);
  complete(req, info);
}

}  // namespace

MpiCommunicator::MpiCommunicator(MPI_Comm comm, std::string name, std::chrono::milliseconds timeout)
    : comm_(comm) {
  name_ = std::move(name);
  timeout_ = timeout;
  auto lk = mpi_lock();
  MPI_Comm_set_errhandler(comm_, MPI_ERRORS_RETURN);
  MPI_Comm_rank(comm_, &rank_);
  MPI_Comm_size(comm_, &size_);
  MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
  MPI_Group group, world_group;
  MPI_Comm_group(comm_, &group);
  MPI_Comm_group(MPI_COMM_WORLD, &world_group);
  std::vector<int> mine(static_cast<std::size_t>(size_));
  for (int i = 0; i < size_; ++i) mine[static_cast<std::size_t>(i)] = i;
  world_of_.resize(mine.size());
  MPI_Group_translate_ranks(group, size_, mine.data(), world_group, world_of_.data());
  MPI_Group_free(&group);
  MPI_Group_free(&world_group);
}

MpiCommunicator::~MpiCommunicator() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (finalized) return;
  auto lk = mpi_lock();
  MPI_Comm_free(&comm_);
}

OpInfo MpiCommunicator::info(const char* op, int peer, int tag) const {
  const int pw = peer >= 0 && peer < size_ ? world_of_[static_cast<std::size_t>(peer)] : peer;
  return OpInfo{world_rank_, op, peer, pw, tag, name_, timeout_};
}

Communicator::TagLimit MpiCommunicator::tag_limit() const {
  static const int tag_ub = [] {
    int* v = nullptr;
    int flag = 0;
    auto lk = mpi_lock();
    MPI_Comm_get_attr(MPI_COMM_WORLD, MPI_TAG_UB, &v, &flag);
    return flag && v ? *v : 32767;
  }();
  return {tag_ub, "this MPI's limit MPI_TAG_UB"};
}

Request MpiCommunicator::do_isend(const void* buf, std::size_t bytes, int peer, int tag) {
  const char* p = static_cast<const char*>(buf);
  return post_chunks(info("send", peer, tag), false, bytes, "MPI_Isend",
                     [&](std::size_t off, int n, MPI_Request* r) {
                       return MPI_Isend(p + off, n, MPI_BYTE, peer, tag, comm_, r);
                     });
}

Request MpiCommunicator::do_irecv(void* buf, std::size_t bytes, int peer, int tag) {
  char* p = static_cast<char*>(buf);
  return post_chunks(info("recv", peer, tag), true, bytes, "MPI_Irecv",
                     [&](std::size_t off, int n, MPI_Request* r) {
                       return MPI_Irecv(p + off, n, MPI_BYTE, peer, tag, comm_, r);
                     });
}

void MpiCommunicator::do_alltoall(const void* send, void* recv, std::size_t bytes_per_rank) {
  ByteType t(bytes_per_rank, "alltoall");
  run_collective(info("alltoall", -1, -1), "MPI_Ialltoall", [&](MPI_Request* r) {
    return MPI_Ialltoall(send, t.count, t.type, recv, t.count, t.type, comm_, r);
  });
}

void MpiCommunicator::do_allgather(const void* send, void* recv, std::size_t bytes) {
  ByteType t(bytes, "allgather");
  run_collective(info("allgather", -1, -1), "MPI_Iallgather", [&](MPI_Request* r) {
    return MPI_Iallgather(send, t.count, t.type, recv, t.count, t.type, comm_, r);
  });
}

void MpiCommunicator::do_barrier() {
  run_collective(info("barrier", -1, -1), "MPI_Ibarrier",
                 [&](MPI_Request* r) { return MPI_Ibarrier(comm_, r); });
}

std::unique_ptr<Communicator> MpiCommunicator::do_split(int color, int key) {
  // MPI_Comm_split blocks without a timeout; a timed all-gather first makes sure every rank has
  // arrived, so a missing rank is reported instead of hanging.
  int mine[2] = {color, key};
  std::vector<int> all(2 * static_cast<std::size_t>(size_));
  const OpInfo oi = info("split", -1, -1);
  run_collective(oi, "MPI_Iallgather", [&](MPI_Request* r) {
    return MPI_Iallgather(mine, 2, MPI_INT, all.data(), 2, MPI_INT, comm_, r);
  });
  MPI_Comm child = MPI_COMM_NULL;
  int rc;
  {
    auto lk = mpi_lock();
    rc = MPI_Comm_split(comm_, color < 0 ? MPI_UNDEFINED : color, key, &child);
  }
  mpi_check(rc, "MPI_Comm_split", oi);
  if (child == MPI_COMM_NULL) return nullptr;
  return std::make_unique<MpiCommunicator>(child, name_, timeout_);
}

}  // namespace usp::detail
