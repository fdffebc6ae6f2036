// Error expectations: a call must throw usp::Error of a given kind whose message contains given
// words.
#pragma once

#include <gtest/gtest.h>

#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>

#include "usp/error.hpp"

namespace usp::test {

inline constexpr const char* kNoError = "<no error>";

// The message of the usp::Error `fn` throws, or kNoError when it returns.
std::string error_message(const std::function<void()>& fn);

// Success when `fn` throws a usp::Error of `kind` whose message contains every one of `words`.
::testing::AssertionResult throws_error(const std::function<void()>& fn, ErrorKind kind,
                                        std::initializer_list<std::string_view> words);

// Success when `fn` throws a usp::Error of `kind` whose message is exactly `message`.
::testing::AssertionResult throws_error_exactly(const std::function<void()>& fn, ErrorKind kind,
                                                std::string_view message);

// Runs fn and returns the usp::Error it must throw (a test failure when it throws none), for
// tests that inspect the error further (kind, message, what()).
template <class F>
usp::Error expect_error(F&& fn) {
  try {
    fn();
  } catch (const usp::Error& e) {
    return e;
  }
  ADD_FAILURE() << "no usp::Error thrown";
  return usp::Error(usp::ErrorKind::internal, "<no error>");
}

// Success when `message` contains every one of `words`.
::testing::AssertionResult contains_all(const std::string& message,
                                        std::initializer_list<std::string_view> words);

}  // namespace usp::test

#define USP_EXPECT_ERROR(stmt, kind, ...) \
  EXPECT_TRUE(                            \
      ::usp::test::throws_error([&] { (void)(stmt); }, ::usp::ErrorKind::kind, {__VA_ARGS__}))
#define USP_EXPECT_ERROR_IS(stmt, kind, message) \
  EXPECT_TRUE(                                   \
      ::usp::test::throws_error_exactly([&] { (void)(stmt); }, ::usp::ErrorKind::kind, message))
#define USP_ASSERT_ERROR(stmt, kind, ...) \
  ASSERT_TRUE(                            \
      ::usp::test::throws_error([&] { (void)(stmt); }, ::usp::ErrorKind::kind, {__VA_ARGS__}))
