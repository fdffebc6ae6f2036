// The argument checks every communicator backend shares, done once before the backend's do_*.
#include <cstdint>
#include <limits>

#include "usp/comm.hpp"
#include "usp/error.hpp"

namespace usp {
namespace {

bool overlaps(const void* a, std::size_t na, const void* b, std::size_t nb) {
  const auto pa = reinterpret_cast<std::uintptr_t>(a);
  const auto pb = reinterpret_cast<std::uintptr_t>(b);
  return na > 0 && nb > 0 && pa < pb + nb && pb < pa + na;
}

}  // namespace

Communicator::TagLimit Communicator::tag_limit() const {
  return {std::numeric_limits<int>::max(), "the int range's end"};
}

void Communicator::check_p2p(const char* op, const void* buf, std::size_t bytes, int peer,
                             int tag) const {
  USP_CHECK_ARG(peer >= 0 && peer < size(), op, ": peer ", peer, " is out of range [0, ", size(),
                ") on comm '", name_, "'");
  USP_CHECK_ARG(tag >= 0, op, ": tag ", tag, " must be >= 0 (negative tags are reserved)");
  const TagLimit limit = tag_limit();
  USP_CHECK_ARG(tag <= limit.max, op, ": tag ", tag, " exceeds ", limit.name, " = ", limit.max);
  USP_CHECK_ARG(buf != nullptr || bytes == 0, op, ": buffer is null but bytes = ", bytes);
}

void Communicator::check_collective(const char* op, const void* send, std::size_t send_bytes,
                                    const void* recv, std::size_t bytes) const {
  const std::size_t total = bytes * static_cast<std::size_t>(size());
  USP_CHECK_ARG((send != nullptr && recv != nullptr) || bytes == 0, op, ": null buffer with ",
                bytes, " bytes per rank");
  USP_CHECK_ARG(!overlaps(send, send_bytes, recv, total), op,
                ": send and recv buffers overlap (in-place is not supported)");
}

Request Communicator::isend(const void* buf, std::size_t bytes, int peer, int tag) {
  check_p2p("isend", buf, bytes, peer, tag);
  return do_isend(buf, bytes, peer, tag);
}

Request Communicator::irecv(void* buf, std::size_t bytes, int peer, int tag) {
  check_p2p("irecv", buf, bytes, peer, tag);
  return do_irecv(buf, bytes, peer, tag);
}

void Communicator::alltoall(const void* send, void* recv, std::size_t bytes_per_rank) {
  check_collective("alltoall", send, bytes_per_rank * static_cast<std::size_t>(size()), recv,
                   bytes_per_rank);
  do_alltoall(send, recv, bytes_per_rank);
}

void Communicator::allgather(const void* send, void* recv, std::size_t bytes) {
  check_collective("allgather", send, bytes, recv, bytes);
  do_allgather(send, recv, bytes);
}

void Communicator::barrier() {
  do_barrier();
}

std::unique_ptr<Communicator> Communicator::split(int color, int key) {
  std::unique_ptr<Communicator> child = do_split(color, key);
  if (child != nullptr) {
    child->set_name(name_ + "/split");
    child->set_timeout(timeout_);
  }
  return child;
}

}  // namespace usp
