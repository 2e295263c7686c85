// libFuzzer target for a whole core::Connection (echo and proxy); the invariant is in
// connection_invariant.hpp.
#include <cstdio>
#include <cstdlib>

#include "tests/fuzz/connection_invariant.hpp"

extern "C" int LLVMFuzzerTestOneInput(const unsigned char* data, std::size_t size) {
  std::string broken = gearbox::fuzz::check_connection({reinterpret_cast<const char*>(data), size});
  if (!broken.empty()) {
    std::fprintf(stderr, "connection invariant: %s\n", broken.c_str());
    std::abort();
  }
  return 0;
}
