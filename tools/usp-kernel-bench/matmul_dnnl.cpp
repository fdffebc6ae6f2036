// The oneDNN reference matmul (built when oneDNN is found).
#include <dlfcn.h>

#include <chrono>
#include <cstring>
#include <map>
#include <random>
#include <sstream>
#include <tuple>
#include <vector>

#include <dnnl.hpp>

#include "matmul.hpp"

namespace kbench {
namespace {

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// The oneDNN dtypes tried for a storage dtype: (inputs, output), first that works wins.
std::vector<std::pair<dt, dt>> candidates(usp::DType storage) {
  switch (storage) {
    case usp::DType::f32:
      return {{dt::f32, dt::f32}};
    case usp::DType::bf16:
      return {{dt::bf16, dt::f32}};
    case usp::DType::f16:
      return {{dt::f16, dt::f32}, {dt::f16, dt::f16}};
  }
  return {};
}

const char* dt_name(dt t) {
  switch (t) {
    case dt::f32:
      return "f32";
    case dt::bf16:
      return "bf16";
    case dt::f16:
      return "f16";
    default:
      return "?";
  }
}

void fill(dnnl::memory& mem, dt t, std::mt19937& rng) {
  const std::size_t bytes = mem.get_desc().get_size();
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  void* p = mem.get_data_handle();
  if (t == dt::f32) {
    float* f = static_cast<float*>(p);
    for (std::size_t i = 0; i < bytes / 4; ++i) f[i] = u(rng);
  } else {
    std::uint16_t* h = static_cast<std::uint16_t*>(p);
    for (std::size_t i = 0; i < bytes / 2; ++i)
      h[i] = t == dt::bf16 ? usp::f32_to_bf16(u(rng)) : usp::f32_to_f16(u(rng));
  }
}

// Sets the OpenMP thread count oneDNN will use, if oneDNN runs on OpenMP (looked up at run time
// so the tool itself does not depend on an OpenMP runtime).
bool set_omp_threads(int threads) {
  using Fn = void (*)(int);
  void* sym = dlsym(RTLD_DEFAULT, "omp_set_num_threads");
  if (sym == nullptr) return false;
  Fn fn;
  std::memcpy(&fn, &sym, sizeof fn);
  fn(threads);
  return true;
}

class DnnlMatmul final : public MatmulRef {
 public:
  explicit DnnlMatmul(int threads)
      : threads_(threads),
        omp_set_(set_omp_threads(threads)),
        eng_(dnnl::engine::kind::cpu, 0),
        stream_(eng_) {}

  bool available() const override { return true; }

  std::string describe() const override {
    const dnnl_version_t* v = dnnl_version();
    std::ostringstream os;
    os << "oneDNN " << v->major << '.' << v->minor << '.' << v->patch << " (";
    if (omp_set_)
      os << "OpenMP, " << threads_ << " threads";
    else
      os << "thread count left to its runtime";
    os << ")";
    return os.str();
  }

  bool supports(usp::DType storage) override {
    return find(storage, MatmulShape{64, 64, 64}) != nullptr;
  }

  std::string impl(usp::DType storage) override {
    auto it = impl_.find(storage);
    if (it == impl_.end()) {
      if (!supports(storage)) return "n/a";
      it = impl_.find(storage);
    }
    return it->second;
  }

  std::optional<double> seconds(usp::DType storage, const MatmulShape& shape,
                                double min_seconds) override {
    Entry* e = find(storage, shape);
    if (e == nullptr) return std::nullopt;
    auto run = [&] {
      e->prim.execute(stream_,
                      {{DNNL_ARG_SRC, e->a}, {DNNL_ARG_WEIGHTS, e->b}, {DNNL_ARG_DST, e->c}});
      stream_.wait();
    };
    run();
    using clock = std::chrono::steady_clock;
    const auto t0 = clock::now();
    int n = 0;
    double elapsed = 0;
    do {
      run();
      ++n;
      elapsed = std::chrono::duration<double>(clock::now() - t0).count();
    } while (n < 2 || elapsed < min_seconds);
    return elapsed / n;
  }

 private:
  struct Entry {
    dnnl::matmul prim;
    dnnl::memory a, b, c;
  };

  // The primitive for (storage, shape), created on first use; nullptr when oneDNN has none.
  Entry* find(usp::DType storage, const MatmulShape& s) {
    const auto key = std::make_tuple(storage, s.m, s.n, s.k);
    if (auto it = cache_.find(key); it != cache_.end()) return it->second.get();
    std::unique_ptr<Entry> entry;
    for (const auto& [in, out] : candidates(storage)) {
      try {
        const dnnl::memory::desc a({s.m, s.k}, in, tag::ab);
        const dnnl::memory::desc b({s.k, s.n}, in, tag::ab);
        const dnnl::memory::desc c({s.m, s.n}, out, tag::ab);
        const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), eng_);
        entry = std::make_unique<Entry>(Entry{dnnl::matmul(pd), dnnl::memory(a, eng_),
                                              dnnl::memory(b, eng_), dnnl::memory(c, eng_)});
        std::mt19937 rng(1234);
        fill(entry->a, in, rng);
        fill(entry->b, in, rng);
        impl_[storage] = std::string(dt_name(in)) + " x " + dt_name(in) + " -> " + dt_name(out) +
                         ", " + pd.impl_info_str();
        break;
      } catch (const dnnl::error&) {
        entry.reset();  // no implementation for this combination; try the next
      }
    }
    Entry* raw = entry.get();
    cache_[key] = std::move(entry);
    return raw;
  }

  int threads_;
  bool omp_set_;
  dnnl::engine eng_;
  dnnl::stream stream_;
  std::map<std::tuple<usp::DType, std::int64_t, std::int64_t, std::int64_t>, std::unique_ptr<Entry>>
      cache_;
  std::map<usp::DType, std::string> impl_;
};

}  // namespace

std::unique_ptr<MatmulRef> make_matmul_ref(int threads) {
  return std::make_unique<DnnlMatmul>(threads);
}

}  // namespace kbench
