#include "support/errors.hpp"

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

::testing::AssertionResult throws_error(const std::function<void()>& fn, ErrorKind kind,
                                        std::initializer_list<std::string_view> words) {
  try {
    fn();
  } catch (const Error& e) {
    if (e.kind() != kind)
      return ::testing::AssertionFailure()
             << "error kind " << static_cast<int>(e.kind()) << ", expected "
             << static_cast<int>(kind) << ": " << e.what();
    return contains_all(e.what(), words);
  }
  return ::testing::AssertionFailure() << "no error";
}

}  // namespace usp::test
