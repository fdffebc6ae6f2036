// Helper of the MPI tool tests:
//   npy_tool gen DIR B S H HKV D SEED   writes DIR/{q,k,v,dout}.npy (float32, uniform [-1, 1))
//   npy_tool compare DIR_A DIR_B TOL NAME...
//                                       ‖a − b‖ / ‖b‖ per file NAME.npy; exit 1 above TOL
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <random>
#include <string>
#include <vector>

#include "usp/npy.hpp"
#include "usp/tensor.hpp"

namespace {

int gen(const std::string& dir, const std::vector<std::int64_t>& dims, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  const std::int64_t b = dims[0], s = dims[1], h = dims[2], hkv = dims[3], d = dims[4];
  for (const auto& [name, heads] :
       {std::pair<const char*, std::int64_t>{"q", h}, {"k", hkv}, {"v", hkv}, {"dout", h}}) {
    usp::Tensor t = usp::Tensor::empty({b, s, heads, d}, usp::DType::f32);
    auto* x = static_cast<float*>(t.data());
    for (std::int64_t i = 0; i < t.numel(); ++i) x[i] = u(rng);
    usp::write_npy(dir + "/" + name + ".npy", t);
  }
  return 0;
}

int compare(const std::string& a_dir, const std::string& b_dir, double tol,
            const std::vector<std::string>& names) {
  int bad = 0;
  for (const std::string& n : names) {
    const auto a = usp::to_doubles(usp::read_npy(a_dir + "/" + n + ".npy"));
    const auto b = usp::to_doubles(usp::read_npy(b_dir + "/" + n + ".npy"));
    if (a.size() != b.size()) {
      std::printf("npy_tool: %s: %zu elements vs %zu\n", n.c_str(), a.size(), b.size());
      ++bad;
      continue;
    }
    double err2 = 0, ref2 = 0;
    for (std::size_t i = 0; i < a.size(); ++i) {
      if (std::isinf(a[i]) && a[i] == b[i]) continue;  // masked lse rows
      err2 += (a[i] - b[i]) * (a[i] - b[i]);
      ref2 += b[i] * b[i];
    }
    const double rel = ref2 > 0 ? std::sqrt(err2 / ref2) : std::sqrt(err2);
    const bool ok = rel <= tol;
    std::printf("npy_tool: %s: rel err %.3g (tolerance %.1g) %s\n", n.c_str(), rel, tol,
                ok ? "ok" : "TOO LARGE");
    if (!ok) ++bad;
  }
  return bad ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    const std::string cmd = argc > 1 ? argv[1] : "";
    if (cmd == "gen" && argc == 9) {
      std::vector<std::int64_t> dims;
      for (int i = 3; i < 8; ++i) dims.push_back(std::atoll(argv[i]));
      return gen(argv[2], dims, static_cast<unsigned>(std::atoi(argv[8])));
    }
    if (cmd == "compare" && argc >= 6)
      return compare(argv[2], argv[3], std::atof(argv[4]),
                     std::vector<std::string>(argv + 5, argv + argc));
    std::fprintf(stderr, "usage: npy_tool gen DIR B S H HKV D SEED | compare A B TOL NAME...\n");
  } catch (const std::exception& e) {
    std::fprintf(stderr, "npy_tool: %s\n", e.what());
  }
  return 2;
}
