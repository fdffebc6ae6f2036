// The "nccl" backend under mpirun, one process per GPU. NCCL refuses two ranks on one GPU, so a
// machine with ONE GPU can only run world size 1: CTest (NcclWorld1) and scripts/gpu-check run
// `mpirun -np 1 usp_nccl_tests`. With more GPUs, `mpirun -np N` (N <= GPUs per host) runs the same
// checks across them.
//   point-to-point: ring hops (a self-send at world size 1) in both posting and waiting orders,
//     two hops with different tags, sends and receives not posted as pairs, zero bytes, test();
//   collectives: alltoall, allgather, barrier; split and collectives on the split;
//   argument errors; timeout: a receive nobody sends ends in Error(timeout) naming rank, peer and
//     operation, after which the aborted communicator answers Error(comm);
//   USP forward + backward (fp16, causal, zigzag) on the NCCL world vs the float64 CPU reference.
// `usp_nccl_tests --conformance [gtest flags]` runs the communicator conformance suite instead
// (nccl_conformance.cpp; CTest: NcclConformance).
// Without a GPU, or in a build without NCCL, it prints "skipped: <why>" and exits 77.
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include "cuda/nccl_conformance.hpp"
#include "kernel/reference/reference.hpp"
#include "usp/backend.hpp"
#include "usp/comm_mpi.hpp"
#include "usp/cuda.hpp"
#include "usp/error.hpp"
#include "usp/usp.hpp"

namespace {

int g_checks = 0;
int g_failures = 0;
int g_rank = 0;

void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::printf("rank %d: FAIL %s\n", g_rank, what.c_str());
    std::fflush(stdout);
  }
}

