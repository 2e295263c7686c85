// IMF-fixdate formatting with a per-thread one-second cache (pure computation: no clock, no
// lock).
#include "server/http_date.hpp"

#include <chrono>
#include <cstdio>

namespace gearbox::core {

UtcTime utc_time(std::int64_t unix_seconds) {
  using namespace std::chrono;
  const sys_seconds t{seconds{unix_seconds}};
  const sys_days day = floor<days>(t);
  const year_month_day ymd{day};
  const hh_mm_ss hms{t - day};
  UtcTime u;
  u.year = static_cast<int>(ymd.year());
  u.month = static_cast<unsigned>(ymd.month());
  u.day = static_cast<unsigned>(ymd.day());
  u.weekday = weekday{day}.c_encoding();
  u.hour = static_cast<unsigned>(hms.hours().count());
  u.minute = static_cast<unsigned>(hms.minutes().count());
  u.second = static_cast<unsigned>(hms.seconds().count());
  return u;
}

std::string_view month_abbrev(unsigned month) {
  static constexpr std::string_view kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                 "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  return month >= 1 && month <= 12 ? kMonths[month - 1] : "???";
}

std::string_view weekday_abbrev(unsigned weekday) {
  static constexpr std::string_view kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  return weekday < 7 ? kDays[weekday] : "???";
}

std::string_view http_date(std::int64_t unix_seconds) {
  thread_local std::int64_t cached_second = -1;
  thread_local char text[48];
  thread_local std::size_t length = 0;
  if (unix_seconds != cached_second) {
    UtcTime u = utc_time(unix_seconds);
    // snprintf into a buffer takes no stdio lock. The year is four digits from 1000 to 9999
    // (IMF-fixdate's range); others print as they are.
    int n = std::snprintf(text, sizeof text, "%.3s, %02u %.3s %04lld %02u:%02u:%02u GMT",
                          weekday_abbrev(u.weekday).data(), u.day, month_abbrev(u.month).data(),
                          static_cast<long long>(u.year), u.hour, u.minute, u.second);
    length = n > 0 ? static_cast<std::size_t>(n) : 0;
    cached_second = unix_seconds;
  }
  return {text, length};
}

}  // namespace gearbox::core
