// The kernel's helpers over whole tensors: merge of partial results, fills, copy and add.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>

#include "kernel/cpu/cpu_kernel.hpp"
#include "usp/error.hpp"
#include "util/dims.hpp"
#include "util/rows.hpp"

namespace usp::cpu {

namespace {

using usp::detail::dims_str;

void check_host(const Tensor& t, const char* op, const char* name) {
  USP_CHECK_ARG(t.defined(), op, ": ", name, " is undefined");
  USP_CHECK_ARG(t.device() == Device::host, op, ": ", name, " must be a host tensor, got ",
                device_name(t.device()));
}

void check_same_shape(const Tensor& a, const char* an, const Tensor& b, const char* bn,
                      const char* op) {
  USP_CHECK_ARG(a.shape() == b.shape(), op, ": ", an, " shape ", dims_str(a.shape()),
                " must equal ", bn, " shape ", dims_str(b.shape()));
}

// Calls fn(ptr, n, stride) for every row of t (last dimension).
template <class Fn>
void for_rows(const Tensor& t, Fn&& fn) {
  const int last = t.dim() - 1;
  detail::for_each_row(t.shape(), [&](const auto& idx) {
    fn(static_cast<char*>(t.data()) + detail::byte_offset(t, idx), t.size(last), t.stride(last));
  });
}

}  // namespace

void CpuKernel::merge(Tensor& out, Tensor& lse, const Tensor& out_b, const Tensor& lse_b) {
  const char* op = "merge";
  check_host(out, op, "out");
  check_host(lse, op, "lse");
  check_host(out_b, op, "out_b");
  check_host(lse_b, op, "lse_b");
  USP_CHECK_ARG(out.dim() == 4, "merge: out: expected 4 dims [b, s, h, d], got ",
                dims_str(out.shape()));
  USP_CHECK_ARG(out.dtype() == DType::f32, "merge: out must be an fp32 accumulator, got ",
                dtype_name(out.dtype()));
  USP_CHECK_ARG(lse.dtype() == DType::f32 && lse_b.dtype() == DType::f32,
                "merge: lse and lse_b must be fp32, got ", dtype_name(lse.dtype()), " and ",
                dtype_name(lse_b.dtype()));
  const Tensor::Dims lse_shape{out.size(0), out.size(2), out.size(1)};
  USP_CHECK_ARG(lse.shape() == lse_shape,
                "merge: lse: expected shape [b, h, s] = ", dims_str(lse_shape), ", got ",
                dims_str(lse.shape()));
  check_same_shape(out_b, "out_b", out, "out", op);
  check_same_shape(lse_b, "lse_b", lse, "lse", op);
  for (const Tensor* t : std::initializer_list<const Tensor*>{&out, &out_b, &lse, &lse_b})
    USP_CHECK_ARG(t->stride(t->dim() - 1) == 1, "merge: last-dim stride must be 1, got ",
                  t->stride(t->dim() - 1), " for ", t->describe());

  const View vo(out), vl(lse), vob(out_b), vlb(lse_b);
  const std::int64_t B = out.size(0), S = out.size(1), H = out.size(2);
  const int d = static_cast<int>(out.size(3));
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const int dpad = pad_vec(d);  // one 64-byte aligned line per worker
  const Buffer lines(scratch_, static_cast<std::size_t>(pool_.size()) * dpad * sizeof(float));
  pool_.parallel_for(static_cast<std::size_t>(B * S), [&](std::size_t task, int worker) {
    float* line = static_cast<float*>(lines.data()) + static_cast<std::ptrdiff_t>(worker) * dpad;
    const auto bi = static_cast<std::int64_t>(task) / S, si = static_cast<std::int64_t>(task) % S;
    for (std::int64_t hi = 0; hi < H; ++hi) {
      float* l = static_cast<float*>(vl.at(bi, hi, si));
      const float lb = *static_cast<const float*>(vlb.at(bi, hi, si));
      if (lb == kNegInf) continue;  // the partial saw no key: nothing to add
      float* o = static_cast<float*>(vo.at(bi, si, hi));
      ops_.load_row(vob.at(bi, si, hi), vob.dtype, line, d);
      if (*l == kNegInf) {  // the accumulator is empty: take the partial as is
        std::copy(line, line + d, o);
        *l = lb;
        continue;
      }
      const double la = *l;
      const double w = 1.0 / (1.0 + std::exp(la - static_cast<double>(lb)));  // σ(lse_b − lse)
      const auto wf = static_cast<float>(w);
      for (int c = 0; c < d; ++c) o[c] -= wf * (o[c] - line[c]);
      *l = static_cast<float>(std::max(la, static_cast<double>(lb)) +
                              std::log1p(std::exp(-std::fabs(la - lb))));
    }
  });
}

void CpuKernel::fill_zero(Tensor& t) {
  check_host(t, "fill_zero", "t");
  const std::size_t es = dtype_size(t.dtype());
  for_rows(t, [&](char* p, std::int64_t n, std::int64_t stride) {
    if (stride == 1) {
      std::memset(p, 0, static_cast<std::size_t>(n) * es);
    } else {
      for (std::int64_t i = 0; i < n; ++i)
        std::memset(p + i * stride * static_cast<std::int64_t>(es), 0, es);
    }
  });
}

void CpuKernel::fill_neg_inf(Tensor& t) {
  check_host(t, "fill_neg_inf", "t");
  const DType dt = t.dtype();
  const std::int64_t es = static_cast<std::int64_t>(dtype_size(dt));
  for_rows(t, [&](char* p, std::int64_t n, std::int64_t stride) {
    for (std::int64_t i = 0; i < n; ++i)
      detail::store_from_f32(p + i * stride * es, dt, -std::numeric_limits<float>::infinity());
  });
}

void CpuKernel::copy(const Tensor& src, Tensor& dst) {
  check_host(src, "copy", "src");
  check_host(dst, "copy", "dst");
  check_same_shape(dst, "dst", src, "src", "copy");
  // Large tensors of 2+ dims are copied in slabs of dim 1 (for [b, s, h, d]: runs of tokens) on the
  // pool; each slab is a plain copy_into of views, so the result is the same as one copy_into.
  constexpr std::int64_t kSlabElems = std::int64_t{1} << 15;
  if (pool_.size() == 1 || src.dim() < 2 || src.numel() < 4 * kSlabElems) {
    copy_into(src, dst);
    return;
  }
  const std::int64_t d0 = src.size(0), d1 = src.size(1);
  const std::int64_t per_row = src.numel() / std::max<std::int64_t>(1, d0 * d1);  // per dim-1 index
  const std::int64_t rows =
      std::clamp<std::int64_t>(kSlabElems / std::max<std::int64_t>(1, per_row), 1, d1);
  const std::int64_t slabs = (d1 + rows - 1) / rows;
  pool_.parallel_for(static_cast<std::size_t>(d0 * slabs), [&](std::size_t task, int) {
    const auto t = static_cast<std::int64_t>(task);
    const std::int64_t i0 = t / slabs, r0 = (t % slabs) * rows;
    const std::int64_t n = std::min(rows, d1 - r0);
    Tensor out = dst.slice(0, i0, 1).slice(1, r0, n);
    copy_into(src.slice(0, i0, 1).slice(1, r0, n), out);
  });
}

void CpuKernel::add(const Tensor& src, Tensor& dst) {
  check_host(src, "add", "src");
  check_host(dst, "add", "dst");
  check_same_shape(dst, "dst", src, "src", "add");
  USP_CHECK_ARG(dst.dtype() == DType::f32, "add: dst must be fp32, got ", dtype_name(dst.dtype()));
  const int last = src.dim() - 1;
  const std::int64_t n = src.size(last);
  const Buffer buf(scratch_, static_cast<std::size_t>(n) * sizeof(float));
  float* line = static_cast<float*>(buf.data());
  detail::for_each_row(src.shape(), [&](const auto& idx) {
    const char* s = static_cast<const char*>(src.data()) + detail::byte_offset(src, idx);
    float* d =
        reinterpret_cast<float*>(static_cast<char*>(dst.data()) + detail::byte_offset(dst, idx));
    detail::load_row(s, src.dtype(), src.stride(last), line, n);
    const std::int64_t ds = dst.stride(last);
    for (std::int64_t i = 0; i < n; ++i) d[i * ds] += line[i];
  });
}

}  // namespace usp::cpu
