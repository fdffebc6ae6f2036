#include "inputs.hpp"

#include <cmath>
#include <string>

#include "usp/error.hpp"
#include "usp/layout.hpp"
#include "usp/npy.hpp"

namespace usp::attn_tool {

std::string shape_text(const Tensor& t, const char* sep) {
  std::string s = "[";
  for (int d = 0; d < t.dim(); ++d) {
    if (d > 0) s += sep;
    s += std::to_string(t.size(d));
  }
  return s + "]";
}

namespace {

Tensor load(const char* flag, const std::string& path, const char* layout) {
  Tensor t = read_npy(path);
  USP_CHECK_ARG(t.dim() == 4, flag, " ", path, ": expected 4 dimensions ", layout, ", got shape ",
                shape_text(t));
  for (int d = 0; d < 4; ++d) {
    USP_CHECK_ARG(t.size(d) >= 1, flag, " ", path, ": shape ", shape_text(t),
                  " has an empty dimension");
  }
  return t;
}

}  // namespace

NpyInputs load_inputs(const Options& o) {
  NpyInputs p;
  const Tensor q = load("--q", o.q, "[b, s, h, d]");
  const Tensor k = load("--k", o.k, "[b, s, hkv, d]");
  const Tensor v = load("--v", o.v, "[b, s, hkv, d]");
  USP_CHECK_ARG(k.size(0) == q.size(0) && k.size(1) == q.size(1) && k.size(3) == q.size(3),
                "--k shape ", shape_text(k), " does not match --q shape ", shape_text(q),
                " (k must be [b, s, hkv, d] with b, s, d of q)");
  USP_CHECK_ARG(v.shape() == k.shape(), "--v shape ", shape_text(v), " differs from --k shape ",
                shape_text(k));
  p.batch = q.size(0);
  p.seq = q.size(1);
  p.heads = q.size(2);
  p.kv_heads = k.size(2);
  p.head_dim = q.size(3);
  USP_CHECK_ARG(p.heads % p.kv_heads == 0, "the ", p.heads,
                " query heads of --q are not a multiple of the ", p.kv_heads,
                " key/value heads of --k");
  Tensor dout;
  if (!o.dout.empty()) {
    dout = load("--dout", o.dout, "[b, s, h, d]");
    USP_CHECK_ARG(dout.shape() == q.shape(), "--dout shape ", shape_text(dout),
                  " differs from --q shape ", shape_text(q));
  }

  layout_of(o, p.seq).validate();
  USP_CHECK_ARG(p.heads % o.ulysses == 0, "--ulysses ", o.ulysses, " does not divide the ", p.heads,
                " query heads of --q");

  p.scale = o.scale > 0 ? o.scale : static_cast<float>(1.0 / std::sqrt(double(p.head_dim)));
  p.q = to_dtype(q, o.dtype);
  p.k = to_dtype(k, o.dtype);
  p.v = to_dtype(v, o.dtype);
  if (dout.defined()) p.dout = to_dtype(dout, o.dtype);
  return p;
}

}  // namespace usp::attn_tool
