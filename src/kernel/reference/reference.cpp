// The float64 naive oracle: scores, softmax and gradients computed directly from the definition.
#include "kernel/reference/reference.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "kernel/checks.hpp"
#include "usp/error.hpp"
#include "usp/kernel.hpp"

namespace usp::reference {

namespace {

struct Dims {
  std::int64_t b, sq, sk, h, hkv, d;
  std::int64_t group() const { return h / hkv; }
  std::size_t qi(std::int64_t bi, std::int64_t i, std::int64_t hi) const {
    return static_cast<std::size_t>(((bi * sq + i) * h + hi) * d);
  }
  std::size_t ki(std::int64_t bi, std::int64_t j, std::int64_t hk) const {
    return static_cast<std::size_t>(((bi * sk + j) * hkv + hk) * d);
  }
  std::size_t li(std::int64_t bi, std::int64_t hi, std::int64_t i) const {
    return static_cast<std::size_t>((bi * h + hi) * sq + i);
  }
};

Dims dims_of(const Tensor& q, const Tensor& k) {
  return {q.size(0), q.size(1), k.size(1), q.size(2), k.size(2), q.size(3)};
}

// Which of the sk keys query i sees: straight from the rule (a local mode's indices, or the
// attention mask at the rows' global positions), key by key.
void visible_keys(const BlockMask& mask, std::int64_t i, std::int64_t sk, std::vector<char>& vis) {
  vis.assign(static_cast<std::size_t>(sk), 0);
  for (std::int64_t j = 0; j < sk; ++j) {
    bool seen = true;
    if (mask.general()) {
      const auto [lo, hi] = mask.attention().key_positions(mask.q_positions().at(i));
      const std::int64_t kp = mask.k_positions().at(j);
      seen = lo <= kp && kp <= hi;
    } else if (mask.mode() == MaskMode::causal) {
      seen = j <= i;
    } else if (mask.mode() == MaskMode::causal_strict) {
      seen = j < i;
    }
    vis[static_cast<std::size_t>(j)] = seen ? 1 : 0;
  }
}

double dot(const double* a, const double* b, std::int64_t n) {
  double s = 0;
  for (std::int64_t i = 0; i < n; ++i) s += a[i] * b[i];
  return s;
}

// Softmax probabilities of row (bi, hi, i) over its visible keys into p (0 elsewhere); returns
// lse (-inf when it sees none).
double softmax_row(const Dims& dm, const std::vector<double>& q, const std::vector<double>& k,
                   std::int64_t bi, std::int64_t hi, std::int64_t i, const std::vector<char>& vis,
                   double scale, std::vector<double>& p) {
  std::fill(p.begin(), p.end(), 0.0);
  const std::int64_t hk = hi / dm.group();
  const double* qr = &q[dm.qi(bi, i, hi)];
  double m = -std::numeric_limits<double>::infinity();
  bool any = false;
  for (std::int64_t j = 0; j < dm.sk; ++j) {
    if (!vis[static_cast<std::size_t>(j)]) continue;
    p[static_cast<std::size_t>(j)] = scale * dot(qr, &k[dm.ki(bi, j, hk)], dm.d);
    m = std::max(m, p[static_cast<std::size_t>(j)]);
    any = true;
  }
  if (!any) return -std::numeric_limits<double>::infinity();
  double sum = 0;
  for (std::int64_t j = 0; j < dm.sk; ++j) {
    if (!vis[static_cast<std::size_t>(j)]) continue;
    p[static_cast<std::size_t>(j)] = std::exp(p[static_cast<std::size_t>(j)] - m);
    sum += p[static_cast<std::size_t>(j)];
  }
  for (std::int64_t j = 0; j < dm.sk; ++j) p[static_cast<std::size_t>(j)] /= sum;
  return m + std::log(sum);
}

void check_host(const Tensor& t, const char* name) {
  USP_CHECK_ARG(t.device() == Device::host, "reference: ", name, " must be a host tensor, got ",
                device_name(t.device()));
}

}  // namespace

ForwardResult forward(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
                      double scale) {
  detail::check_qkv(q, k, v, mask);
  check_host(q, "q");
  const Dims dm = dims_of(q, k);
  const auto qd = to_doubles(q), kd = to_doubles(k), vd = to_doubles(v);
  ForwardResult r;
  r.out.assign(qd.size(), 0.0);
  r.lse.assign(static_cast<std::size_t>(dm.b * dm.h * dm.sq), 0.0);
  std::vector<double> p(static_cast<std::size_t>(dm.sk));
  std::vector<char> vis;
  for (std::int64_t bi = 0; bi < dm.b; ++bi)
    for (std::int64_t hi = 0; hi < dm.h; ++hi) {
      const std::int64_t hk = hi / dm.group();
      for (std::int64_t i = 0; i < dm.sq; ++i) {
        visible_keys(mask, i, dm.sk, vis);
        r.lse[dm.li(bi, hi, i)] = softmax_row(dm, qd, kd, bi, hi, i, vis, scale, p);
        double* o = &r.out[dm.qi(bi, i, hi)];
        for (std::int64_t j = 0; j < dm.sk; ++j) {
          if (!vis[static_cast<std::size_t>(j)]) continue;
          const double* vr = &vd[dm.ki(bi, j, hk)];
          const double pj = p[static_cast<std::size_t>(j)];
          for (std::int64_t c = 0; c < dm.d; ++c) o[c] += pj * vr[c];
        }
      }
    }
  return r;
}

BackwardResult backward(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& dout,
                        const BlockMask& mask, double scale) {
  detail::check_qkv(q, k, v, mask);
  check_host(q, "q");
  USP_CHECK_ARG(dout.shape() == q.shape(), "reference: dout must have q's shape ", q.describe(),
                ", got ", dout.describe());
  check_host(dout, "dout");
  const Dims dm = dims_of(q, k);
  const auto qd = to_doubles(q), kd = to_doubles(k), vd = to_doubles(v), dod = to_doubles(dout);
  BackwardResult r;
  r.dq.assign(qd.size(), 0.0);
  r.dk.assign(kd.size(), 0.0);
  r.dv.assign(vd.size(), 0.0);
  std::vector<double> p(static_cast<std::size_t>(dm.sk)), dp(static_cast<std::size_t>(dm.sk));
  std::vector<char> vis;
  for (std::int64_t bi = 0; bi < dm.b; ++bi)
    for (std::int64_t hi = 0; hi < dm.h; ++hi) {
      const std::int64_t hk = hi / dm.group();
      for (std::int64_t i = 0; i < dm.sq; ++i) {
        visible_keys(mask, i, dm.sk, vis);
        // No visible key: the row's output is the constant 0.
        if (std::find(vis.begin(), vis.end(), 1) == vis.end()) continue;
        softmax_row(dm, qd, kd, bi, hi, i, vis, scale, p);
        const double* qr = &qd[dm.qi(bi, i, hi)];
        const double* dor = &dod[dm.qi(bi, i, hi)];
        // dP_ij = dout_i · v_j and D_i = Σ_j P_ij dP_ij (= dout_i · out_i).
        double D = 0;
        for (std::int64_t j = 0; j < dm.sk; ++j) {
          if (!vis[static_cast<std::size_t>(j)]) continue;
          const auto js = static_cast<std::size_t>(j);
          dp[js] = dot(dor, &vd[dm.ki(bi, j, hk)], dm.d);
          D += p[js] * dp[js];
        }
        double* dqr = &r.dq[dm.qi(bi, i, hi)];
        for (std::int64_t j = 0; j < dm.sk; ++j) {
          if (!vis[static_cast<std::size_t>(j)]) continue;
          const auto js = static_cast<std::size_t>(j);
          const double ds = p[js] * (dp[js] - D) * scale;  // dL/d(q_i·k_j)
          const std::size_t kj = dm.ki(bi, j, hk);
          const double* kr = &kd[kj];
          double* dkr = &r.dk[kj];
          double* dvr = &r.dv[kj];
          for (std::int64_t c = 0; c < dm.d; ++c) {
            dqr[c] += ds * kr[c];
            dkr[c] += ds * qr[c];
            dvr[c] += p[js] * dor[c];
          }
        }
      }
    }
  return r;
}

}  // namespace usp::reference