bool has(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Values that identify (sender, tag, index): any misrouted or stale element shows.
float value(int sender, int tag, std::size_t i) {
  return static_cast<float>(sender * 1000000 + tag * 10000 + static_cast<int>(i % 10000));
}

struct Dev {
  usp::Allocator& alloc;
  usp::Tensor make(std::size_t n, int sender, int tag) const {
    std::vector<float> h(n);
    for (std::size_t i = 0; i < n; ++i) h[i] = value(sender, tag, i);
    return usp::cuda::to_device(
        usp::Tensor::wrap(h.data(), {static_cast<std::int64_t>(n)}, usp::DType::f32), alloc);
  }
  usp::Tensor empty(std::size_t n) const {
    return usp::Tensor::empty({static_cast<std::int64_t>(n)}, usp::DType::f32, alloc);
  }
};

bool holds(const usp::Tensor& dev, std::size_t offset, std::size_t n, int sender, int tag) {
  const usp::Tensor h = usp::cuda::to_host(dev);
  const float* p = h.data_as<float>();
  for (std::size_t i = 0; i < n; ++i)
    if (p[offset + i] != value(sender, tag, i)) return false;
  return true;
}

void test_p2p(usp::Communicator& c, const Dev& d) {
  const int n = c.size(), me = c.rank();
  const int next = (me + 1) % n, prev = (me + n - 1) % n;
  const std::size_t count = 4099;
  const std::string at = " (rank " + std::to_string(me) + " of " + std::to_string(n) + ")";

  {  // the ring driver's order: receive, then send; wait on the send first
    usp::Tensor src = d.make(count, me, 1), dst = d.empty(count);
    usp::Request r = c.irecv(dst.data(), dst.nbytes(), prev, 1);
    usp::Request s = c.isend(src.data(), src.nbytes(), next, 1);
    s.wait();
    r.wait();
    check(holds(dst, 0, count, prev, 1), "ring hop, receive posted first" + at);
  }
  {  // send, then receive; wait on the receive first
    usp::Tensor src = d.make(count, me, 2), dst = d.empty(count);
    usp::Request s = c.isend(src.data(), src.nbytes(), next, 2);
    usp::Request r = c.irecv(dst.data(), dst.nbytes(), prev, 2);
    r.wait();
    s.wait();
    check(holds(dst, 0, count, prev, 2), "ring hop, send posted first" + at);
  }
  {  // two hops in flight (as the backward ring's K/V and dK/dV hops), different tags
    usp::Tensor a = d.make(count, me, 3), b = d.make(count / 2, me, 4);
    usp::Tensor ra = d.empty(count), rb = d.empty(count / 2);
    usp::Request r1 = c.irecv(ra.data(), ra.nbytes(), prev, 3);
    usp::Request s1 = c.isend(a.data(), a.nbytes(), next, 3);
    usp::Request r2 = c.irecv(rb.data(), rb.nbytes(), prev, 4);
    usp::Request s2 = c.isend(b.data(), b.nbytes(), next, 4);
    r2.wait();
    r1.wait();
    s1.wait();
    s2.wait();
    check(holds(ra, 0, count, prev, 3) && holds(rb, 0, count / 2, prev, 4),
          "two ring hops in flight" + at);
  }
  {  // not posted as pairs: all sends first, then all receives, launched together at the wait
    usp::Tensor a = d.make(count, me, 5), b = d.make(count, me, 6);
    usp::Tensor ra = d.empty(count), rb = d.empty(count);
    usp::Request s1 = c.isend(a.data(), a.nbytes(), next, 5);
    usp::Request s2 = c.isend(b.data(), b.nbytes(), prev, 6);
    usp::Request r1 = c.irecv(ra.data(), ra.nbytes(), prev, 5);
    usp::Request r2 = c.irecv(rb.data(), rb.nbytes(), next, 6);
    r1.wait();
    r2.wait();
    s1.wait();
    s2.wait();
    check(holds(ra, 0, count, prev, 5) && holds(rb, 0, count, next, 6),
          "sends and receives posted in bulk" + at);
  }
  {  // zero bytes, and completion polled with test()
    usp::Tensor src = d.make(count, me, 7), dst = d.empty(count);
    usp::Request rz = c.irecv(dst.data(), 0, prev, 8);
    usp::Request sz = c.isend(src.data(), 0, next, 8);
    rz.wait();
    sz.wait();
    usp::Request r = c.irecv(dst.data(), dst.nbytes(), prev, 7);
    usp::Request s = c.isend(src.data(), src.nbytes(), next, 7);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    bool done = false;
    while (!done && std::chrono::steady_clock::now() < deadline) done = r.test() && s.test();
    check(done && holds(dst, 0, count, prev, 7), "test() polling a ring hop" + at);
  }
  // argument errors
  auto kind_of = [](auto&& f) {
    try {
      f();
    } catch (const usp::Error& e) {
      return std::make_pair(e.kind(), std::string(e.what()));
    }
    return std::make_pair(usp::ErrorKind::internal, std::string("no error"));
  };
  usp::Tensor buf = d.empty(16);
  auto e1 = kind_of([&] { (void)c.isend(buf.data(), buf.nbytes(), n, 0); });
  check(e1.first == usp::ErrorKind::invalid_argument && has(e1.second, "peer " + std::to_string(n)),
        "isend to peer " + std::to_string(n) + " is rejected: " + e1.second);
  auto e2 = kind_of([&] { (void)c.irecv(buf.data(), buf.nbytes(), 0, -1); });
  check(e2.first == usp::ErrorKind::invalid_argument && has(e2.second, "tag -1"),
        "negative tag is rejected: " + e2.second);
}

void test_collectives(usp::Communicator& c, const Dev& d) {
  const int n = c.size(), me = c.rank();
  const std::size_t count = 3001;
  const std::string at =
      " on '" + c.name() + "' (rank " + std::to_string(me) + " of " + std::to_string(n) + ")";
  // alltoall: block j of my send goes to rank j, tagged (me, j)
  std::vector<float> h(count * static_cast<std::size_t>(n));
  for (int j = 0; j < n; ++j)
    for (std::size_t i = 0; i < count; ++i) h[j * count + i] = value(me, 10 + j, i);
  usp::Tensor send = usp::cuda::to_device(
      usp::Tensor::wrap(h.data(), {static_cast<std::int64_t>(h.size())}, usp::DType::f32), d.alloc);
  usp::Tensor recv = d.empty(h.size());
  c.alltoall(send.data(), recv.data(), count * sizeof(float));
  bool ok = true;
  for (int i = 0; i < n; ++i) ok = ok && holds(recv, i * count, count, i, 10 + me);
  check(ok, "alltoall" + at);
  // allgather
  usp::Tensor mine = d.make(count, me, 20);
  usp::Tensor all = d.empty(count * static_cast<std::size_t>(n));
  c.allgather(mine.data(), all.data(), mine.nbytes());
  ok = true;
  for (int i = 0; i < n; ++i) ok = ok && holds(all, i * count, count, i, 20);
  check(ok, "allgather" + at);
  // zero bytes
  c.alltoall(send.data(), recv.data(), 0);
  c.allgather(mine.data(), all.data(), 0);
  // in-place is refused with a message
  bool refused = false;
  try {
    c.allgather(all.data(), all.data(), mine.nbytes());
  } catch (const usp::Error& e) {
    refused = e.kind() == usp::ErrorKind::invalid_argument && has(e.what(), "overlap");
  }
  check(refused, "in-place allgather is refused" + at);
  c.barrier();
}

void test_split(usp::Communicator& world, const Dev& d) {
  const int n = world.size(), me = world.rank();
  // two groups (even / odd ranks) ordered by descending world rank
  std::unique_ptr<usp::Communicator> sub = world.split(me % 2, -me);
  const int expect_size = (n - me % 2 + 1) / 2;
  check(sub != nullptr && sub->size() == expect_size && sub->backend() == "nccl" &&
            sub->device() == usp::Device::cuda && sub->name() == "world/split",
        "split sizes and names (rank " + std::to_string(me) + ")");
  if (sub == nullptr) return;
  check(sub->rank() == expect_size - 1 - me / 2,
        "split orders ranks by key (rank " + std::to_string(me) + ")");
  test_collectives(*sub, d);
  test_p2p(*sub, d);
  std::unique_ptr<usp::Communicator> none = world.split(-1, 0);
  check(none == nullptr, "negative color joins no group");
}

// A receive nobody sends. With two or more ranks the wait times out (rank r waits for rank r + 1,
// which sends nothing) and says so. At world size 1 the only peer is the rank itself, and NCCL
// rejects a receive from itself without a matching send at once (an error, not a hang): then the
// error must still name rank, peer and operation. Either way the NCCL communicator is aborted.
void test_timeout(usp::Communicator& world, const Dev& d) {
  const int me = world.rank();
  std::unique_ptr<usp::Communicator> sub = world.split(0, me);
  sub->set_name("lonely");
  sub->set_timeout(std::chrono::milliseconds(400));
  const int peer = (sub->rank() + 1) % sub->size();
  usp::Tensor buf = d.empty(1024);
  const auto t0 = std::chrono::steady_clock::now();
  std::string msg = "no error";
  usp::ErrorKind kind = usp::ErrorKind::internal;
  try {
    usp::Request r = sub->irecv(buf.data(), buf.nbytes(), peer, 5);
    r.wait();
  } catch (const usp::Error& e) {
    kind = e.kind();
    msg = e.what();
  }
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const bool names_it = has(msg, "rank " + std::to_string(me)) &&
                        has(msg, "recv from rank " + std::to_string(peer)) && has(msg, "tag 5") &&
                        has(msg, "'lonely'");
  if (sub->size() > 1) {
    check(kind == usp::ErrorKind::timeout && names_it && has(msg, "timed out after 400 ms"),
          "unmatched receive times out with rank/peer/op: " + msg);
  } else {
    check((kind == usp::ErrorKind::timeout || kind == usp::ErrorKind::comm) && names_it,
          "unmatched receive from oneself fails with rank/peer/op: " + msg);
    if (me == 0) std::printf("world 1, unmatched receive from self: %s\n", msg.c_str());
  }
  check(s < 30.0, "the failure comes within the timeout (took " + std::to_string(s) + " s)");
  kind = usp::ErrorKind::internal;
  msg = "no error";
  try {
    usp::Request r = sub->isend(buf.data(), buf.nbytes(), peer, 6);
    r.wait();
  } catch (const usp::Error& e) {
    kind = e.kind();
    msg = e.what();
  }
  check(kind == usp::ErrorKind::comm && has(msg, "aborted"),
        "an aborted communicator refuses later operations: " + msg);
  sub.reset();
  world.barrier();  // the world is unaffected
}

// USP attention on the NCCL world vs the float64 reference, each rank checking its own shard.
void test_usp(usp::Communicator& world, int device) {
  const int n = world.size(), me = world.rank();
  const std::int64_t b = 1, h = 4, d = 64, s = 128 * n;
  const int ulysses = (n % 2 == 0) ? 2 : 1, ring = n / ulysses;
  std::mt19937 gen(20260 + static_cast<unsigned>(n));
  auto rnd = [&](const usp::Tensor::Dims& shape) {
    usp::Tensor x = usp::Tensor::empty(shape, usp::DType::f32);
    std::normal_distribution<float> dist(0.0f, 1.0f);
    for (std::int64_t i = 0; i < x.numel(); ++i) x.data_as<float>()[i] = dist(gen);
    return usp::to_dtype(x, usp::DType::f16);
  };
  const usp::Tensor q = rnd({b, s, h, d}), k = rnd({b, s, h, d}), v = rnd({b, s, h, d}),
                    dout = rnd({b, s, h, d});
  const double scale = 1.0 / std::sqrt(static_cast<double>(d));
  const auto fr = usp::reference::forward(q, k, v, usp::MaskMode::causal, scale);
  const auto br = usp::reference::backward(q, k, v, dout, usp::MaskMode::causal, scale);

  auto alloc = usp::cuda::make_allocator(device);
  auto kernel = usp::cuda::make_kernel(device, alloc.get());
  usp::UspConfig cfg;
  cfg.ring_type = usp::RingType::zigzag;
  cfg.ulysses = ulysses;
  cfg.ring = ring;
  cfg.causal = true;
  usp::UspAttention att(world, *kernel, *alloc, cfg);
  const usp::Layout layout = att.layout(s);
  const usp::MeshCoord mc = att.mesh().coord;
  auto local = [&](const usp::Tensor& global, int dim) {
    return usp::shard(layout, global, mc.ring, mc.ulysses, dim);
  };
  auto as_tensor = [](const std::vector<double>& x, const usp::Tensor::Dims& shape) {
    usp::Tensor t = usp::Tensor::empty(shape, usp::DType::f32);
    for (std::size_t i = 0; i < x.size(); ++i) t.data_as<float>()[i] = static_cast<float>(x[i]);
    return t;
  };
  const usp::Tensor ql = usp::cuda::to_device(local(q, 1), *alloc);
  const usp::Tensor kl = usp::cuda::to_device(local(k, 1), *alloc);
  const usp::Tensor vl = usp::cuda::to_device(local(v, 1), *alloc);
  const usp::Tensor dl = usp::cuda::to_device(local(dout, 1), *alloc);
  const usp::UspAttention::Output o = att.forward(ql, kl, vl);
  const usp::UspAttention::Grads g = att.backward(ql, kl, vl, o.out, o.lse, dl);

  auto err = [&](const usp::Tensor& got, const std::vector<double>& ref,
                 const usp::Tensor::Dims& shape, int dim) {
    const usp::Tensor want = local(as_tensor(ref, shape), dim);
    return usp::relative_error(usp::to_dtype(usp::cuda::to_host(got), usp::DType::f32), want);
  };
  const double e_out = err(o.out, fr.out, {b, s, h, d}, 1);
  const double e_lse = err(o.lse, fr.lse, {b, h, s}, 2);
  const double e_dq = err(g.dq, br.dq, {b, s, h, d}, 1);
  const double e_dk = err(g.dk, br.dk, {b, s, h, d}, 1);
  const double e_dv = err(g.dv, br.dv, {b, s, h, d}, 1);
  char line[256];
  std::snprintf(line, sizeof line,
                "USP %dx%d zigzag causal fp16 s=%lld on nccl: rel err out %.2e lse %.2e dq %.2e "
                "dk %.2e dv %.2e (rank %d)",
                ulysses, ring, static_cast<long long>(s), e_out, e_lse, e_dq, e_dk, e_dv, me);
  if (me == 0) std::printf("%s\n", line);
  const double tol = 1e-2;
  check(e_out <= tol && e_lse <= tol && e_dq <= tol && e_dk <= tol && e_dv <= tol, line);
}

}  // namespace

