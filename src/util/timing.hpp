// Timing helpers for the per-rank UspTimings: kernel time, time blocked in communication, and the
// life of each transfer from posting to completion.
#pragma once

#include <chrono>
#include <cstddef>
#include <utility>

#include "usp/comm.hpp"
#include "usp/timings.hpp"

namespace usp::detail {

using Clock = std::chrono::steady_clock;

inline double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// Runs fn() and adds its duration to `acc`.
template <class Fn>
void timed(double& acc, Fn&& fn) {
  const auto t0 = Clock::now();
  std::forward<Fn>(fn)();
  acc += seconds_since(t0);
}

// A posted non-blocking transfer and when it was posted.
class Transfer {
 public:
  Transfer() = default;
  Transfer(Request req, UspTimings& timings)
      : req_(std::move(req)), posted_(Clock::now()), timings_(&timings) {}

  bool pending() const { return req_.valid() && !done_; }

  // Blocks until complete; the blocked time counts as comm_wait_s, the time since posting as
  // comm_total_s. A transfer that is not pending returns at once.
  void wait() {
    if (!pending()) return;
    const auto t0 = Clock::now();
    req_.wait();
    done_ = true;
    timings_->comm_wait_s += seconds_since(t0);
    timings_->comm_total_s += seconds_since(posted_);
  }

 private:
  Request req_;
  Clock::time_point posted_{};
  UspTimings* timings_ = nullptr;
  bool done_ = false;
};

// Posting itself can block: the local backend copies the payload while posting (into a posted
// receive or a mailbox slot), so the time spent posting counts as communication not hidden.
template <class Post>
Transfer post_timed(UspTimings& timings, Post&& post) {
  const auto t0 = Clock::now();
  Request req = std::forward<Post>(post)();
  const double dt = seconds_since(t0);
  timings.comm_wait_s += dt;
  timings.comm_total_s += dt;
  return Transfer(std::move(req), timings);
}

inline Transfer post_send(Communicator& comm, const void* buf, std::size_t bytes, int peer, int tag,
                          UspTimings& timings) {
  timings.bytes_sent += static_cast<std::int64_t>(bytes);
  return post_timed(timings, [&] { return comm.isend(buf, bytes, peer, tag); });
}

inline Transfer post_recv(Communicator& comm, void* buf, std::size_t bytes, int peer, int tag,
                          UspTimings& timings) {
  return post_timed(timings, [&] { return comm.irecv(buf, bytes, peer, tag); });
}

}  // namespace usp::detail
