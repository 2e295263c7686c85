// Echo mode's endpoints as a decision on a request head (DESIGN.md, "Echo mode"): what to answer,
// never how the bytes travel. The connection core carries the decision out.
#pragma once

#include <cstdint>
#include <string_view>

#include "http/message.hpp"

namespace gearbox::core {

struct EchoPlan {
  enum class Kind : std::uint8_t {
    kEchoBody,    // 200, the request body streamed back (chunked in -> chunked out)
    kEchoHead,    // 200 text/plain, the request line and fields as received
    kPlaintext,   // 200 text/plain "Hello, World!"
    kHealth,      // 200 text/plain "ok"
    kDelay,       // 200 after `ms` milliseconds
    kCpu,         // 200 after burning `ms` milliseconds of CPU
    kBadRequest,  // a /delay or /cpu argument that is not a number in range
  };
  Kind kind = Kind::kEchoHead;
  std::uint32_t ms = 0;
};

inline constexpr std::uint32_t kMaxDelayMs = 600'000;
inline constexpr std::uint32_t kMaxCpuMs = 10'000;

EchoPlan plan_echo(const http::RequestHead& head);

}  // namespace gearbox::core
