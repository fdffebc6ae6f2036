// usp._usp: the Python binding of the C++ core (usp::Attention, usp::run_local, the MPI world).
// The package around it (python/usp/__init__.py) turns the results into numpy arrays or torch
// tensors; this file only sees objects with the buffer protocol (numpy) or torch tensors (read
// through data_ptr, shape, dtype and device), wraps their memory without copying and returns
// results as Buffer objects that own the core's tensors. The GIL is released around every call
// into the core that computes or communicates.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "usp/agree.hpp"
#include "usp/attention.hpp"
#include "usp/backend.hpp"
#include "usp/comm.hpp"
#include "usp/comm_mpi.hpp"
#include "usp/error.hpp"
#include "usp/layout.hpp"
#include "usp/mesh.hpp"
#include "usp/tensor.hpp"

namespace py = pybind11;

namespace {

// A world as Python sees it: the communicator, whether ranks are threads ("local") or processes
// ("mpi"), and whether it still exists (a run_local world ends when its function returns).
struct World {
  usp::Communicator* comm = nullptr;
  std::string kind;
  std::shared_ptr<std::atomic<bool>> alive = std::make_shared<std::atomic<bool>>(true);

  usp::Communicator& get() const {
    if (!alive->load()) USP_FAIL(invalid_argument, "this usp world has ended (run_local returned)");
    return *comm;
  }
};

// The MPI session of this process, made by the first mpi_world() and ended by finalize_mpi().
std::unique_ptr<usp::MpiSession>& mpi_session() {
  static std::unique_ptr<usp::MpiSession> s;
  return s;
}
std::shared_ptr<World>& mpi_world_obj() {
  static std::shared_ptr<World> w;
  return w;
}

// One core tensor handed to Python; keeps the Attention whose allocator owns the memory alive.
struct Buffer {
  std::shared_ptr<usp::Attention> owner;  // declared first: destroyed after t
  usp::Tensor t;
};

const char* format_of(usp::DType t) {
  switch (t) {
    case usp::DType::f32:
      return "f";
    case usp::DType::f16:
      return "e";
    case usp::DType::bf16:
      return "H";  // numpy has no bfloat16; torch reads it with torch.frombuffer(dtype=bfloat16)
  }
  return "B";
}

py::buffer_info buffer_info_of(Buffer& b) {
  const usp::Tensor& t = b.t;
  const auto item = static_cast<py::ssize_t>(usp::dtype_size(t.dtype()));
  std::vector<py::ssize_t> shape, strides;
  for (int d = 0; d < t.dim(); ++d) {
    shape.push_back(static_cast<py::ssize_t>(t.size(d)));
    strides.push_back(static_cast<py::ssize_t>(t.stride(d)) * item);
  }
  return py::buffer_info(t.data(), item, format_of(t.dtype()), t.dim(), shape, strides,
                         /*readonly=*/false);
}

// The dtype of a torch tensor ("torch.float32" ...) or of a buffer's format; nullopt if neither.
std::optional<usp::DType> torch_dtype(const std::string& s) {
  if (s == "torch.float32") return usp::DType::f32;
  if (s == "torch.bfloat16") return usp::DType::bf16;
  if (s == "torch.float16") return usp::DType::f16;
  return std::nullopt;
}

[[noreturn]] void type_error(const std::string& msg) {
  throw py::type_error(msg);
}
[[noreturn]] void value_error(const std::string& msg) {
  throw py::value_error(msg);
}

// A view of `obj` (a torch tensor or an object with the buffer protocol) as a usp::Tensor over
// the same memory. `name` names the argument in errors; ndim < 0 accepts any rank <= 4.
struct Input {
  usp::Tensor t;
  bool is_torch = false;
  std::optional<py::buffer_info> info;  // keeps a buffer's export alive
};

Input as_tensor(py::handle obj, const char* name, int ndim, usp::Device device) {
  Input in;
  std::vector<std::int64_t> shape;
  void* data = nullptr;
  usp::DType dtype = usp::DType::f32;
  const bool is_torch = py::hasattr(obj, "data_ptr") && py::hasattr(obj, "is_contiguous") &&
                        py::hasattr(obj, "dtype");
  if (is_torch) {
    in.is_torch = true;
    const std::string dt = py::str(obj.attr("dtype"));
    const auto d = torch_dtype(dt);
    if (!d)
      type_error(usp::detail::concat(name, ": dtype ", dt, " is not supported (", "fp32, ",
                                     "bf16 or fp16)"));
    dtype = *d;
    const std::string dev = py::str(obj.attr("device").attr("type"));
    const std::string want = device == usp::Device::host ? "cpu" : "cuda";
    if (dev != want)
      value_error(
          usp::detail::concat(name, ": a tensor on '", dev, "' for an Attention on '", want, "'"));
    if (!obj.attr("is_contiguous")().cast<bool>())
      value_error(usp::detail::concat(name, ": the tensor is not contiguous (a view with strides ",
                                      std::string(py::str(obj.attr("stride")())),
                                      "); pass .contiguous()"));
    for (py::handle s : obj.attr("shape")) shape.push_back(s.cast<std::int64_t>());
    data = reinterpret_cast<void*>(obj.attr("data_ptr")().cast<std::uintptr_t>());
  } else if (PyObject_CheckBuffer(obj.ptr())) {
    if (device != usp::Device::host)
      type_error(usp::detail::concat(name, ": an Attention on 'cuda' takes torch CUDA tensors"));
    in.info = py::reinterpret_borrow<py::buffer>(obj).request();
    const py::buffer_info& b = *in.info;
    std::string f = b.format;
    if (!f.empty() && (f[0] == '<' || f[0] == '=' || f[0] == '@')) f = f.substr(1);
    if (f == "f" && b.itemsize == 4)
      dtype = usp::DType::f32;
    else if (f == "e" && b.itemsize == 2)
      dtype = usp::DType::f16;
    else
      type_error(usp::detail::concat(name, ": array dtype (format '", b.format,
                                     "') is not supported: numpy arrays must be float32 (or "
                                     "float16); bf16 through torch"));
    py::ssize_t expect = b.itemsize;
    for (py::ssize_t d = b.ndim - 1; d >= 0; --d) {
      const auto i = static_cast<std::size_t>(d);
      if (b.shape[i] != 1 && b.strides[i] != expect)
        value_error(usp::detail::concat(name,
                                        ": the array is not C-contiguous; pass "
                                        "numpy.ascontiguousarray(",
                                        name, ")"));
      expect *= b.shape[i];
    }
    for (py::ssize_t s : b.shape) shape.push_back(static_cast<std::int64_t>(s));
    data = b.ptr;
  } else {
    type_error(usp::detail::concat(name, ": expected a numpy array or a torch tensor, got ",
                                   std::string(py::str(py::type::of(obj)))));
  }
  const int got = static_cast<int>(shape.size());
  if (ndim >= 0 && got != ndim)
    value_error(usp::detail::concat(name, ": expected ", ndim, " dimensions",
                                    ndim == 4 ? " [b, s, h, d]" : " [b, h, s]", ", got ", got));
  if (got < 1 || got > usp::Tensor::kMaxDims)
    value_error(usp::detail::concat(name, ": expected 1 to 4 dimensions, got ", got));
  for (std::int64_t s : shape)
    if (s == 0) value_error(usp::detail::concat(name, ": has an empty dimension"));
  in.t = usp::Tensor::wrap(data, shape, dtype, device);
  return in;
}

// All of `ins` must be the same kind (numpy or torch) and, but for `fp32_at` (lse), of the dtype
// of the first.
void check_same(const std::vector<std::pair<const char*, const Input*>>& ins, int fp32_at = -1) {
  const Input& first = *ins.front().second;
  for (std::size_t i = 1; i < ins.size(); ++i) {
    const auto& [name, in] = ins[i];
    if (in->is_torch != first.is_torch)
      type_error(usp::detail::concat(
          name, ": a ", in->is_torch ? "torch tensor" : "numpy array", " mixed with a ",
          first.is_torch ? "torch tensor" : "numpy array", " for ", ins.front().first));
    const usp::DType want = static_cast<int>(i) == fp32_at ? usp::DType::f32 : first.t.dtype();
    if (in->t.dtype() != want)
      type_error(
          usp::detail::concat(name, ": dtype ", usp::dtype_name(in->t.dtype()), " where ",
                              static_cast<int>(i) == fp32_at ? "fp32 (lse)" : usp::dtype_name(want),
                              static_cast<int>(i) == fp32_at ? "" : " (the dtype of ",
                              static_cast<int>(i) == fp32_at ? "" : ins.front().first,
                              static_cast<int>(i) == fp32_at ? "" : ")", " is expected"));
  }
}

class PyAttention {
 public:
  PyAttention(std::shared_ptr<World> world, int ulysses, int ring, int data,
              const std::string& ring_type, const std::string& placement, bool causal,
              std::optional<float> softmax_scale, const std::string& device, int threads,
              bool check_finite, int double_ring, std::pair<std::int64_t, std::int64_t> window,
              std::vector<std::int64_t> cu_seqlens, int head_chunks)
      : world_(std::move(world)) {
    usp::AttentionOptions o;
    if (device == "cpu")
      o.backend = world_->kind == "mpi" ? "mpi" : "cpu";
    else if (device == "cuda")
      USP_FAIL(unsupported,
               "Attention(device='cuda') is not available from Python yet; "
               "use device='cpu'");
    else
      value_error("device: '" + device + "' is not one of 'cpu', 'cuda'");
    o.ulysses = ulysses;
    o.ring = ring;
    o.data = data;
    o.ring_type = usp::parse_ring_type(ring_type);
    o.placement = usp::parse_placement(placement);
    o.causal = causal;
    if (softmax_scale) {
      if (!(*softmax_scale > 0.0f))
        value_error(usp::detail::concat("softmax_scale: ", *softmax_scale,
                                        " must be > 0 (None: "
                                        "1/sqrt(head size))"));
      o.scale = *softmax_scale;
    }
    o.threads = threads;
    o.check_finite = check_finite;
    o.double_ring = double_ring;
    o.window = {window.first, window.second};
    o.cu_seqlens = std::move(cu_seqlens);
    o.head_chunks = head_chunks;
    usp::Communicator& comm = world_->get();
    py::gil_scoped_release nogil;  // construction is collective
    attn_ = std::make_shared<usp::Attention>(comm, o);
  }

