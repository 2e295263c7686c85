// One access-log line per response, in nginx's combined format (plus $request_time) or as JSON
// with the upstream's address and timings. Pure formatting: the core fills a record at the end of
// each exchange and log.cpp's sink buffers and writes the line.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace gearbox::core {

enum class AccessFormat : std::uint8_t { kCombined, kJson };

// What the core knows of one exchange when it ends (response written, refused or cut).
struct AccessRecord {
  std::string_view peer;    // client address, no port
  std::string_view method;  // empty when no request line was parsed (logged as "-")
  std::string_view target;
  int version_minor = 1;
  int status = 0;                   // 499: the client went away before a response was started
  std::uint64_t bytes_sent = 0;     // response bytes written to the client (head and body)
  std::uint64_t body_bytes = 0;     // of which body (nginx's $body_bytes_sent)
  std::string_view referer;         // empty = absent
  std::string_view user_agent;      // empty = absent
  std::chrono::nanoseconds wall{};  // wall time (since the epoch) at the end of the exchange
  std::chrono::nanoseconds request_time{};  // first request byte to the end
  // Proxy mode: the upstream that served (empty = none was reached) and, measured from the
  // first connect attempt, when the connection was ready, when the response head arrived and
  // when the response ended; negative = did not happen.
  std::string_view upstream;
  std::chrono::nanoseconds upstream_connect{-1};
  std::chrono::nanoseconds upstream_header{-1};
  std::chrono::nanoseconds upstream_response{-1};
};

// Appends one line (ending in '\n') for `r` to `out`.
// Combined: `$remote_addr - - [$time_local] "$request" $status $body_bytes_sent "$http_referer"
// "$http_user_agent" $request_time`, time in UTC, request_time in seconds with milliseconds;
// `"`, `\` and bytes outside printable ASCII are escaped as \xHH (as nginx does).
// JSON: one object per line with the same fields under nginx's variable names, plus
// bytes_sent, upstream_addr and upstream_{connect,header,response}_time (null when absent).
void format_access(std::string& out, const AccessRecord& r, AccessFormat format);

}  // namespace gearbox::core
