#include "support/errors.hpp"

#include <iterator>
#include <optional>

namespace usp::test {

std::string error_message(const std::function<void()>& fn) {
  try {
    fn();
  } catch (const Error& e) {
    return e.what();
  }
  return kNoError;
}

::testing::AssertionResult contains_all(const std::string& message,
                                        std::initializer_list<std::string_view> words) {
  for (std::string_view w : words)
    if (message.find(w) == std::string::npos)
      return ::testing::AssertionFailure() << "message: " << message << "\nexpected: " << w;
  return ::testing::AssertionSuccess();
}

namespace {
// In the order of the enumerators of ErrorKind.
const char* kind_name(ErrorKind k) {
  static constexpr const char* kNames[] = {"invalid_argument", "timeout", "comm",
                                           "unsupported",      "io",      "internal"};
  const auto i = static_cast<std::size_t>(k);
  return i < std::size(kNames) ? kNames[i] : "?";
}

// The failure for an error of the wrong kind, or none when `e` has `kind`.
std::optional<::testing::AssertionResult> wrong_kind(const Error& e, ErrorKind kind) {
  if (e.kind() == kind) return std::nullopt;
  return ::testing::AssertionFailure() << "error kind " << kind_name(e.kind()) << ", expected "
                                       << kind_name(kind) << ": " << e.what();
}
}  // namespace

::testing::AssertionResult throws_error_exactly(const std::function<void()>& fn, ErrorKind kind,
                                                std::string_view message) {
  try {
    fn();
  } catch (const Error& e) {
    if (auto failure = wrong_kind(e, kind)) return *failure;
    if (e.what() == message) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "message: " << e.what() << "\nexpected: " << message;
  }
  return ::testing::AssertionFailure() << "no error";
}

::testing::AssertionResult throws_error(const std::function<void()>& fn, ErrorKind kind,
                                        std::initializer_list<std::string_view> words) {
  try {
    fn();
  } catch (const Error& e) {
    if (auto failure = wrong_kind(e, kind)) return *failure;
    return contains_all(e.what(), words);
  }
  return ::testing::AssertionFailure() << "no error";
}

}  // namespace usp::test
