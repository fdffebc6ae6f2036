// GPU correctness of the CUDA backend against the float64 oracle (usp::reference):
//   usp_cuda_tests           every mask mode × dtype (fp16, bf16) × head size (16, 32, 64, 128),
//                            forward (out, lse) of BOTH forwards (wmma and mma) and backward
//                            (dq, dk, dv) of BOTH backwards from each forward's out/lse (FAIL
//                            lines name the pair: "[mma forward, wmma backward]"), GQA,
//                            ragged lengths, strided views, fp32 out, accumulate,
//                            merge/fill/copy/add;
//   usp_cuda_tests --comm    the cuda-local communicator (ring, alltoall, allgather, split).
// Without a GPU it prints "skipped: no GPU" and exits 77 (CTest: skipped). Exit 1 on any failure.
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "kernel/reference/reference.hpp"
#include "usp/backend.hpp"
#include "usp/cuda.hpp"
#include "usp/error.hpp"
#include "usp/kernel.hpp"
#include "usp/tensor.hpp"

namespace {

std::atomic<int> g_failures{0};
std::atomic<int> g_checks{0};
std::string g_current;  // the case running, named when an exception ends the run
constexpr double kTol = 1e-2;

void check(bool ok, const std::string& what) {
  ++g_checks;
  if (!ok) {
    ++g_failures;
    std::printf("FAIL %s\n", what.c_str());
  }
}

usp::Tensor random_host(const usp::Tensor::Dims& shape, usp::DType t, std::mt19937& g) {
  usp::Tensor f = usp::Tensor::empty(shape, usp::DType::f32);
  std::normal_distribution<float> n(0.0f, 1.0f);
  float* p = f.data_as<float>();
  for (std::int64_t i = 0; i < f.numel(); ++i) p[i] = n(g);
  return usp::to_dtype(f, t);
}

// Finite entries only (rows that see no key have lse = -inf in both).
double lse_error(const std::vector<double>& got, const std::vector<double>& ref, bool* inf_ok) {
  double num = 0, den = 0;
  *inf_ok = true;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    if (std::isinf(ref[i])) {
      *inf_ok = *inf_ok && std::isinf(got[i]) && got[i] < 0;
      continue;
    }
    num += (got[i] - ref[i]) * (got[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

struct Case {
  usp::DType dtype;
  int d;
  usp::MaskMode mask;
  int b, h, hkv, sq, sk;
  bool strided;  // q/k/v/dout/out as slices along the sequence of bigger tensors; out fp32
};

// One implementation under test: a forward (usp::cuda::make_kernel(0, nullptr, name)) or a
// backward (make_kernel(0, nullptr, "", name)).
struct Impl {
  std::string name;
  std::unique_ptr<usp::AttentionKernel> kernel;
};

// Backward from a forward's out/lse with accumulate on odd seeds: dq/dk/dv start at 1, must end
// at 1 + grad.
void run_backward(usp::AttentionKernel& kern, usp::Allocator& dev, const Case& c,
                  const std::string& name, const usp::Tensor& q, const usp::Tensor& k,
                  const usp::Tensor& v, const usp::Tensor& out, const usp::Tensor& lse,
                  const usp::Tensor& dout, double scale, const usp::reference::BackwardResult& rb,
                  unsigned seed) {
  auto dq = usp::Tensor::empty({c.b, c.sq, c.h, c.d}, usp::DType::f32, dev);
  auto dk = usp::Tensor::empty({c.b, c.sk, c.hkv, c.d}, usp::DType::f32, dev);
  auto dv = usp::Tensor::empty({c.b, c.sk, c.hkv, c.d}, usp::DType::f32, dev);
  const bool acc = (seed % 2) == 1;
  for (auto* t : {&dq, &dk, &dv}) {
    kern.fill_zero(*t);
    if (acc) {
      auto one = usp::Tensor::empty(t->shape(), usp::DType::f32);
      float* p = one.data_as<float>();
      for (std::int64_t i = 0; i < one.numel(); ++i) p[i] = 1.0f;
      auto oned = usp::cuda::to_device(one, dev);
      kern.add(oned, *t);
    }
  }
  kern.backward(q, k, v, out, lse, dout, c.mask, static_cast<float>(scale), dq, dk, dv, acc);
  const char* names[] = {"dq", "dk", "dv"};
  const std::vector<double>* refs[] = {&rb.dq, &rb.dk, &rb.dv};
  usp::Tensor* got[] = {&dq, &dk, &dv};
  for (int i = 0; i < 3; ++i) {
    auto gd = usp::to_doubles(usp::cuda::to_host(*got[i]));
    if (acc)
      for (auto& x : gd) x -= 1.0;
    const double e = usp::relative_error(gd, *refs[i]);
    check(e <= kTol, name + ": backward " + names[i] + " rel. error " + std::to_string(e) +
                         (acc ? " (accumulate)" : ""));
  }
}

void run_case(usp::AttentionKernel& kern, const std::vector<Impl>& fwds,
              const std::vector<Impl>& bwds, usp::Allocator& dev, const Case& c, unsigned seed) {
  std::mt19937 g(seed);
  const std::string name = std::string(usp::dtype_name(c.dtype)) + " d" + std::to_string(c.d) +
                           " " + usp::mask_name(c.mask) + " b" + std::to_string(c.b) + " h" +
                           std::to_string(c.h) + "/" + std::to_string(c.hkv) + " sq" +
                           std::to_string(c.sq) + " sk" + std::to_string(c.sk) +
                           (c.strided ? " strided" : "") + " seed " + std::to_string(seed);
  const int pad = c.strided ? 5 : 0;
  auto q_h = random_host({c.b, c.sq, c.h, c.d}, c.dtype, g);
  auto k_h = random_host({c.b, c.sk, c.hkv, c.d}, c.dtype, g);
  auto v_h = random_host({c.b, c.sk, c.hkv, c.d}, c.dtype, g);
  auto do_h = random_host({c.b, c.sq, c.h, c.d}, c.dtype, g);
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.d));

  // Device operands, optionally as views into larger buffers (rows [pad, pad + s)).
  auto place = [&](const usp::Tensor& host, std::int64_t s) {
    if (!c.strided) return usp::cuda::to_device(host, dev);
    usp::Tensor::Dims big = host.shape();
    big[1] = s + 2 * pad;
    usp::Tensor bigh = random_host(big, host.dtype(), g);
    usp::Tensor view = bigh.slice(1, pad, s);
    usp::copy_into(host, view);
    return usp::cuda::to_device(bigh, dev).slice(1, pad, s);
  };
  auto q = place(q_h, c.sq), k = place(k_h, c.sk), v = place(v_h, c.sk);
  auto dout = place(do_h, c.sq);
  auto ref = usp::reference::forward(q_h, k_h, v_h, c.mask, scale);
  auto rb = usp::reference::backward(q_h, k_h, v_h, do_h, c.mask, scale);
  for (const Impl& fw : fwds) {
    g_current = fw.name + " forward, " + name;
    // Strided cases write an fp32 out into a view of a larger buffer (rows [pad, pad + sq)).
    usp::Tensor out_buf = usp::Tensor::empty({c.b, c.sq + 2 * pad, c.h, c.d},
                                             c.strided ? usp::DType::f32 : c.dtype, dev);
    usp::Tensor out = out_buf.slice(1, pad, c.sq);
    usp::Tensor lse = usp::Tensor::empty({c.b, c.h, c.sq}, usp::DType::f32, dev);
    if (c.strided) kern.fill_neg_inf(out_buf);  // the rows around the view must stay -inf
    fw.kernel->forward(q, k, v, c.mask, static_cast<float>(scale), out, lse);
    const std::string fname = "[" + fw.name + " forward] " + name;
    if (c.strided) {
      auto all = usp::to_doubles(usp::cuda::to_host(out_buf));
      const std::size_t row = static_cast<std::size_t>(c.h) * c.d;
      const std::size_t rows_per_b = static_cast<std::size_t>(c.sq) + 2 * pad;
      std::int64_t touched = 0;
      for (std::size_t i = 0; i < all.size(); ++i) {
        const std::size_t r = (i / row) % rows_per_b;
        const bool outside = r < static_cast<std::size_t>(pad) || r >= rows_per_b - pad;
        if (outside && !(std::isinf(all[i]) && all[i] < 0)) ++touched;
      }
      check(touched == 0, fname + ": forward wrote " + std::to_string(touched) +
                              " elements outside its out view");
    }
    const double e_out = usp::relative_error(usp::to_doubles(usp::cuda::to_host(out)), ref.out);
    bool inf_ok = true;
    const double e_lse = lse_error(usp::to_doubles(usp::cuda::to_host(lse)), ref.lse, &inf_ok);
    check(e_out <= kTol, fname + ": forward out rel. error " + std::to_string(e_out));
    check(e_lse <= kTol && inf_ok, fname + ": forward lse rel. error " + std::to_string(e_lse) +
                                       (inf_ok ? "" : " (a -inf row differs)"));
    for (const Impl& bw : bwds) {
      g_current = fw.name + " forward, " + bw.name + " backward, " + name;
      run_backward(*bw.kernel, dev, c,
                   "[" + fw.name + " forward, " + bw.name + " backward] " + name, q, k, v, out, lse,
                   dout, scale, rb, seed);
    }
  }
}

void test_elementwise(usp::AttentionKernel& kern, usp::Allocator& dev) {
  std::mt19937 g(7);
  const int b = 2, s = 37, h = 3, d = 16;
  auto oa = random_host({b, s, h, d}, usp::DType::f32, g);
  auto ob = random_host({b, s, h, d}, usp::DType::bf16, g);
  auto la = random_host({b, h, s}, usp::DType::f32, g);
  auto lb = random_host({b, h, s}, usp::DType::f32, g);
  la.data_as<float>()[0] = -INFINITY;  // one row empty in the accumulator
  lb.data_as<float>()[1] = -INFINITY;  // one row empty in the partial
  auto oad = usp::cuda::to_device(oa, dev), obd = usp::cuda::to_device(ob, dev);
  auto lad = usp::cuda::to_device(la, dev), lbd = usp::cuda::to_device(lb, dev);
  kern.merge(oad, lad, obd, lbd);
  auto o = usp::to_doubles(usp::cuda::to_host(oad));
  auto l = usp::to_doubles(usp::cuda::to_host(lad));
  auto A = usp::to_doubles(oa), B = usp::to_doubles(ob), LA = usp::to_doubles(la),
       LB = usp::to_doubles(lb);
  std::vector<double> eo(A.size()), el(LA.size());
  for (int bi = 0; bi < b; ++bi)
    for (int hi = 0; hi < h; ++hi)
      for (int si = 0; si < s; ++si) {
        const std::size_t li = (static_cast<std::size_t>(bi) * h + hi) * s + si;
        const double x = LA[li], y = LB[li];
        const double m = std::max(x, y);
        const double wa = std::isinf(x) ? 0 : std::exp(x - m),
                     wb = std::isinf(y) ? 0 : std::exp(y - m);
        el[li] = m + std::log(wa + wb);
        for (int di = 0; di < d; ++di) {
          const std::size_t oi = ((static_cast<std::size_t>(bi) * s + si) * h + hi) * d + di;
          eo[oi] = (wa * A[oi] + wb * B[oi]) / (wa + wb);
        }
      }
  check(usp::relative_error(o, eo) < 1e-5, "merge out");
  check(usp::relative_error(l, el) < 1e-5, "merge lse");

  // fill_neg_inf on a strided view, copy with conversion.
  auto t = usp::Tensor::empty({b, h, s}, usp::DType::f32, dev);
  kern.fill_zero(t);
  auto view = t.slice(2, 3, 10);
  kern.fill_neg_inf(view);
  auto th = usp::to_doubles(usp::cuda::to_host(t));
  int ninf = 0;
  for (double x : th) ninf += std::isinf(x) ? 1 : 0;
  check(ninf == b * h * 10, "fill_neg_inf on a view: " + std::to_string(ninf) + " -inf entries");
  auto c16 = usp::Tensor::empty({b, s, h, d}, usp::DType::f16, dev);
  kern.copy(oad, c16);
  check(usp::relative_error(usp::to_doubles(usp::cuda::to_host(c16)), o) < 1e-3, "copy fp32→fp16");
}

// The mma backward writes every dq/dk/dv element from one lane with a fixed summation order (no
// atomics): two runs give the same bits.
void test_deterministic(usp::Allocator& dev) {
  auto kern = usp::cuda::make_kernel(0, nullptr, "mma", "mma");
  std::mt19937 g(4242);
  const int b = 2, h = 4, hkv = 2, s = 300, d = 64;
  auto q = usp::cuda::to_device(random_host({b, s, h, d}, usp::DType::bf16, g), dev);
  auto k = usp::cuda::to_device(random_host({b, s, hkv, d}, usp::DType::bf16, g), dev);
  auto v = usp::cuda::to_device(random_host({b, s, hkv, d}, usp::DType::bf16, g), dev);
  auto dout = usp::cuda::to_device(random_host({b, s, h, d}, usp::DType::bf16, g), dev);
  auto out = usp::Tensor::empty({b, s, h, d}, usp::DType::bf16, dev);
  auto lse = usp::Tensor::empty({b, h, s}, usp::DType::f32, dev);
  const float scale = 0.125f;
  kern->forward(q, k, v, usp::MaskMode::causal, scale, out, lse);
  std::vector<double> first[3];
  for (int run = 0; run < 2; ++run) {
    auto dq = usp::Tensor::empty({b, s, h, d}, usp::DType::f32, dev);
    auto dk = usp::Tensor::empty({b, s, hkv, d}, usp::DType::f32, dev);
    auto dv = usp::Tensor::empty({b, s, hkv, d}, usp::DType::f32, dev);
    kern->backward(q, k, v, out, lse, dout, usp::MaskMode::causal, scale, dq, dk, dv, false);
    usp::Tensor* got[] = {&dq, &dk, &dv};
    for (int i = 0; i < 3; ++i) {
      auto x = usp::to_doubles(usp::cuda::to_host(*got[i]));
      if (run == 0) {
        first[i] = std::move(x);
      } else {
        check(x == first[i], std::string("mma backward is deterministic: ") +
                                 (i == 0   ? "dq"
                                  : i == 1 ? "dk"
                                           : "dv") +
                                 " equal in two runs");
      }
    }
  }
}

int test_kernels() {
  auto kern = usp::make_kernel("cuda-local");
  auto dev = usp::make_allocator("cuda-local");
  std::vector<Impl> fwds, bwds;
  for (const char* f : {"wmma", "mma"}) {
    fwds.push_back({f, usp::cuda::make_kernel(0, nullptr, f, "wmma")});
    bwds.push_back({f, usp::cuda::make_kernel(0, nullptr, "wmma", f)});
  }
  std::printf(
      "forwards and backwards under test: wmma, mma (defaults from USP_CUDA_FWD / USP_CUDA_BWD: "
      "%s / %s; kernel %s)\n",
      usp::cuda::default_forward().c_str(), usp::cuda::default_backward().c_str(),
      kern->name().c_str());
  unsigned seed = 1000;
  for (usp::DType t : {usp::DType::f16, usp::DType::bf16})
    for (int d : {16, 32, 64, 128})
      for (usp::MaskMode m :
           {usp::MaskMode::none, usp::MaskMode::causal, usp::MaskMode::causal_strict}) {
        const bool causal = m != usp::MaskMode::none;
        run_case(*kern, fwds, bwds, *dev, {t, d, m, 2, 4, 2, 100, causal ? 100 : 150, false},
                 ++seed);
        run_case(*kern, fwds, bwds, *dev, {t, d, m, 1, 2, 1, 64, 64, true}, ++seed);
      }
  // Longer: several tiles in both directions, MHA.
  const auto f16 = usp::DType::f16, bf16 = usp::DType::bf16;
  const auto none = usp::MaskMode::none, causal = usp::MaskMode::causal,
             strict = usp::MaskMode::causal_strict;
  run_case(*kern, fwds, bwds, *dev, {f16, 128, causal, 1, 2, 2, 333, 333, false}, 77);
  run_case(*kern, fwds, bwds, *dev, {bf16, 64, none, 1, 8, 1, 17, 300, true}, 78);
  // GQA over several query tiles per head (the dK/dV pass walks every head of a group), ragged.
  run_case(*kern, fwds, bwds, *dev, {bf16, 64, causal, 2, 4, 2, 300, 300, false}, 85);
  run_case(*kern, fwds, bwds, *dev, {f16, 16, none, 1, 4, 1, 200, 170, true}, 86);
  // Edges: one query and one key that it may not see (out 0, lse -inf everywhere); a causal
  // diagonal whose rows end 2 past a 128-row tile, and more queries than keys without a mask; tails
  // of both tiles; a long key stream (16 tiles) for few queries; a strided causal_strict run over
  // several query blocks.
  run_case(*kern, fwds, bwds, *dev, {f16, 64, strict, 1, 2, 2, 1, 1, false}, 79);
  run_case(*kern, fwds, bwds, *dev, {bf16, 128, causal, 1, 3, 1, 130, 130, false}, 80);
  run_case(*kern, fwds, bwds, *dev, {bf16, 128, none, 1, 3, 1, 130, 70, false}, 84);
  run_case(*kern, fwds, bwds, *dev, {f16, 32, none, 2, 2, 2, 65, 129, true}, 81);
  run_case(*kern, fwds, bwds, *dev, {f16, 128, none, 1, 1, 1, 3, 1000, false}, 82);
  run_case(*kern, fwds, bwds, *dev, {bf16, 16, strict, 1, 2, 1, 200, 200, true}, 83);
  test_elementwise(*kern, *dev);
  g_current = "determinism check";
  test_deterministic(*dev);
  // Rejections are readable errors.
  try {
    auto q = usp::Tensor::empty({1, 8, 1, 48}, usp::DType::f16, *dev);
    auto o = usp::Tensor::empty({1, 8, 1, 48}, usp::DType::f16, *dev);
    auto l = usp::Tensor::empty({1, 1, 8}, usp::DType::f32, *dev);
    kern->forward(q, q, q, usp::MaskMode::none, 1.0f, o, l);
    check(false, "head size 48 must be rejected");
  } catch (const usp::Error& e) {
    check(e.kind() == usp::ErrorKind::unsupported || e.kind() == usp::ErrorKind::invalid_argument,
          std::string("head size 48 error kind: ") + e.what());
  }
  return 0;
}

void test_comm() {
  const int n = 4;
  const std::size_t count = 1000;
  usp::cuda::run_local(n, [&](usp::Communicator& c) {
    auto dev = usp::cuda::make_allocator(0);
    const int me = c.rank();
    std::vector<float> mine(count);
    for (std::size_t i = 0; i < count; ++i) mine[i] = static_cast<float>(me * 100000 + i);
    auto src = usp::cuda::to_device(
        usp::Tensor::wrap(mine.data(), {static_cast<std::int64_t>(count)}, usp::DType::f32), *dev);
    auto dst = usp::Tensor::empty({static_cast<std::int64_t>(count)}, usp::DType::f32, *dev);
    // ring: send to next, receive from previous; wait on the send first (any order must work)
    auto s = c.isend(src.data(), src.nbytes(), (me + 1) % n, 3);
    auto r = c.irecv(dst.data(), dst.nbytes(), (me + n - 1) % n, 3);
    s.wait();
    r.wait();
    auto got = usp::cuda::to_host(dst);
    const int prev = (me + n - 1) % n;
    bool ok = true;
    for (std::size_t i = 0; i < count; ++i)
      ok = ok && got.data_as<float>()[i] == static_cast<float>(prev * 100000 + i);
    check(ok, "cuda-local ring data on rank " + std::to_string(me));
    // allgather and alltoall
    auto all = usp::Tensor::empty({n * static_cast<std::int64_t>(count)}, usp::DType::f32, *dev);
    c.allgather(src.data(), all.data(), src.nbytes());
    auto ah = usp::cuda::to_host(all);
    ok = true;
    for (int j = 0; j < n; ++j)
      ok = ok && ah.data_as<float>()[j * count + 5] == static_cast<float>(j * 100000 + 5);
    check(ok, "cuda-local allgather on rank " + std::to_string(me));
    auto a2a = usp::Tensor::empty({n * static_cast<std::int64_t>(count)}, usp::DType::f32, *dev);
    c.alltoall(all.data(), a2a.data(), count * sizeof(float));
    // block j of `all` on every rank is rank j's data, so after alltoall block i is rank me's
    auto th = usp::cuda::to_host(a2a);
    ok = true;
    for (int j = 0; j < n; ++j)
      ok = ok && th.data_as<float>()[j * count + 7] == static_cast<float>(me * 100000 + 7);
    check(ok, "cuda-local alltoall on rank " + std::to_string(me));
    auto sub = c.split(me % 2, me);
    check(sub != nullptr && sub->size() == n / 2 && sub->rank() == me / 2 &&
              sub->device() == usp::Device::cuda,
          "cuda-local split on rank " + std::to_string(me));
    sub->barrier();
  });
}

}  // namespace

int main(int argc, char** argv) {
  const bool comm = argc > 1 && std::strcmp(argv[1], "--comm") == 0;
  if (usp::cuda::device_count() == 0) {
    std::printf("skipped: no GPU (%s)\n", usp::cuda::unavailable_reason().c_str());
    return 77;
  }
  std::printf("device: %s\n", usp::cuda::device_description(0).c_str());
  try {
    if (comm)
      test_comm();
    else
      test_kernels();
  } catch (const std::exception& e) {
    std::printf("FAIL: exception: %s (during: %s)\n", e.what(), g_current.c_str());
    return 1;
  }
  std::printf("%s: %d checks, %d failed\n", comm ? "cuda-local comm" : "cuda kernel",
              g_checks.load(), g_failures.load());
  return g_failures == 0 ? 0 : 1;
}
