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
#include <utility>
#include <vector>

#include "mpi/mpi_gtest_main.hpp"
#include "unit/usp_matrix.hpp"
#include "usp/comm_mpi.hpp"
#include "usp/usp.hpp"

namespace {

using namespace std::chrono_literals;
using usp::testing::Errors;
using usp::testing::Inputs;
using usp::testing::Problem;
using usp::testing::Results;

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

// Every rank's tensor of the same shape, gathered; returned in world-rank order.
std::vector<usp::Tensor> allgather_tensor(usp::Communicator& c, const usp::Tensor& mine) {
  const usp::Tensor f = usp::to_dtype(mine, usp::DType::f32);
  std::vector<char> all(f.nbytes() * static_cast<std::size_t>(c.size()));
  c.allgather(f.data(), all.data(), f.nbytes());
  std::vector<usp::Tensor> out;
  for (int r = 0; r < c.size(); ++r) {
    usp::Tensor t = usp::Tensor::empty(f.shape(), usp::DType::f32);
    std::memcpy(t.data(), all.data() + f.nbytes() * static_cast<std::size_t>(r), f.nbytes());
    out.push_back(std::move(t));
  }
  return out;
}

Results run_usp_mpi(usp::Communicator& c, const Problem& p, const Inputs& in) {
  usp::Layout layout;
  layout.type = p.type;
  layout.seq_len = p.s;
  layout.ulysses = p.ulysses;
  layout.ring = p.ring;
  const usp::Tensor q = usp::to_dtype(in.q, p.dtype), k = usp::to_dtype(in.k, p.dtype),
                    v = usp::to_dtype(in.v, p.dtype), dout = usp::to_dtype(in.dout, p.dtype);
  usp::HostAllocator alloc;
  auto kernel = usp::make_cpu_kernel(1, &alloc);
  usp::UspAttention att(c, *kernel, alloc, usp::testing::config_of(p));
  const usp::MeshCoord co = att.mesh().coord;
  const int slot = co.ring * p.ulysses + co.ulysses;  // unshard's order
  std::vector<int> slots(static_cast<std::size_t>(c.size()));
  c.allgather(&slot, slots.data(), sizeof slot);

  const usp::Tensor ql = usp::shard(layout, q, co.ring, co.ulysses, 1, alloc);
  const usp::Tensor kl = usp::shard(layout, k, co.ring, co.ulysses, 1, alloc);
  const usp::Tensor vl = usp::shard(layout, v, co.ring, co.ulysses, 1, alloc);
  const usp::Tensor dl = usp::shard(layout, dout, co.ring, co.ulysses, 1, alloc);
  const usp::UspAttention::Output o = att.forward(ql, kl, vl);
  const usp::UspAttention::Grads g = att.backward(ql, kl, vl, o.out, o.lse, dl);

  auto global = [&](const usp::Tensor& local, int seq_dim) {
    std::vector<usp::Tensor> by_rank = allgather_tensor(c, local), by_slot(by_rank.size());
    for (std::size_t r = 0; r < by_rank.size(); ++r)
      by_slot[static_cast<std::size_t>(slots[r])] = std::move(by_rank[r]);
    return usp::unshard(layout, by_slot, seq_dim);
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
  for (const Problem& p : usp::testing::matrix(meshes)) {
    if (kSanitized && p.dtype != usp::DType::f32) continue;
    SCOPED_TRACE(p.name());
    const Inputs in = usp::testing::make_inputs(p);  // the same on every rank (seeded)
    const Results res = run_usp_mpi(world(), p, in);
    // Every rank gathered everything; rank 0 alone checks against the reference.
    if (world().rank() == 0) {
      const Errors e = usp::testing::errors_vs_reference(p, in, res);
      usp::testing::expect_within_bounds(p, e);
    }
    ++checked;
  }
  if (world().rank() == 0) {
    std::printf("checked %d problems on %d ranks, meshes (u x r):", checked, n);
    for (auto [u, r] : meshes) std::printf(" %dx%d", u, r);
    std::printf("\n");
  }
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
