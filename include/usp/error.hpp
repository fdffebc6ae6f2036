// Errors are values the user can read: every failure is a usp::Error whose message names the
// parameter, its value and the rule that was broken.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace usp {

enum class ErrorKind {
  invalid_argument,  // bad shape, dtype, configuration
  timeout,           // a blocking wait ran past the communicator's timeout
  comm,              // a peer failed or a transport broke
  unsupported,       // a feature not built in (e.g. CUDA without nvcc)
  io,                // files (npy, csv, ...)
  internal,
};

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, const std::string& what) : std::runtime_error(what), kind_(kind) {}
  ErrorKind kind() const noexcept { return kind_; }

 private:
  ErrorKind kind_;
};

namespace detail {
template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}
}  // namespace detail

// Throws Error(invalid_argument) with the streamed message when `cond` is false.
#define USP_CHECK_ARG(cond, ...)                                                                  \
  do {                                                                                            \
    if (!(cond))                                                                                  \
      throw ::usp::Error(::usp::ErrorKind::invalid_argument, ::usp::detail::concat(__VA_ARGS__)); \
  } while (0)

#define USP_FAIL(kind, ...) \
  throw ::usp::Error(::usp::ErrorKind::kind, ::usp::detail::concat(__VA_ARGS__))

}  // namespace usp
