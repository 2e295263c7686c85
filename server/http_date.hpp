// The Date field's value (RFC 9110 §6.6.1, IMF-fixdate) for a wall time given in seconds since
// the epoch. Formatted at most once a second per thread; the core passes the time in.
#pragma once

#include <cstdint>
#include <string_view>

namespace gearbox::core {

// A UTC calendar time, computed with arithmetic only. gmtime_r(3) would do, but glibc takes
// one process-wide lock (the time zone's) in every call: with thousands of connection threads
// on a busy core, a thread preempted while holding it stalls every other one that formats a
// date in that second.
struct UtcTime {
  std::int64_t year = 1970;
  unsigned month = 1;    // 1..12
  unsigned day = 1;      // 1..31
  unsigned weekday = 4;  // 0 = Sunday
  unsigned hour = 0, minute = 0, second = 0;
};
UtcTime utc_time(std::int64_t unix_seconds);

// "Jan".."Dec" and "Sun".."Sat" (the C locale's, as HTTP and log formats want them).
std::string_view month_abbrev(unsigned month);
std::string_view weekday_abbrev(unsigned weekday);

// "Sun, 06 Nov 1994 08:49:37 GMT". The view stays valid until this thread's next call with
// another second.
std::string_view http_date(std::int64_t unix_seconds);

}  // namespace gearbox::core
