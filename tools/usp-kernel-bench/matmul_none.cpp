// The reference matmul when the tool is built without oneDNN: never available.
#include "matmul.hpp"

namespace kbench {
namespace {

class NoMatmul final : public MatmulRef {
 public:
  bool available() const override { return false; }
  std::string describe() const override { return "unavailable (oneDNN not found)"; }
  bool supports(usp::DType) override { return false; }
  std::string impl(usp::DType) override { return "n/a"; }
  std::optional<double> seconds(usp::DType, const MatmulShape&, double) override {
    return std::nullopt;
  }
};

}  // namespace

std::unique_ptr<MatmulRef> make_matmul_ref(int) {
  return std::make_unique<NoMatmul>();
}

}  // namespace kbench