  py::object shard(py::handle x, int seq_dim) {
    Input in = as_tensor(x, "x", -1, usp::Device::host);
    check_world();
    usp::Tensor r;
    {
      py::gil_scoped_release nogil;
      r = attn_->shard(in.t, seq_dim);
    }
    return wrap(std::move(r));
  }

  py::object gather(py::handle x, int seq_dim) {
    Input in = as_tensor(x, "x", -1, device());
    check_world();
    usp::Tensor r;
    {
      py::gil_scoped_release nogil;
      r = attn_->gather(in.t, seq_dim);
    }
    return wrap(std::move(r));
  }

  py::tuple forward(py::handle q, py::handle k, py::handle v) {
    const Input qi = as_tensor(q, "q", 4, device()), ki = as_tensor(k, "k", 4, device()),
                vi = as_tensor(v, "v", 4, device());
    check_same({{"q", &qi}, {"k", &ki}, {"v", &vi}});
    check_world();
    usp::UspAttention::Output o;
    {
      py::gil_scoped_release nogil;
      o = attn_->forward(qi.t, ki.t, vi.t);
    }
    return py::make_tuple(wrap(std::move(o.out)), wrap(std::move(o.lse)));
  }

  py::tuple backward(py::handle q, py::handle k, py::handle v, py::handle out, py::handle lse,
                     py::handle dout) {
    const usp::Device dev = device();
    const Input qi = as_tensor(q, "q", 4, dev), ki = as_tensor(k, "k", 4, dev),
                vi = as_tensor(v, "v", 4, dev), oi = as_tensor(out, "out", 4, dev),
                li = as_tensor(lse, "lse", 3, dev), di = as_tensor(dout, "dout", 4, dev);
    check_same({{"q", &qi}, {"k", &ki}, {"v", &vi}, {"out", &oi}, {"lse", &li}, {"dout", &di}}, 4);
    check_world();
    usp::UspAttention::Grads g;
    {
      py::gil_scoped_release nogil;
      g = attn_->backward(qi.t, ki.t, vi.t, oi.t, li.t, di.t);
    }
    return py::make_tuple(wrap(std::move(g.dq)), wrap(std::move(g.dk)), wrap(std::move(g.dv)));
  }

