#include "support/env.hpp"

#include <cstdlib>
#include <utility>

namespace usp::test {

namespace {
void set_or_unset(const std::string& name, const char* value) {
  if (value != nullptr)
    ::setenv(name.c_str(), value, 1);
  else
    ::unsetenv(name.c_str());
}
}  // namespace

ScopedEnv::ScopedEnv(std::string name, const char* value) : name_(std::move(name)) {
  if (const char* old = std::getenv(name_.c_str())) old_ = old;
  set_or_unset(name_, value);
}

ScopedEnv::~ScopedEnv() {
  set_or_unset(name_, old_ ? old_->c_str() : nullptr);
}

}  // namespace usp::test
