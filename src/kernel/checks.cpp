#include "kernel/checks.hpp"

#include <array>
#include <string>

#include "usp/error.hpp"
#include "usp/kernel.hpp"
#include "util/dims.hpp"
#include "util/enum_names.hpp"

namespace usp {

const char* mask_name(MaskMode m) {
  static constexpr std::array<const char*, 3> kNames{"none", "causal",
                                                     "causal_strict"};  // MaskMode order
  return detail::enum_name(m, kNames);
}

namespace {

constexpr std::int64_t kMaxHeadSize = 256;

using usp::detail::dims_str;

void check_defined(const Tensor& t, const char* name) {
  USP_CHECK_ARG(t.defined(), name, ": tensor is undefined");
}

void check_rank(const Tensor& t, const char* name, int dims, const char* layout) {
  check_defined(t, name);
  USP_CHECK_ARG(t.dim() == dims, name, ": expected ", dims, " dims ", layout, ", got ",
                dims_str(t.shape()));
}

void check_last_stride(const Tensor& t, const char* name) {
  USP_CHECK_ARG(t.stride(t.dim() - 1) == 1, name, ": last-dim stride must be 1, got ",
                t.stride(t.dim() - 1));
}

void check_device(const Tensor& t, const char* name, const Tensor& q) {
  USP_CHECK_ARG(t.device() == q.device(), name, ": device ", device_name(t.device()),
                " differs from q's device ", device_name(q.device()));
}

void check_shape(const Tensor& t, const char* name, const Tensor::Dims& want, const char* layout) {
  USP_CHECK_ARG(t.shape() == want, name, ": expected shape ", layout, " = ", dims_str(want),
                ", got ", dims_str(t.shape()));
}

void check_fp32(const Tensor& t, const char* name) {
  USP_CHECK_ARG(t.dtype() == DType::f32, name, ": must be fp32, got ", dtype_name(t.dtype()));
}

}  // namespace

namespace detail {

void check_qkv(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask) {
  check_rank(q, "q", 4, "[b, sq, h, d]");
  check_rank(k, "k", 4, "[b, sk, hkv, d]");
  check_rank(v, "v", 4, "[b, sk, hkv, d]");
  for (int i = 0; i < 4; ++i)
    USP_CHECK_ARG(q.size(i) >= 1, "q: every dim must be >= 1, got ", dims_str(q.shape()));
  for (int i = 0; i < 4; ++i)
    USP_CHECK_ARG(k.size(i) >= 1, "k: every dim must be >= 1, got ", dims_str(k.shape()));
  check_device(k, "k", q);
  check_device(v, "v", q);
  check_last_stride(q, "q");
  check_last_stride(k, "k");
  check_last_stride(v, "v");
  USP_CHECK_ARG(k.dtype() == q.dtype(), "k: dtype ", dtype_name(k.dtype()),
                " must equal q's dtype ", dtype_name(q.dtype()));
  USP_CHECK_ARG(v.dtype() == q.dtype(), "v: dtype ", dtype_name(v.dtype()),
                " must equal q's dtype ", dtype_name(q.dtype()));
  const std::int64_t b = q.size(0), sq = q.size(1), h = q.size(2), d = q.size(3);
  const std::int64_t sk = k.size(1), hkv = k.size(2);
  USP_CHECK_ARG(k.size(0) == b, "k: batch ", k.size(0), " must equal q's batch b = ", b);
  USP_CHECK_ARG(k.size(3) == d, "k: head size ", k.size(3), " must equal q's head size d = ", d);
  USP_CHECK_ARG(v.shape() == k.shape(), "v: shape ", dims_str(v.shape()), " must equal k's shape ",
                dims_str(k.shape()));
  USP_CHECK_ARG(d <= kMaxHeadSize, "head size d = ", d, " exceeds the maximum ", kMaxHeadSize);
  USP_CHECK_ARG(h % hkv == 0, "h (", h, ") must be a multiple of hkv (", hkv, ")");
  USP_CHECK_ARG(mask.general() || mask.mode() == MaskMode::none || sq == sk, "mask ",
                mask_name(mask.mode()), " needs sq == sk, got sq = ", sq, ", sk = ", sk);
}

}  // namespace detail

void check_forward_args(const Tensor& q, const Tensor& k, const Tensor& v, const BlockMask& mask,
                        const Tensor& out, const Tensor& lse) {
  detail::check_qkv(q, k, v, mask);
  const std::int64_t b = q.size(0), sq = q.size(1), h = q.size(2);
  check_rank(out, "out", 4, "[b, sq, h, d]");
  check_device(out, "out", q);
  check_shape(out, "out", q.shape(), "[b, sq, h, d]");
  check_last_stride(out, "out");
  check_rank(lse, "lse", 3, "[b, h, sq]");
  check_device(lse, "lse", q);
  check_fp32(lse, "lse");
  check_shape(lse, "lse", {b, h, sq}, "[b, h, sq]");
  check_last_stride(lse, "lse");
}

void check_backward_args(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& out,
                         const Tensor& lse, const Tensor& dout, const BlockMask& mask,
                         const Tensor& dq, const Tensor& dk, const Tensor& dv) {
  check_forward_args(q, k, v, mask, out, lse);
  check_rank(dout, "dout", 4, "[b, sq, h, d]");
  check_device(dout, "dout", q);
  check_shape(dout, "dout", q.shape(), "[b, sq, h, d]");
  check_last_stride(dout, "dout");
  const struct {
    const Tensor& t;
    const char* name;
    const Tensor& like;
    const char* layout;
  } grads[] = {{dq, "dq", q, "[b, sq, h, d]"},
               {dk, "dk", k, "[b, sk, hkv, d]"},
               {dv, "dv", v, "[b, sk, hkv, d]"}};
  for (const auto& g : grads) {
    check_rank(g.t, g.name, 4, g.layout);
    check_device(g.t, g.name, q);
    check_fp32(g.t, g.name);
    check_shape(g.t, g.name, g.like.shape(), g.layout);
    check_last_stride(g.t, g.name);
  }
}

}  // namespace usp
