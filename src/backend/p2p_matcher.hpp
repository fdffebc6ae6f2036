// In-process rendezvous of point-to-point transfers between the ranks of one communicator whose
// data moves through a copy engine (device-to-device copies for cuda-local).
//
// A send and a receive with the same (channel, src, dst, tag) are matched in posting order. The
// rank whose posting completes the match starts the copy at once, so neither side's wait() needs
// the other side to be waiting: any order of wait() calls works (like MPI isend/irecv).
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <tuple>

namespace usp::detail {

// One side of a transfer. `token` carries engine data (e.g. an event recorded on the poster's
// stream after which the buffer is ready).
struct Posting {
  void* buf = nullptr;
  std::size_t bytes = 0;
  int rank = 0;  // the posting rank
  std::shared_ptr<void> token;
};

// A started copy.
struct CopyDone {
  virtual ~CopyDone() = default;
  virtual void wait() = 0;  // blocks until the data is in place
  virtual bool test() = 0;
};

class CopyEngine {
 public:
  virtual ~CopyEngine() = default;
  // Called with the matcher's lock held, by the thread of rank `by_rank`; must not block long.
  virtual std::shared_ptr<CopyDone> start(const Posting& send, const Posting& recv,
                                          int by_rank) = 0;
};

// Shared between the ranks of a family of communicators (a world and its splits): once set,
// every wait of every rank throws Error(comm) with the message.
struct AbortFlag {
  std::mutex mu;
  bool set = false;
  std::string why;
  void raise(const std::string& w) {
    std::lock_guard<std::mutex> l(mu);
    if (!set) why = w;
    set = true;
  }
  bool get(std::string* w) {
    std::lock_guard<std::mutex> l(mu);
    if (set && w != nullptr) *w = why;
    return set;
  }
};

class P2PMatcher {
 public:
  struct Transfer {
    bool matched = false;
    std::string error;  // set at match time (size mismatch)
    std::shared_ptr<CopyDone> done;
    Posting mine;
    int channel = 0, src = 0, dst = 0, tag = 0;
    bool is_send = false;
  };
  using Handle = std::shared_ptr<Transfer>;

  P2PMatcher(CopyEngine& engine, std::shared_ptr<AbortFlag> abort)
      : engine_(engine), abort_(std::move(abort)) {}

  Handle post_send(int channel, int src, int dst, int tag, Posting p);
  Handle post_recv(int channel, int src, int dst, int tag, Posting p);
  // Blocks until the transfer is matched and copied; throws Error(timeout) naming the operation
  // after `timeout`, Error(comm) on a size mismatch or when the family was aborted.
  void wait(const Handle& h, std::chrono::milliseconds timeout);
  bool test(const Handle& h);
  // Wakes every waiter (they re-check the abort flag).
  void notify_all();

 private:
  Handle post(bool is_send, int channel, int src, int dst, int tag, Posting p);
  using Key = std::tuple<int, int, int, int>;
  CopyEngine& engine_;
  std::shared_ptr<AbortFlag> abort_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<Key, std::deque<Handle>> sends_, recvs_;
};

}  // namespace usp::detail
