// utc_time() and http_date() against glibc's gmtime_r + strftime (the C locale) over the
// calendar's corners: leap days, century years, ends of months and of days.
#include "server/http_date.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <ctime>
#include <string>
#include <vector>

namespace gearbox::core {
namespace {

std::string reference(std::int64_t seconds, const char* format) {
  std::time_t t = static_cast<std::time_t>(seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char text[64];
  std::size_t n = std::strftime(text, sizeof text, format, &tm);
  return std::string(text, n);
}

std::vector<std::int64_t> instants() {
  std::vector<std::int64_t> out = {0,          59,         86399,       86400,      784111777,
                                   951782399,  951782400,  951868800,   1709164800, 1709251199,
                                   4107542399, 4107542400, 253402300799};
  // Every 3 days and 7 hours 13 seconds from 1970 to 2100: all weekdays, months and leap years.
  for (std::int64_t t = 0; t < 4102444800; t += 3 * 86400 + 7 * 3600 + 13) {
    out.push_back(t);
  }
  return out;
}

TEST(HttpDateTest, MatchesGmtimeAndStrftime) {
  for (std::int64_t t : instants()) {
    ASSERT_EQ(std::string(http_date(t)), reference(t, "%a, %d %b %Y %H:%M:%S GMT")) << t;
  }
}

TEST(HttpDateTest, UtcTimeFieldsMatchGmtime) {
  for (std::int64_t t : instants()) {
    std::time_t tt = static_cast<std::time_t>(t);
    std::tm tm{};
    gmtime_r(&tt, &tm);
    UtcTime u = utc_time(t);
    ASSERT_EQ(u.year, tm.tm_year + 1900) << t;
    ASSERT_EQ(u.month, static_cast<unsigned>(tm.tm_mon + 1)) << t;
    ASSERT_EQ(u.day, static_cast<unsigned>(tm.tm_mday)) << t;
    ASSERT_EQ(u.weekday, static_cast<unsigned>(tm.tm_wday)) << t;
    ASSERT_EQ(u.hour, static_cast<unsigned>(tm.tm_hour)) << t;
    ASSERT_EQ(u.minute, static_cast<unsigned>(tm.tm_min)) << t;
    ASSERT_EQ(u.second, static_cast<unsigned>(tm.tm_sec)) << t;
  }
}

TEST(HttpDateTest, SameSecondIsCachedAndAnotherIsNot) {
  std::string first(http_date(784111777));
  EXPECT_EQ(first, "Sun, 06 Nov 1994 08:49:37 GMT");
  EXPECT_EQ(std::string(http_date(784111777)), first);
  EXPECT_EQ(std::string(http_date(784111778)), "Sun, 06 Nov 1994 08:49:38 GMT");
}

}  // namespace
}  // namespace gearbox::core
