// Scoped environment variables: set (or unset) for the life of the object, the old value restored.
#pragma once

#include <optional>
#include <string>

namespace usp::test {

class ScopedEnv {
 public:
  // value == nullptr unsets the variable.
  ScopedEnv(std::string name, const char* value);
  ~ScopedEnv();
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  std::string name_;
  std::optional<std::string> old_;
};

// USP_CPU_PATH=value (generic, avx2, avx512, amx, ...) for a scope.
class ScopedCpuPath : public ScopedEnv {
 public:
  explicit ScopedCpuPath(const char* value) : ScopedEnv("USP_CPU_PATH", value) {}
};

}  // namespace usp::test
