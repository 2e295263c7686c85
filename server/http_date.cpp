// IMF-fixdate formatting with a per-thread one-second cache (pure computation: no clock).
#include "server/http_date.hpp"

#include <ctime>

namespace gearbox::core {

std::string_view http_date(std::int64_t unix_seconds) {
  thread_local std::int64_t cached_second = -1;
  thread_local char text[32];
  thread_local std::size_t length = 0;
  if (unix_seconds != cached_second) {
    std::time_t t = static_cast<std::time_t>(unix_seconds);
    std::tm tm{};
    gmtime_r(&t, &tm);
    length = std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    cached_second = unix_seconds;
  }
  return {text, length};
}

}  // namespace gearbox::core