  // The global token indices this rank holds, in its local order (what shard takes).
  std::vector<std::int64_t> tokens(std::int64_t seq_len) const {
    const usp::Layout l = attn_->layout(seq_len);
    l.validate();
    const usp::MeshCoord c = attn_->mesh().coord;
    std::vector<std::int64_t> out(static_cast<std::size_t>(l.shard_len()));
    for (std::int64_t i = 0; i < l.shard_len(); ++i)
      out[static_cast<std::size_t>(i)] = l.global(c.ring, c.ulysses, i);
    return out;
  }

  int rank() const { return world_->get().rank(); }
  void set_documents(std::vector<std::int64_t> cu_seqlens) {
    attn_->set_documents(std::move(cu_seqlens));
  }
  int size() const { return world_->get().size(); }
  int threads() const { return attn_->threads(); }
  std::string kernel_name() const { return attn_->kernel().name(); }
  py::dict timings() const {
    const usp::UspTimings t = attn_->timings();
    py::dict d;
    d["compute_s"] = t.compute_s;
    d["comm_wait_s"] = t.comm_wait_s;
    d["comm_total_s"] = t.comm_total_s;
    d["bytes_sent"] = t.bytes_sent;
    return d;
  }

 private:
  usp::Device device() const { return attn_->allocator().device(); }
  void check_world() const { (void)world_->get(); }
  py::object wrap(usp::Tensor t) const { return py::cast(Buffer{attn_, std::move(t)}); }

