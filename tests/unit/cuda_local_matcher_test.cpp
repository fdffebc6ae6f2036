// The rendezvous path of the in-process matcher (comm/local/local_world.hpp) that cuda-local moves
// its device buffers through, driven with a host memcpy engine: matching order, any wait order,
// size mismatch, timeout and abort.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "comm/local/local_world.hpp"
#include "unit/comm_payload.hpp"
#include "usp/error.hpp"

namespace {

using namespace std::chrono_literals;
using namespace usp::detail;
using usp::test::expect_error;

struct Done final : CopyDone {
  void wait() override {}
  bool test() override { return true; }
};

// Copies at once; counts the copies it started.
struct MemcpyEngine final : CopyEngine {
  std::atomic<int> copies{0};
  std::shared_ptr<CopyDone> start(void* dst, const void* src, std::size_t bytes,
                                  const std::shared_ptr<void>&,
                                  const std::shared_ptr<void>&) override {
    std::memcpy(dst, src, bytes);
    ++copies;
    return std::make_shared<Done>();
  }
};

std::vector<int> random_ints(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::vector<int> v(n);
  for (auto& x : v) x = static_cast<int>(g());
  return v;
}

OpInfo op_info(const char* op, int self, int peer, int tag, std::chrono::milliseconds t) {
  return OpInfo{self, op, peer, peer, tag, "world", t};
}

// One rendezvous transfer between world ranks `src` and `dst` on communicator `comm`.
struct Side {
  LocalWorld& w;
  MemcpyEngine& a;  // src's engine
  MemcpyEngine& b;  // dst's engine
  std::shared_ptr<Slot> send(std::uint64_t comm, int src, int dst, int tag, const void* buf,
                             std::size_t n) {
    return w.post_send(src, dst, MatchKey{comm, src, tag}, buf, n, &a);
  }
  std::shared_ptr<RecvOp> recv(std::uint64_t comm, int src, int dst, int tag, void* buf,
                               std::size_t n) {
    return w.post_recv(dst, MatchKey{comm, src, tag}, buf, n, &b);
  }
  void wait_send(const std::shared_ptr<Slot>& s, int src, int dst, int tag,
                 std::chrono::milliseconds t = 1s) {
    w.wait_send(*s, std::chrono::steady_clock::now() + t, op_info("send", src, dst, tag, t));
  }
  void wait_recv(const std::shared_ptr<RecvOp>& r, int src, int dst, int tag,
                 std::chrono::milliseconds t = 1s) {
    w.wait(*r, std::chrono::steady_clock::now() + t, op_info("recv", dst, src, tag, t));
  }
};

// Four ranks' mailboxes; ranks 0 and 1 move data with their own engines.
class CudaLocalMatcher : public ::testing::Test {
 protected:
  LocalWorld w{4};
  MemcpyEngine e0, e1;
  Side x{w, e0, e1};
};

TEST_F(CudaLocalMatcher, MatchesEitherPostingOrderAndCopies) {
  auto src = random_ints(64, 1);
  std::vector<int> dst(64, 0);
  // send first: the receiver (rank 1) completes the match and starts the copy with its engine
  auto s = x.send(0, 0, 1, 7, src.data(), 256);
  EXPECT_FALSE(w.test_send(*s, op_info("send", 0, 1, 7, 1s)));
  auto r = x.recv(0, 0, 1, 7, dst.data(), 256);
  EXPECT_TRUE(w.test_send(*s, op_info("send", 0, 1, 7, 1s)));
  x.wait_recv(r, 0, 1, 7);
  x.wait_send(s, 0, 1, 7);
  EXPECT_EQ(dst, src);
  EXPECT_EQ(e1.copies.load(), 1);
  // receive first: the sender completes it
  std::vector<int> dst2(64, 0);
  auto r2 = x.recv(0, 0, 1, 3, dst2.data(), 256);
  auto s2 = x.send(0, 0, 1, 3, src.data(), 256);
  x.wait_send(s2, 0, 1, 3);
  x.wait_recv(r2, 0, 1, 3);
  EXPECT_EQ(dst2, src);
  EXPECT_EQ(e0.copies.load(), 1);
}

TEST_F(CudaLocalMatcher, SameTagMatchesInOrderAndCommunicatorsAreSeparate) {
  auto a = random_ints(8, 2), b = random_ints(8, 3), c = random_ints(8, 4);
  std::vector<int> p(8), q(8), z(8);
  auto s1 = x.send(0, 0, 1, 5, a.data(), 32);
  auto s2 = x.send(0, 0, 1, 5, b.data(), 32);
  auto s3 = x.send(1, 0, 1, 5, c.data(), 32);  // another communicator, same tag
  auto r3 = x.recv(1, 0, 1, 5, z.data(), 32);
  auto r1 = x.recv(0, 0, 1, 5, p.data(), 32);
  auto r2 = x.recv(0, 0, 1, 5, q.data(), 32);
  for (auto* s : {&s1, &s2, &s3}) x.wait_send(*s, 0, 1, 5);
  for (auto* r : {&r1, &r2, &r3}) x.wait_recv(*r, 0, 1, 5);
  EXPECT_EQ(p, a);
  EXPECT_EQ(q, b);
  EXPECT_EQ(z, c);
}

TEST_F(CudaLocalMatcher, AnyWaitOrderAcrossThreadsDoesNotDeadlock) {
  // A ring of 4 where every rank waits on its send before its receive (and the reverse):
  // copies start at match time, so neither order can deadlock.
  for (int send_first = 0; send_first < 2; ++send_first) {
    constexpr int n = 4;
    LocalWorld ring(n);
    std::vector<MemcpyEngine> eng(n);
    std::vector<std::vector<int>> in(n), out(n, std::vector<int>(1000));
    for (int i = 0; i < n; ++i) in[i] = random_ints(1000, 10 + i);
    std::vector<std::thread> ts;
    std::atomic<int> failures{0};
    for (int rank = 0; rank < n; ++rank) {
      ts.emplace_back([&, rank] {
        try {
          const int next = (rank + 1) % n, prev = (rank + n - 1) % n;
          auto s =
              ring.post_send(rank, next, MatchKey{0, rank, 0}, in[rank].data(), 4000, &eng[rank]);
          auto r = ring.post_recv(rank, MatchKey{0, prev, 0}, out[rank].data(), 4000, &eng[rank]);
          const auto deadline = std::chrono::steady_clock::now() + 10s;
          auto ws = [&] { ring.wait_send(*s, deadline, op_info("send", rank, next, 0, 10s)); };
          auto wr = [&] { ring.wait(*r, deadline, op_info("recv", rank, prev, 0, 10s)); };
          if (send_first) {
            ws();
            wr();
          } else {
            wr();
            ws();
          }
        } catch (...) {
          ++failures;
        }
      });
    }
    for (auto& t : ts) t.join();
    ASSERT_EQ(failures.load(), 0);
    int copies = 0;
    for (int rank = 0; rank < n; ++rank) {
      EXPECT_EQ(out[rank], in[(rank + n - 1) % n]) << rank;
      copies += eng[rank].copies.load();
    }
    EXPECT_EQ(copies, n);
  }
}

TEST_F(CudaLocalMatcher, SizeMismatchFailsTheReceiveAndCopiesNothing) {
  std::vector<char> a(16, 'x'), b(8);
  auto s = x.send(0, 0, 1, 2, a.data(), 16);
  auto r = x.recv(0, 0, 1, 2, b.data(), 8);
  x.wait_send(s, 0, 1, 2);  // the message was dropped: the send is done
  const usp::Error e = expect_error([&] { x.wait_recv(r, 0, 1, 2); });
  EXPECT_EQ(e.kind(), usp::ErrorKind::comm);
  EXPECT_STREQ(e.what(),
               "rank 1: recv from rank 0 (tag 2) on comm 'world': the receive expects 8 bytes "
               "but the message has 16 (sizes must match)");
  EXPECT_EQ(e0.copies.load() + e1.copies.load(), 0);
}

TEST_F(CudaLocalMatcher, UnmatchedWaitsTimeOutNamingThePeer) {
  std::vector<char> b(8);
  auto r = x.recv(0, 3, 1, 9, b.data(), 8);
  const auto t0 = std::chrono::steady_clock::now();
  usp::Error e = expect_error([&] { x.wait_recv(r, 3, 1, 9, 60ms); });
  EXPECT_EQ(e.kind(), usp::ErrorKind::timeout);
  EXPECT_STREQ(e.what(),
               "rank 1: timed out after 60 ms waiting for recv from rank 3 (tag 9) on comm "
               "'world'");
  EXPECT_GE(std::chrono::steady_clock::now() - t0, 60ms);
  // An unmatched send times out too, and is withdrawn: a later receive does not see it.
  auto s = x.send(0, 2, 1, 4, b.data(), 8);
  e = expect_error([&] { x.wait_send(s, 2, 1, 4, 30ms); });
  EXPECT_EQ(e.kind(), usp::ErrorKind::timeout);
  EXPECT_STREQ(e.what(),
               "rank 2: timed out after 30 ms waiting for send to rank 1 (tag 4) on comm "
               "'world'");
  auto late = x.recv(0, 2, 1, 4, b.data(), 8);
  EXPECT_THROW(x.wait_recv(late, 2, 1, 4, 20ms), usp::Error);
  EXPECT_EQ(e0.copies.load() + e1.copies.load(), 0);
}

TEST_F(CudaLocalMatcher, AbortWakesWaiters) {
  std::vector<char> b(8);
  auto r = x.recv(0, 0, 1, 0, b.data(), 8);
  auto s = x.send(0, 1, 0, 0, b.data(), 8);  // rank 1 sends to rank 0, never received
  std::thread t([&] {
    std::this_thread::sleep_for(20ms);
    w.abort(0, "boom");
  });
  for (int side = 0; side < 2; ++side) {
    const usp::Error e = expect_error([&] {
      if (side == 0) {
        x.wait_recv(r, 0, 1, 0, 30s);
      } else {
        x.wait_send(s, 1, 0, 0, 30s);
      }
    });
    EXPECT_EQ(e.kind(), usp::ErrorKind::comm);
    EXPECT_STREQ(e.what(), "rank 1: aborted because rank 0 failed: boom");
  }
  t.join();
}

}  // namespace
