// main() for the GoogleTest programs run under mpirun: every rank runs every test (they are
// collective); rank 0 prints the usual report, the other ranks only their failures; the exit
// status is non-zero when a test failed on any rank.
#pragma once

#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <set>
#include <string>
#include <vector>

#include "usp/comm_mpi.hpp"
#include "usp/error.hpp"

namespace usp::mpi_test {

inline MpiSession*& session() {
  static MpiSession* s = nullptr;
  return s;
}
inline Communicator& world() {
  return session()->world();
}

class FailurePrinter : public ::testing::EmptyTestEventListener {
 public:
  explicit FailurePrinter(int rank) : rank_(rank) {}
  void OnTestPartResult(const ::testing::TestPartResult& r) override {
    if (!r.failed()) return;
    std::fprintf(stderr, "[rank %d] %s:%d: Failure\n%s\n", rank_,
                 r.file_name() ? r.file_name() : "?", r.line_number(), r.summary());
  }

 private:
  int rank_;
};

// How many distinct network namespaces the ranks run in: netns_run.sh makes one per "host" and
// sets USP_EXPECT_NET_NAMESPACES, so that a run that silently stayed on one host fails.
inline void expect_spread_over_hosts() {
  Communicator& c = world();
  std::array<char, 64> mine{};
  std::error_code ec;
  const std::string ns = std::filesystem::read_symlink("/proc/self/ns/net", ec).string();
  std::snprintf(mine.data(), mine.size(), "%s", ec ? "unknown" : ns.c_str());
  std::vector<std::array<char, 64>> all(static_cast<std::size_t>(c.size()));
  c.allgather(mine.data(), all.data(), mine.size());
  std::set<std::string> distinct;
  for (const auto& a : all) distinct.insert(a.data());
  if (c.rank() == 0) std::printf("ranks span %zu network namespace(s)\n", distinct.size());
  if (const char* want = std::getenv("USP_EXPECT_NET_NAMESPACES")) {
    EXPECT_EQ(distinct.size(), static_cast<std::size_t>(std::atoi(want)));
  }
}

// As run_all below, in the session `s` the caller started (and ends after this returns).
inline int run_all_in(MpiSession& s, int argc, char** argv, int min_ranks,
                      std::chrono::milliseconds timeout) {
  session() = &s;
  ::testing::InitGoogleTest(&argc, argv);
  if (s.size() < min_ranks) {
    std::fprintf(stderr, "%s needs at least %d ranks: mpirun -np 4 %s\n", argv[0], min_ranks,
                 argv[0]);
    return 2;
  }
  s.world().set_timeout(timeout);
  if (s.rank() != 0) {
    auto& listeners = ::testing::UnitTest::GetInstance()->listeners();
    delete listeners.Release(listeners.default_result_printer());
    listeners.Append(new FailurePrinter(s.rank()));
  }
  const int rc = RUN_ALL_TESTS();
  std::vector<int> all(static_cast<std::size_t>(s.size()));
  try {
    s.world().allgather(&rc, all.data(), sizeof rc);
  } catch (const Error& e) {
    s.abort(1, e.what());
  }
  int worst = 0;
  for (int r : all) worst = r != 0 ? 1 : worst;
  if (s.rank() == 0 && worst != 0 && rc == 0)
    std::fprintf(stderr, "%s: a test failed on another rank (see [rank N] lines)\n", argv[0]);
  return worst;
}

inline int run_all(int argc, char** argv, int min_ranks, std::chrono::milliseconds timeout) {
  MpiSession s(&argc, &argv);
  return run_all_in(s, argc, argv, min_ranks, timeout);
}

}  // namespace usp::mpi_test