  std::shared_ptr<World> world_;
  std::shared_ptr<usp::Attention> attn_;
};

// Every rank's x (same shape and dtype everywhere) concatenated along dimension 0, by rank.
py::object all_gather(const World& w, py::handle x) {
  usp::Communicator& comm = w.get();
  const Input in = as_tensor(x, "x", -1, usp::Device::host);
  usp::Tensor::Dims shape = in.t.shape();
  shape[0] *= comm.size();
  usp::Tensor r = usp::Tensor::empty(shape, in.t.dtype());
  {
    py::gil_scoped_release nogil;
    usp::allgather_host(comm, usp::default_host_allocator(), in.t.data(), r.data(), in.t.nbytes());
  }
  return py::cast(Buffer{nullptr, std::move(r)});
}

// run_local(n, fn): fn(world) on n ranks as threads. Each thread takes the GIL to run fn; the
// core releases it inside. The first rank whose fn raised has its exception re-raised here (the
// others were woken with an error when it left).
py::list run_local(int n, const py::function& fn, double timeout_s) {
  USP_CHECK_ARG(n >= 1, "run_local: n = ", n, " must be >= 1");
  USP_CHECK_ARG(timeout_s > 0, "run_local: timeout_s = ", timeout_s, " must be > 0");
  std::vector<py::object> results(static_cast<std::size_t>(n));
  std::vector<std::optional<py::error_already_set>> errors(static_cast<std::size_t>(n));
  std::atomic<int> first{-1};
  std::optional<usp::Error> core_error;
  {
    py::gil_scoped_release nogil;
    try {
      usp::run_local(
          n,
          [&](usp::Communicator& comm) {
            const auto r = static_cast<std::size_t>(comm.rank());
            py::gil_scoped_acquire gil;
            auto w = std::make_shared<World>();
            w->comm = &comm;
            w->kind = "local";
            try {
              results[r] = fn(w);
              w->alive->store(false);
            } catch (py::error_already_set& e) {
              w->alive->store(false);
              int none = -1;
              first.compare_exchange_strong(none, static_cast<int>(r));
              const std::string msg = e.what();
              errors[r] = std::move(e);
              USP_FAIL(comm, "rank ", r, ": ", msg);
            }
          },
          std::chrono::milliseconds(static_cast<std::int64_t>(timeout_s * 1000.0)));
    } catch (const usp::Error& e) {
      core_error = e;
    }
  }
  if (first.load() >= 0) {
    errors[static_cast<std::size_t>(first.load())]->restore();
    throw py::error_already_set();
  }
  if (core_error) throw *core_error;
  py::list out;
  for (auto& r : results) out.append(r);
  return out;
}

std::shared_ptr<World> mpi_world() {
  if (!mpi_world_obj()) {
    if (!usp::mpi_built())
      USP_FAIL(unsupported,
               "usp.mpi_world: this build of usp has no MPI (reconfigure with "
               "-DUSP_WITH_MPI=ON where MPI is installed)");
    if (!usp::mpi_launched())
      USP_FAIL(invalid_argument,
               "usp.mpi_world: this process was not started by an MPI launcher; "
               "run it under mpirun -np N");
    {
      py::gil_scoped_release nogil;
      mpi_session() = std::make_unique<usp::MpiSession>(nullptr, nullptr);
    }
    auto w = std::make_shared<World>();
    w->comm = &mpi_session()->world();
    w->kind = "mpi";
    mpi_world_obj() = std::move(w);
  }
  return mpi_world_obj();
}

void finalize_mpi() {
  if (mpi_world_obj()) mpi_world_obj()->alive->store(false);
  py::gil_scoped_release nogil;
  mpi_session().reset();
}

void mpi_abort(int code, const std::string& message) {
  if (!mpi_session()) return;
  mpi_session()->abort(code, message);
}

}  // namespace

