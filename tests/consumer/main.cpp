#include <cstdio>
#include <cstring>

#include <usp/usp.hpp>

int main() {
  const char* v = usp::version();
  if (v == nullptr || std::strlen(v) == 0) {
    std::fputs("usp_consumer: usp::version() returned nothing\n", stderr);
    return 1;
  }
  std::printf("usp_consumer: usp::version() = %s\n", v);
  return 0;
}
