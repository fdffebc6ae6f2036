// The README's first example runs as written: its code block is tests/consumer/readme_example.cpp
// (built and run against the installed package by the consumer project, and here).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "usp/usp.hpp"

namespace readme_example {
#define main run
#include "consumer/readme_example.cpp"
#undef main
}  // namespace readme_example

namespace {

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

const std::filesystem::path kRoot =
    std::filesystem::path(__FILE__).parent_path().parent_path().parent_path();

TEST(UspReadmeExample, ReadmeShowsTheTestedCode) {
  const std::string readme = read_text(kRoot / "README.md");
  const std::string code = read_text(kRoot / "tests/consumer/readme_example.cpp");
  ASSERT_FALSE(code.empty());
  const auto section = readme.find("## Using the library\n");
  ASSERT_NE(section, std::string::npos);
  const auto begin = readme.find("```cpp\n", section);
  ASSERT_NE(begin, std::string::npos);
  const auto end = readme.find("```\n", begin + 7);
  ASSERT_NE(end, std::string::npos);
  EXPECT_EQ(readme.substr(begin + 7, end - begin - 7), code)
      << "README.md's first example must be tests/consumer/readme_example.cpp verbatim";
}

TEST(UspReadmeExample, RunsAsWritten) {
  EXPECT_EQ(readme_example::run(), 0);
}

}  // namespace
