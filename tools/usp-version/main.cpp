// Placeholder tool: proves the tools/ machinery. To be replaced.
#include <cstdio>

int main() {
  std::puts("usp 0.1.0");
  return 0;
}