int main(int argc, char** argv) {
  usp::MpiSession mpi(&argc, &argv);
  bool conformance = false;
  for (int i = 1; i < argc; ++i)
    if (std::strcmp(argv[i], "--conformance") == 0) {
      conformance = true;
      for (int j = i; j + 1 < argc; ++j) argv[j] = argv[j + 1];
      --argc;
      break;
    }
  g_rank = mpi.rank();
  if (usp::cuda::device_count() == 0) {
    if (mpi.rank() == 0)
      std::printf("skipped: no GPU (%s)\n", usp::cuda::unavailable_reason().c_str());
    return 77;
  }
  if (!usp::cuda::nccl_compiled()) {
    if (mpi.rank() == 0)
      std::printf("skipped: built without NCCL (%s)\n",
                  usp::backend_unavailable_reason("nccl").c_str());
    return 77;
  }
  if (conformance) {
    try {
      return usp::test::run_nccl_conformance(mpi, argc, argv);
    } catch (const std::exception& e) {
      std::printf("rank %d: FAIL exception: %s\n", mpi.rank(), e.what());
      std::fflush(stdout);
      mpi.abort(1, e.what());
    }
  }
  const int device = mpi.rank() % usp::cuda::device_count();
  try {
    std::unique_ptr<usp::Communicator> world = usp::cuda::nccl_world();
    check(world->size() == mpi.size() && world->rank() == mpi.rank() &&
              world->backend() == "nccl" && world->device() == usp::Device::cuda,
          "nccl_world matches the MPI world");
    if (mpi.rank() == 0)
      std::printf("nccl world: %d rank(s), rank 0 on %s\n", world->size(),
                  usp::cuda::device_description(device).c_str());
    {
      auto alloc = usp::cuda::make_allocator(device);
      const Dev dev{*alloc};
      test_p2p(*world, dev);
      test_collectives(*world, dev);
      test_split(*world, dev);
      test_timeout(*world, dev);
    }
    test_usp(*world, device);
    world->barrier();
  } catch (const std::exception& e) {
    std::printf("rank %d: FAIL exception: %s\n", mpi.rank(), e.what());
    std::fflush(stdout);
    mpi.abort(1, e.what());
  }
  std::vector<int> all(static_cast<std::size_t>(mpi.size()));
  mpi.world().allgather(&g_failures, all.data(), sizeof(int));
  int total = 0;
  for (int f : all) total += f;
  if (mpi.rank() == 0)
    std::printf("nccl world %d: %d checks on rank 0, %d failed on all ranks\n", mpi.size(),
                g_checks, total);
  return total == 0 ? 0 : 1;
}
