#include "usp/tensor.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "usp/error.hpp"
#include "util/dims.hpp"
#include "util/rows.hpp"

namespace usp {

namespace {

using usp::detail::dims_str;

void check_shape(const Tensor::Dims& shape, const char* what) {
  USP_CHECK_ARG(!shape.empty() && shape.size() <= static_cast<std::size_t>(Tensor::kMaxDims), what,
                ": shape must have 1 to ", Tensor::kMaxDims, " dims, got ", dims_str(shape));
  for (auto s : shape)
    USP_CHECK_ARG(s >= 0, what, ": every dim must be >= 0, got ", dims_str(shape));
}

Tensor::Dims contiguous_strides(const Tensor::Dims& shape) {
  Tensor::Dims st(shape.size());
  std::int64_t acc = 1;
  for (std::size_t i = shape.size(); i-- > 0;) {
    st[i] = acc;
    acc *= shape[i];
  }
  return st;
}

std::int64_t product(const Tensor::Dims& shape) {
  std::int64_t n = 1;
  for (auto s : shape) n *= s;
  return n;
}

}  // namespace

Tensor Tensor::empty(const Dims& shape, DType dtype, Allocator& alloc) {
  check_shape(shape, "Tensor::empty");
  Tensor t;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  t.device_ = alloc.device();
  t.storage_ =
      std::make_shared<Buffer>(alloc, static_cast<std::size_t>(product(shape)) * dtype_size(dtype));
  t.data_ = t.storage_->data();
  return t;
}

Tensor Tensor::zeros(const Dims& shape, DType dtype, Allocator& alloc) {
  if (alloc.device() != Device::host) {
    USP_FAIL(unsupported, "Tensor::zeros: allocator device ", device_name(alloc.device()),
             " cannot be zero-filled from the host; use Tensor::empty and the kernel's fill_zero");
  }
  Tensor t = empty(shape, dtype, alloc);
  if (t.nbytes() > 0) std::memset(t.data_, 0, t.nbytes());
  return t;
}

Tensor Tensor::wrap(void* data, const Dims& shape, DType dtype, Device device) {
  check_shape(shape, "Tensor::wrap");
  USP_CHECK_ARG(data != nullptr || product(shape) == 0, "Tensor::wrap: data is null for shape ",
                dims_str(shape));
  Tensor t;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  t.dtype_ = dtype;
  t.device_ = device;
  t.data_ = data;
  return t;
}

std::int64_t Tensor::numel() const {
  return defined() ? product(shape_) : 0;
}

bool Tensor::is_contiguous() const {
  if (!defined()) return true;
  std::int64_t acc = 1;
  for (std::size_t i = shape_.size(); i-- > 0;) {
    if (shape_[i] != 1 && strides_[i] != acc) return false;
    acc *= shape_[i];
  }
  return true;
}

void* Tensor::ptr(std::initializer_list<std::int64_t> idx) const {
  USP_CHECK_ARG(defined(), "Tensor::ptr: tensor is undefined");
  USP_CHECK_ARG(idx.size() <= shape_.size(), "Tensor::ptr: ", idx.size(),
                " indices for a tensor of shape ", dims_str(shape_));
  std::int64_t off = 0;
  std::size_t d = 0;
  for (auto i : idx) {
    USP_CHECK_ARG(i >= 0 && i < shape_[d], "Tensor::ptr: index ", i, " out of range for dim ", d,
                  " of shape ", dims_str(shape_));
    off += i * strides_[d];
    ++d;
  }
  return static_cast<char*>(data_) + off * static_cast<std::int64_t>(dtype_size(dtype_));
}

Tensor Tensor::slice(int d, std::int64_t start, std::int64_t len) const {
  USP_CHECK_ARG(defined(), "Tensor::slice: tensor is undefined");
  USP_CHECK_ARG(d >= 0 && d < dim(), "Tensor::slice: dim ", d, " out of range for shape ",
                dims_str(shape_));
  const std::int64_t n = shape_[static_cast<std::size_t>(d)];
  USP_CHECK_ARG(start >= 0 && len >= 0 && start + len <= n, "Tensor::slice: range [", start, ", ",
                start + len, ") out of bounds for dim ", d, " of size ", n);
  Tensor t = *this;
  t.shape_[static_cast<std::size_t>(d)] = len;
  t.data_ = static_cast<char*>(data_) + start * strides_[static_cast<std::size_t>(d)] *
                                            static_cast<std::int64_t>(dtype_size(dtype_));
  return t;
}

Tensor Tensor::reshape(const Dims& shape) const {
  USP_CHECK_ARG(defined(), "Tensor::reshape: tensor is undefined");
  check_shape(shape, "Tensor::reshape");
  USP_CHECK_ARG(is_contiguous(), "Tensor::reshape: tensor ", describe(), " is not contiguous");
  USP_CHECK_ARG(product(shape) == numel(), "Tensor::reshape: new shape ", dims_str(shape), " has ",
                product(shape), " elements, tensor has ", numel());
  Tensor t = *this;
  t.shape_ = shape;
  t.strides_ = contiguous_strides(shape);
  return t;
}

std::string Tensor::describe() const {
  if (!defined()) return "undefined tensor";
  return dims_str(shape_) + " " + dtype_name(dtype_) + " " + device_name(device_);
}

void copy_into(const Tensor& src, Tensor& dst) {
  USP_CHECK_ARG(src.defined() && dst.defined(), "copy_into: src and dst must be defined");
  USP_CHECK_ARG(src.shape() == dst.shape(), "copy_into: dst shape ", dims_str(dst.shape()),
                " must equal src shape ", dims_str(src.shape()));
  USP_CHECK_ARG(src.device() == Device::host && dst.device() == Device::host,
                "copy_into: host tensors only, got src on ", device_name(src.device()), ", dst on ",
                device_name(dst.device()));
  const int last = src.dim() - 1;
  const std::int64_t n = src.size(last);
  std::vector<float> row(static_cast<std::size_t>(n));
  detail::for_each_row(src.shape(), [&](const auto& idx) {
    const char* s = static_cast<const char*>(src.data()) + detail::byte_offset(src, idx);
    char* d = static_cast<char*>(dst.data()) + detail::byte_offset(dst, idx);
    if (src.stride(last) == 1 && dst.stride(last) == 1) {
      convert(s, src.dtype(), d, dst.dtype(), static_cast<std::size_t>(n));
    } else {
      detail::load_row(s, src.dtype(), src.stride(last), row.data(), n);
      detail::store_row(row.data(), d, dst.dtype(), dst.stride(last), n);
    }
  });
}

Tensor to_dtype(const Tensor& src, DType t, Allocator& alloc) {
  Tensor out = Tensor::empty(src.shape(), t, alloc);
  copy_into(src, out);
  return out;
}

std::vector<double> to_doubles(const Tensor& t) {
  USP_CHECK_ARG(t.defined(), "to_doubles: tensor is undefined");
  USP_CHECK_ARG(t.device() == Device::host, "to_doubles: host tensors only, got ",
                device_name(t.device()));
  std::vector<double> out;
  out.reserve(static_cast<std::size_t>(t.numel()));
  const int last = t.dim() - 1;
  const std::int64_t n = t.size(last);
  const std::int64_t step = t.stride(last) * static_cast<std::int64_t>(dtype_size(t.dtype()));
  detail::for_each_row(t.shape(), [&](const auto& idx) {
    const char* p = static_cast<const char*>(t.data()) + detail::byte_offset(t, idx);
    for (std::int64_t i = 0; i < n; ++i)
      out.push_back(detail::load_as_f32(p + i * step, t.dtype()));
  });
  return out;
}

double relative_error(const std::vector<double>& a, const std::vector<double>& ref) {
  USP_CHECK_ARG(a.size() == ref.size(), "relative_error: sizes differ (", a.size(), " vs ",
                ref.size(), ")");
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    // Equal infinities (e.g. lse = -inf on fully masked rows) count as exact.
    const double diff = (a[i] == ref[i]) ? 0.0 : a[i] - ref[i];
    num += diff * diff;
    if (std::isfinite(ref[i])) den += ref[i] * ref[i];
  }
  if (num == 0) return 0;
  if (den == 0) return std::numeric_limits<double>::infinity();
  return std::sqrt(num / den);
}

double relative_error(const Tensor& a, const Tensor& b) {
  USP_CHECK_ARG(a.shape() == b.shape(), "relative_error: shapes differ: ", dims_str(a.shape()),
                " vs ", dims_str(b.shape()));
  return relative_error(to_doubles(a), to_doubles(b));
}

}  // namespace usp
