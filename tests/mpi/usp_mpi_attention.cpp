// USP attention over MPI, run under mpirun: every ring type × the meshes whose u·r equals the
// world size × causal/non-causal × fp32/bf16, forward and backward, gathered in global token
// order and compared with the float64 reference on the global problem (the same bounds as the
// local-backend tests).
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "mpi/mpi_gtest_main.hpp"
#include "support/cases.hpp"
#include "support/matrix.hpp"
#include "usp/comm_mpi.hpp"
#include "usp/usp.hpp"

namespace {

using namespace std::chrono_literals;
using usp::test::Errors;
using usp::test::Inputs;
using usp::test::Results;
using usp::test::UspCase;

using usp::mpi_test::world;

// Sanitizer builds look for memory errors, not rounding: they run the fp32 half of the matrix so
// that 8 instrumented ranks on a small machine finish in reasonable time.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

Results run_usp_mpi(usp::Communicator& c, const UspCase& p, const Inputs& in) {
  const usp::Tensor q = usp::to_dtype(in.q, p.dtype), k = usp::to_dtype(in.k, p.dtype),
                    v = usp::to_dtype(in.v, p.dtype), dout = usp::to_dtype(in.dout, p.dtype);
  usp::AttentionOptions options = usp::test::options_of(p);
  options.backend = "mpi";
  usp::Attention att(c, options);
  const usp::Tensor ql = att.shard(q), kl = att.shard(k), vl = att.shard(v);
  const usp::UspAttention::Output o = att.forward(ql, kl, vl);
  const usp::UspAttention::Grads g = att.backward(ql, kl, vl, o.out, o.lse, att.shard(dout));
  // Every rank gathers everything.
  auto global = [&](const usp::Tensor& local, int seq_dim) {
    return usp::to_dtype(att.gather(local, seq_dim), usp::DType::f32);
  };
  Results res;
  res.out = global(o.out, 1);
  res.lse = global(o.lse, 2);
  res.dq = global(g.dq, 1);
  res.dk = global(g.dk, 1);
  res.dv = global(g.dv, 1);
  return res;
}

TEST(MpiUsp, MatchesReferenceForEveryRingTypeAndMesh) {
  const int n = world().size();
  std::vector<std::pair<int, int>> meshes;
  for (auto [u, r] : std::vector<std::pair<int, int>>{
           {1, 4}, {2, 2}, {4, 1}, {1, 8}, {2, 4}, {4, 2}, {8, 1}, {1, 2}, {2, 1}})
    if (u * r == n) meshes.emplace_back(u, r);
  ASSERT_FALSE(meshes.empty()) << "no mesh in the matrix has " << n << " ranks";
  int checked = 0;
  for (const UspCase& p : usp::test::matrix(meshes)) {
    if (kSanitized && p.dtype != usp::DType::f32) continue;
    SCOPED_TRACE(p.name());
    const Inputs in = usp::test::make_inputs(p);  // the same on every rank (seeded)
    const Results res = run_usp_mpi(world(), p, in);
    // Every rank gathered everything; rank 0 alone checks against the reference.
    if (world().rank() == 0) {
      const Errors e = usp::test::errors_vs_reference(p, in, res);
      usp::test::expect_within_bounds(p, e);
    }
    ++checked;
  }
  if (world().rank() == 0) {
    std::printf("checked %d problems on %d ranks, meshes (u x r):", checked, n);
    for (auto [u, r] : meshes) std::printf(" %dx%d", u, r);
    std::printf("\n");
  }
}

TEST(MpiUsp, DoubleRingMatchesReference) {
  // Inner rings of 1, 2 (and 4 on 8 ranks) over the whole world, and under Ulysses.
  const int n = world().size();
  std::vector<std::tuple<int, int, int>> meshes = {{1, n, 2}, {1, n, 1}, {2, n / 2, 1}};
  if (n == 8) meshes.push_back({1, 8, 4});
  if (n == 8) meshes.push_back({2, 4, 2});
  int checked = 0;
  for (const auto& [u, r, inner] : meshes) {
    for (usp::RingType t : usp::test::kPassingRingTypes) {
      for (bool causal : {true, false}) {
        for (usp::DType dt : {usp::DType::f32, usp::DType::bf16}) {
          if (kSanitized && dt != usp::DType::f32) continue;
          UspCase p{.type = t, .ulysses = u, .ring = r, .causal = causal, .dtype = dt};
          p.double_ring = inner;
          p.h = 8;
          p.hkv = 4;
          p.seed = static_cast<std::uint32_t>(900 + checked);
          SCOPED_TRACE(p.name());
          const Inputs in = usp::test::make_inputs(p);
          const Results res = run_usp_mpi(world(), p, in);
          if (world().rank() == 0)
            usp::test::expect_within_bounds(p, usp::test::errors_vs_reference(p, in, res));
          ++checked;
        }
      }
    }
  }
  if (world().rank() == 0) std::printf("checked %d double-ring problems on %d ranks\n", checked, n);
}

TEST(MpiUsp, ConfigurationMismatchNamesTheRank) {
  usp::HostAllocator alloc;
  auto kernel = usp::make_cpu_kernel(1, &alloc);
  usp::UspConfig cfg;
  cfg.ring = world().size();
  cfg.causal = world().rank() != world().size() - 1;  // the last rank disagrees
  try {
    usp::UspAttention att(world(), *kernel, alloc, cfg);
    FAIL() << "no error for a configuration that differs on one rank";
  } catch (const usp::Error& e) {
    EXPECT_EQ(e.kind(), usp::ErrorKind::invalid_argument);
    const std::string want = "rank " + std::to_string(world().size() - 1) + " has causal";
    EXPECT_NE(std::string(e.what()).find(want), std::string::npos) << e.what();
  }
}

TEST(MpiUsp, SpreadOverExpectedHosts) {
  usp::mpi_test::expect_spread_over_hosts();
}

}  // namespace

int main(int argc, char** argv) {
  return usp::mpi_test::run_all(argc, argv, 1, std::chrono::seconds(120));
}