PYBIND11_MODULE(_usp, m) {
  m.doc() = "usp: exact attention over long sequences split across ranks (the C++ core)";

  // usp.Error: every failure of the core, with its message; invalid arguments are also
  // ValueErrors (usp.InvalidArgument).
  static py::handle error(PyErr_NewExceptionWithDoc(
      "usp.Error", "A failure reported by the usp core (the message is the core's).",
      PyExc_RuntimeError, nullptr));
  py::tuple bases = py::make_tuple(error, py::handle(PyExc_ValueError));
  static py::handle invalid(PyErr_NewExceptionWithDoc(
      "usp.InvalidArgument", "A usp.Error for a bad argument or configuration (also a ValueError).",
      bases.ptr(), nullptr));
  m.attr("Error") = error;
  m.attr("InvalidArgument") = invalid;
  py::register_exception_translator([](std::exception_ptr p) {
    try {
      if (p) std::rethrow_exception(p);
    } catch (const usp::Error& e) {
      PyErr_SetString(e.kind() == usp::ErrorKind::invalid_argument ? invalid.ptr() : error.ptr(),
                      e.what());
    }
  });

  py::class_<World, std::shared_ptr<World>>(m, "World")
      .def_property_readonly("rank", [](const World& w) { return w.get().rank(); })
      .def_property_readonly("size", [](const World& w) { return w.get().size(); })
      .def_property_readonly("kind", [](const World& w) { return w.kind; })
      .def("barrier",
           [](const World& w) {
             usp::Communicator& c = w.get();
             py::gil_scoped_release nogil;
             c.barrier();
           })
      .def("all_gather", &all_gather, py::arg("x"))
      .def("__repr__", [](const World& w) {
        if (!w.alive->load()) return std::string("<usp.World (ended)>");
        return usp::detail::concat("<usp.World ", w.kind, " rank ", w.comm->rank(), " of ",
                                   w.comm->size(), ">");
      });

  py::class_<Buffer>(m, "Buffer", py::buffer_protocol())
      .def_buffer(&buffer_info_of)
      .def_property_readonly("shape",
                             [](const Buffer& b) {
                               py::tuple t(b.t.dim());
                               for (int d = 0; d < b.t.dim(); ++d)
                                 t[static_cast<std::size_t>(d)] = b.t.size(d);
                               return t;
                             })
      .def_property_readonly("dtype", [](const Buffer& b) { return usp::dtype_name(b.t.dtype()); })
      .def_property_readonly("nbytes", [](const Buffer& b) { return b.t.nbytes(); });

  py::class_<PyAttention>(m, "Attention")
      .def(py::init<std::shared_ptr<World>, int, int, int, const std::string&, const std::string&,
                    bool, std::optional<float>, const std::string&, int, bool, int,
                    std::pair<std::int64_t, std::int64_t>, std::vector<std::int64_t>, int>(),
           py::arg("world"), py::arg("ulysses") = 1, py::arg("ring") = 1, py::arg("data") = 1,
           py::arg("ring_type") = "zigzag", py::arg("placement") = "ulysses_inner",
           py::arg("causal") = true, py::arg("softmax_scale") = py::none(),
           py::arg("device") = "cpu", py::arg("threads") = 0, py::arg("check_finite") = false,
           py::arg("double_ring") = 0,
           py::arg("window") = std::pair<std::int64_t, std::int64_t>{-1, -1},
           py::arg("cu_seqlens") = std::vector<std::int64_t>{}, py::arg("head_chunks") = 0)
      .def("set_documents", &PyAttention::set_documents, py::arg("cu_seqlens"))
      .def("shard", &PyAttention::shard, py::arg("x"), py::arg("seq_dim") = 1)
      .def("gather", &PyAttention::gather, py::arg("x"), py::arg("seq_dim") = 1)
      .def("forward", &PyAttention::forward, py::arg("q"), py::arg("k"), py::arg("v"))
      .def("backward", &PyAttention::backward, py::arg("q"), py::arg("k"), py::arg("v"),
           py::arg("out"), py::arg("lse"), py::arg("dout"))
      .def("tokens", &PyAttention::tokens, py::arg("seq_len"))
      .def_property_readonly("rank", &PyAttention::rank)
      .def_property_readonly("size", &PyAttention::size)
      .def_property_readonly("threads", &PyAttention::threads)
      .def_property_readonly("kernel", &PyAttention::kernel_name)
      .def("timings", &PyAttention::timings);

  m.def("run_local", &run_local, py::arg("n"), py::arg("fn"), py::arg("timeout_s") = 300.0);
  m.def("mpi_world", &mpi_world);
  m.def("mpi_built", &usp::mpi_built);
  m.def("finalize_mpi", &finalize_mpi);
  m.def("mpi_abort", &mpi_abort, py::arg("code"), py::arg("message"));
}
