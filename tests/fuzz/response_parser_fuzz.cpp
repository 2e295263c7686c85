// libFuzzer target for http::ResponseParser (first byte: request method). Invariant: never crash;
// every step keeps its contract; the input fed whole and a byte at a time gives the same trace.
#include <cstdio>
#include <cstdlib>

#include "tests/fuzz/parser_invariant.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string failure = gearbox::fuzz::check(input, gearbox::fuzz::response_trace);
  if (!failure.empty()) {
    std::fprintf(stderr, "%s", failure.c_str());
    std::abort();
  }
  return 0;
}
