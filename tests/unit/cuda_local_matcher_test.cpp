// The send/receive matcher behind the cuda-local communicator, driven with a host memcpy engine:
// matching order, any wait order, size mismatch, timeout and abort.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "backend/p2p_matcher.hpp"
#include "usp/error.hpp"

namespace {

using usp::detail::AbortFlag;
using usp::detail::CopyDone;
using usp::detail::CopyEngine;
using usp::detail::P2PMatcher;
using usp::detail::Posting;

struct Done final : CopyDone {
  void wait() override {}
  bool test() override { return true; }
};

struct MemcpyEngine final : CopyEngine {
  std::atomic<int> copies{0};
  std::atomic<int> by[2] = {0, 0};
  std::shared_ptr<CopyDone> start(const Posting& s, const Posting& r, int by_rank) override {
    std::memcpy(r.buf, s.buf, s.bytes);
    ++copies;
    if (by_rank >= 0 && by_rank < 2) ++by[by_rank];
    return std::make_shared<Done>();
  }
};

Posting post(void* p, std::size_t n, int rank) {
  Posting x;
  x.buf = p;
  x.bytes = n;
  x.rank = rank;
  return x;
}

std::vector<int> random_ints(std::size_t n, unsigned seed) {
  std::mt19937 g(seed);
  std::vector<int> v(n);
  for (auto& x : v) x = static_cast<int>(g());
  return v;
}

TEST(CudaLocalMatcher, MatchesEitherPostingOrderAndCopies) {
  MemcpyEngine eng;
  P2PMatcher m(eng, std::make_shared<AbortFlag>());
  auto src = random_ints(64, 1);
  std::vector<int> dst(64, 0);
  // send first: the receiver (rank 1) completes the match and starts the copy
  auto s = m.post_send(0, 0, 1, 7, post(src.data(), 256, 0));
  EXPECT_FALSE(m.test(s));
  auto r = m.post_recv(0, 0, 1, 7, post(dst.data(), 256, 1));
  EXPECT_TRUE(m.test(s));
  m.wait(r, std::chrono::milliseconds(100));
  m.wait(s, std::chrono::milliseconds(100));
  EXPECT_EQ(dst, src);
  EXPECT_EQ(eng.by[1].load(), 1);
  // receive first: the sender completes it
  std::vector<int> dst2(64, 0);
  auto r2 = m.post_recv(0, 1, 0, 3, post(dst2.data(), 256, 0));
  auto s2 = m.post_send(0, 1, 0, 3, post(src.data(), 256, 1));
  m.wait(s2, std::chrono::milliseconds(100));
  m.wait(r2, std::chrono::milliseconds(100));
  EXPECT_EQ(dst2, src);
  EXPECT_EQ(eng.by[1].load(), 2);
}

TEST(CudaLocalMatcher, SameTagMatchesInOrderAndChannelsAreSeparate) {
  MemcpyEngine eng;
  P2PMatcher m(eng, std::make_shared<AbortFlag>());
  auto a = random_ints(8, 2), b = random_ints(8, 3), c = random_ints(8, 4);
  std::vector<int> x(8), y(8), z(8);
  auto s1 = m.post_send(0, 0, 1, 5, post(a.data(), 32, 0));
  auto s2 = m.post_send(0, 0, 1, 5, post(b.data(), 32, 0));
  auto s3 = m.post_send(1, 0, 1, 5, post(c.data(), 32, 0));  // collective channel
  auto r3 = m.post_recv(1, 0, 1, 5, post(z.data(), 32, 1));
  auto r1 = m.post_recv(0, 0, 1, 5, post(x.data(), 32, 1));
  auto r2 = m.post_recv(0, 0, 1, 5, post(y.data(), 32, 1));
  for (auto* h : {&s1, &s2, &s3, &r1, &r2, &r3}) m.wait(*h, std::chrono::milliseconds(100));
  EXPECT_EQ(x, a);
  EXPECT_EQ(y, b);
  EXPECT_EQ(z, c);
}

TEST(CudaLocalMatcher, AnyWaitOrderAcrossThreadsDoesNotDeadlock) {
  // A ring of 4 where every rank waits on its send before its receive (and the reverse):
  // copies start at match time, so neither order can deadlock.
  for (int send_first = 0; send_first < 2; ++send_first) {
    MemcpyEngine eng;
    P2PMatcher m(eng, std::make_shared<AbortFlag>());
    constexpr int n = 4;
    std::vector<std::vector<int>> in(n), out(n, std::vector<int>(1000));
    for (int i = 0; i < n; ++i) in[i] = random_ints(1000, 10 + i);
    std::vector<std::thread> ts;
    std::atomic<int> failures{0};
    for (int rank = 0; rank < n; ++rank) {
      ts.emplace_back([&, rank] {
        try {
          const int next = (rank + 1) % n, prev = (rank + n - 1) % n;
          auto s = m.post_send(0, rank, next, 0, post(in[rank].data(), 4000, rank));
          auto r = m.post_recv(0, prev, rank, 0, post(out[rank].data(), 4000, rank));
          if (send_first) {
            m.wait(s, std::chrono::seconds(10));
            m.wait(r, std::chrono::seconds(10));
          } else {
            m.wait(r, std::chrono::seconds(10));
            m.wait(s, std::chrono::seconds(10));
          }
        } catch (...) {
          ++failures;
        }
      });
    }
    for (auto& t : ts) t.join();
    ASSERT_EQ(failures.load(), 0);
    for (int rank = 0; rank < n; ++rank) EXPECT_EQ(out[rank], in[(rank + n - 1) % n]) << rank;
    EXPECT_EQ(eng.copies.load(), n);
  }
}

TEST(CudaLocalMatcher, SizeMismatchIsAnErrorOnBothSides) {
  MemcpyEngine eng;
  P2PMatcher m(eng, std::make_shared<AbortFlag>());
  std::vector<char> a(16, 'x'), b(8);
  auto s = m.post_send(0, 0, 1, 2, post(a.data(), 16, 0));
  auto r = m.post_recv(0, 0, 1, 2, post(b.data(), 8, 1));
  for (auto* h : {&s, &r}) {
    try {
      m.wait(*h, std::chrono::milliseconds(100));
      FAIL() << "expected a size mismatch error";
    } catch (const usp::Error& e) {
      EXPECT_EQ(e.kind(), usp::ErrorKind::comm);
      EXPECT_NE(std::string(e.what()).find("size mismatch: rank 0 sends 16 bytes"),
                std::string::npos)
          << e.what();
    }
  }
  EXPECT_EQ(eng.copies.load(), 0);
}

TEST(CudaLocalMatcher, UnmatchedWaitTimesOutNamingThePeer) {
  MemcpyEngine eng;
  P2PMatcher m(eng, std::make_shared<AbortFlag>());
  std::vector<char> b(8);
  auto r = m.post_recv(0, 3, 1, 9, post(b.data(), 8, 1));
  const auto t0 = std::chrono::steady_clock::now();
  try {
    m.wait(r, std::chrono::milliseconds(60));
    FAIL() << "expected a timeout";
  } catch (const usp::Error& e) {
    EXPECT_EQ(e.kind(), usp::ErrorKind::timeout);
    const std::string w = e.what();
    EXPECT_NE(w.find("rank 1: irecv with peer 3 (tag 9"), std::string::npos) << w;
    EXPECT_NE(w.find("timed out after 60 ms"), std::string::npos) << w;
  }
  EXPECT_GE(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(60));
}

TEST(CudaLocalMatcher, AbortWakesWaiters) {
  MemcpyEngine eng;
  auto flag = std::make_shared<AbortFlag>();
  P2PMatcher m(eng, flag);
  std::vector<char> b(8);
  auto r = m.post_recv(0, 0, 1, 0, post(b.data(), 8, 1));
  std::thread t([&] {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    flag->raise("rank 0 failed: boom");
    m.notify_all();
  });
  try {
    m.wait(r, std::chrono::seconds(30));
    ADD_FAILURE() << "expected an abort";
  } catch (const usp::Error& e) {
    EXPECT_EQ(e.kind(), usp::ErrorKind::comm);
    EXPECT_NE(std::string(e.what()).find("rank 0 failed: boom"), std::string::npos) << e.what();
  }
  t.join();
}

}  // namespace
