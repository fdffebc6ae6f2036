#include "support/tolerance.hpp"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "usp/dtype.hpp"

namespace usp::test {

namespace {

float round_to(float x, DType t) {
  switch (t) {
    case DType::bf16:
      return bf16_to_f32(f32_to_bf16(x));
    case DType::f16:
      return f16_to_f32(f32_to_f16(x));
    default:
      return x;
  }
}

std::vector<float> floats(const Tensor& t) {
  const auto d = to_doubles(t);
  return {d.begin(), d.end()};
}

// Shapes and index helpers for q [b, sq, h, d], k/v [b, sk, hkv, d], lse [b, h, sq].
struct Shape {
  std::int64_t b, sq, sk, h, hkv, d;
  explicit Shape(const Tensor& q, const Tensor& k)
      : b(q.size(0)), sq(q.size(1)), sk(k.size(1)), h(q.size(2)), hkv(k.size(2)), d(q.size(3)) {}
  std::size_t qi(std::int64_t bi, std::int64_t i, std::int64_t hi) const {
    return static_cast<std::size_t>(((bi * sq + i) * h + hi) * d);
  }
  std::size_t ki(std::int64_t bi, std::int64_t j, std::int64_t hi) const {
    return static_cast<std::size_t>(((bi * sk + j) * hkv + hi / (h / hkv)) * d);
  }
};

float dot(const float* a, const float* b, std::int64_t n) {
  float s = 0;
  for (std::int64_t c = 0; c < n; ++c) s += a[c] * b[c];
  return s;
}

// One row's probabilities (rounded to t) into p; returns the row's lse in fp32.
float softmax_row(const Shape& sh, const std::vector<float>& q, const std::vector<float>& k,
                  std::int64_t bi, std::int64_t hi, std::int64_t i, std::int64_t a, std::int64_t n,
                  float scale, DType t, std::vector<float>& p) {
  if (n == a) return -std::numeric_limits<float>::infinity();
  float m = -std::numeric_limits<float>::infinity();
  for (std::int64_t j = a; j < n; ++j) {
    const auto js = static_cast<std::size_t>(j);
    p[js] = round_to(scale * dot(&q[sh.qi(bi, i, hi)], &k[sh.ki(bi, j, hi)], sh.d), t);
    m = std::max(m, p[js]);
  }
  float sum = 0;
  for (std::int64_t j = a; j < n; ++j)
    sum += p[static_cast<std::size_t>(j)] = std::exp(p[static_cast<std::size_t>(j)] - m);
  for (std::int64_t j = a; j < n; ++j)
    p[static_cast<std::size_t>(j)] = round_to(p[static_cast<std::size_t>(j)] / sum, t);
  return m + std::log(sum);
}

}  // namespace

NaiveForward naive_forward(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
                           float scale) {
  const Shape sh(q, k);
  const DType t = q.dtype();
  const auto qf = floats(q), kf = floats(k), vf = floats(v);
  NaiveForward r;
  r.out.assign(qf.size(), 0.0);
  r.lse.assign(static_cast<std::size_t>(sh.b * sh.h * sh.sq), 0.0);
  std::vector<float> p(static_cast<std::size_t>(sh.sk)), o(static_cast<std::size_t>(sh.d));
  for (std::int64_t bi = 0; bi < sh.b; ++bi)
    for (std::int64_t hi = 0; hi < sh.h; ++hi)
      for (std::int64_t i = 0; i < sh.sq; ++i) {
        const auto [a, n] = mask.keys(i, sh.sk);
        r.lse[static_cast<std::size_t>((bi * sh.h + hi) * sh.sq + i)] =
            softmax_row(sh, qf, kf, bi, hi, i, a, n, scale, t, p);
        std::fill(o.begin(), o.end(), 0.0f);
        for (std::int64_t j = a; j < n; ++j) {
          const float* vr = &vf[sh.ki(bi, j, hi)];
          for (std::int64_t c = 0; c < sh.d; ++c)
            o[static_cast<std::size_t>(c)] += p[static_cast<std::size_t>(j)] * vr[c];
        }
        for (std::int64_t c = 0; c < sh.d; ++c)
          r.out[sh.qi(bi, i, hi) + static_cast<std::size_t>(c)] =
              round_to(o[static_cast<std::size_t>(c)], t);
      }
  return r;
}

NaiveBackward naive_backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dout,
                             const BlockMask& mask, float scale) {
  const Shape sh(q, k);
  const DType t = q.dtype();
  const auto qf = floats(q), kf = floats(k), vf = floats(v), df = floats(dout);
  std::vector<float> dq(qf.size(), 0.0f), dk(kf.size(), 0.0f), dv(vf.size(), 0.0f);
  std::vector<float> p(static_cast<std::size_t>(sh.sk)), dp(static_cast<std::size_t>(sh.sk)),
      o(static_cast<std::size_t>(sh.d));
  for (std::int64_t bi = 0; bi < sh.b; ++bi)
    for (std::int64_t hi = 0; hi < sh.h; ++hi)
      for (std::int64_t i = 0; i < sh.sq; ++i) {
        const auto [a, n] = mask.keys(i, sh.sk);
        if (n == a) continue;
        softmax_row(sh, qf, kf, bi, hi, i, a, n, scale, t, p);
        const std::size_t qi = sh.qi(bi, i, hi);
        // D = dout · out, with out computed (and rounded) as the forward does.
        std::fill(o.begin(), o.end(), 0.0f);
        for (std::int64_t j = a; j < n; ++j) {
          const auto js = static_cast<std::size_t>(j);
          const float* vr = &vf[sh.ki(bi, j, hi)];
          for (std::int64_t c = 0; c < sh.d; ++c) o[static_cast<std::size_t>(c)] += p[js] * vr[c];
          dp[js] = round_to(dot(&df[qi], vr, sh.d), t);
        }
        float D = 0;
        for (std::int64_t c = 0; c < sh.d; ++c)
          D += df[qi + static_cast<std::size_t>(c)] * round_to(o[static_cast<std::size_t>(c)], t);
        for (std::int64_t j = a; j < n; ++j) {
          const auto js = static_cast<std::size_t>(j);
          const float ds = round_to(p[js] * (dp[js] - D) * scale, t);
          const std::size_t kj = sh.ki(bi, j, hi);
          for (std::int64_t c = 0; c < sh.d; ++c) {
            const auto cs = static_cast<std::size_t>(c);
            dq[qi + cs] += ds * kf[kj + cs];
            dk[kj + cs] += ds * qf[qi + cs];
            dv[kj + cs] += p[js] * df[qi + cs];
          }
        }
      }
  return {{dq.begin(), dq.end()}, {dk.begin(), dk.end()}, {dv.begin(), dv.end()}};
}

::testing::AssertionResult within(double err, double naive_err, const Tolerance& tol) {
  const double bound = std::min(tol.cap, tol.k * naive_err + tol.floor);
  if (err <= bound) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure()
         << "error " << err << " exceeds " << bound << " = min(cap " << tol.cap << ", " << tol.k
         << " x naive same-dtype error " << naive_err << " + floor " << tol.floor << ")";
}

double grad_error(const std::vector<double>& x, const std::vector<double>& ref, double floor) {
  double num = 0, den = 0;
  for (std::size_t i = 0; i < ref.size(); ++i) {
    num += (x[i] - ref[i]) * (x[i] - ref[i]);
    den += ref[i] * ref[i];
  }
  if (num == 0) return 0;
  return std::sqrt(num) / std::max(std::sqrt(den), floor);
}

double norm(const std::vector<double>& x) {
  double s = 0;
  for (double v : x) s += v * v;
  return std::sqrt(s);
}

}  // namespace usp::test
