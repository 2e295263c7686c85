// The /cpu/<ms> busy loop, shared by the core (which runs it) and main (which calibrates it at
// start-up into Config::cpu_iterations_per_ms), so both measure exactly the same work.
#pragma once

#include <cstdint>

namespace gearbox::core {

// Runs `iterations` steps of a xorshift generator and returns its state. The empty asm keeps the
// compiler from folding, vectorising or dropping the loop, so time is linear in `iterations`.
inline std::uint64_t burn_cpu(std::uint64_t iterations) {
  std::uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (std::uint64_t i = 0; i < iterations; ++i) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    asm volatile("" : "+r"(x));
  }
  return x;
}

}  // namespace gearbox::core
