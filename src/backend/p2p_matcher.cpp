#include "backend/p2p_matcher.hpp"

#include "usp/error.hpp"

namespace usp::detail {

P2PMatcher::Handle P2PMatcher::post_send(int channel, int src, int dst, int tag, Posting p) {
  return post(true, channel, src, dst, tag, std::move(p));
}

P2PMatcher::Handle P2PMatcher::post_recv(int channel, int src, int dst, int tag, Posting p) {
  return post(false, channel, src, dst, tag, std::move(p));
}

P2PMatcher::Handle P2PMatcher::post(bool is_send, int channel, int src, int dst, int tag,
                                    Posting p) {
  auto h = std::make_shared<Transfer>();
  h->mine = std::move(p);
  h->channel = channel;
  h->src = src;
  h->dst = dst;
  h->tag = tag;
  h->is_send = is_send;
  const Key key{channel, src, dst, tag};
  std::unique_lock<std::mutex> lock(mu_);
  auto& other = is_send ? recvs_ : sends_;
  auto it = other.find(key);
  if (it == other.end() || it->second.empty()) {
    (is_send ? sends_ : recvs_)[key].push_back(h);
    return h;
  }
  Handle peer = it->second.front();
  it->second.pop_front();
  if (it->second.empty()) other.erase(it);
  const Handle& s = is_send ? h : peer;
  const Handle& r = is_send ? peer : h;
  if (s->mine.bytes != r->mine.bytes) {
    const std::string msg = concat("message size mismatch: rank ", src, " sends ", s->mine.bytes,
                                   " bytes to rank ", dst, " with tag ", tag,
                                   " but the matching receive expects ", r->mine.bytes, " bytes");
    s->error = r->error = msg;
  } else {
    try {
      auto done = engine_.start(s->mine, r->mine, is_send ? src : dst);
      s->done = r->done = std::move(done);
    } catch (const std::exception& e) {
      s->error = r->error = std::string("starting the copy failed: ") + e.what();
    }
  }
  s->matched = r->matched = true;
  lock.unlock();
  cv_.notify_all();
  return h;
}

void P2PMatcher::wait(const Handle& h, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  const char* op = h->is_send ? "isend" : "irecv";
  const int me = h->is_send ? h->src : h->dst, peer = h->is_send ? h->dst : h->src;
  {
    std::unique_lock<std::mutex> lock(mu_);
    while (!h->matched) {
      std::string why;
      if (abort_ && abort_->get(&why))
        USP_FAIL(comm, "rank ", me, ": ", op, " with peer ", peer, " (tag ", h->tag,
                 ") abandoned: ", why);
      const auto now = std::chrono::steady_clock::now();
      if (now >= deadline)
        USP_FAIL(timeout, "rank ", me, ": ", op, " with peer ", peer, " (tag ", h->tag, ", ",
                 h->mine.bytes, " bytes) timed out after ", timeout.count(),
                 " ms: the peer never posted the matching ", h->is_send ? "irecv" : "isend");
      // Short slices so an abort raised elsewhere is seen promptly.
      cv_.wait_until(lock, std::min(deadline, now + std::chrono::milliseconds(50)));
    }
  }
  if (!h->error.empty())
    USP_FAIL(comm, "rank ", me, ": ", op, " with peer ", peer, " (tag ", h->tag, "): ", h->error);
  if (h->done) h->done->wait();
}

bool P2PMatcher::test(const Handle& h) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!h->matched) return false;
  }
  return !h->error.empty() || !h->done || h->done->test();
}

void P2PMatcher::notify_all() {
  cv_.notify_all();
}

}  // namespace usp::detail
