// The reference matmul when the tool is built without oneDNN: never available.
#include <utility>

#include "matmul.hpp"

namespace kbench {
namespace {

class NoMatmul final : public MatmulRef {
 public:
  explicit NoMatmul(std::string why) : why_(std::move(why)) {}
  bool available() const override { return false; }
  std::string describe() const override { return why_; }
  bool supports(usp::DType) override { return false; }
  std::string impl(usp::DType) override { return "n/a"; }
  std::optional<double> seconds(usp::DType, const MatmulShape&, double) override {
    return std::nullopt;
  }

 private:
  std::string why_;
};

}  // namespace

std::unique_ptr<MatmulRef> make_no_matmul_ref(const std::string& why) {
  return std::make_unique<NoMatmul>(why);
}

#ifndef USP_KBENCH_HAVE_DNNL
std::unique_ptr<MatmulRef> make_matmul_ref(int) {
  return make_no_matmul_ref("unavailable (oneDNN not found)");
}
#endif

}  // namespace kbench
