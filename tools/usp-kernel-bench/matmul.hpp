// The reference rate: a oneDNN matmul in the same process (or nothing, when oneDNN is absent).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "usp/dtype.hpp"

namespace kbench {

struct MatmulShape {
  std::int64_t m, n, k;
  double flops() const { return 2.0 * static_cast<double>(m) * static_cast<double>(n) * k; }
};

class MatmulRef {
 public:
  virtual ~MatmulRef() = default;
  // False when the tool was built without oneDNN.
  virtual bool available() const = 0;
  // "oneDNN 2.6.3 (cpu runtime: OMP, 2 threads)" or why it is unavailable.
  virtual std::string describe() const = 0;
  // Whether a matmul with inputs of `storage` exists; when not, callers pick another dtype.
  virtual bool supports(usp::DType storage) = 0;
  // "f32 x f32 -> f32, brg:avx512_core" for the dtype (after a rate() or supports() call).
  virtual std::string impl(usp::DType storage) = 0;
  // Seconds per matmul of this shape and input dtype (fp32 output): the mean over enough calls to
  // fill min_seconds (at least 2 calls, after one untimed call). nullopt when unsupported.
  virtual std::optional<double> seconds(usp::DType storage, const MatmulShape& shape,
                                        double min_seconds) = 0;
};

// oneDNN when the tool was built with it, else a stub that is never available. `threads` sets the
// thread count of oneDNN's runtime where it can be set.
std::unique_ptr<MatmulRef> make_matmul_ref(int threads);
// A reference that is never available ("skipped (--no-matmul)").
std::unique_ptr<MatmulRef> make_no_matmul_ref(const std::string& why);

}  // namespace kbench
