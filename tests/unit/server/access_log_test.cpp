// Access-log line formatting: nginx's combined format (plus $request_time) and JSON, exact bytes.
#include "server/access_log.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

namespace gearbox::core {
namespace {

using std::chrono::milliseconds;
using std::chrono::nanoseconds;

AccessRecord sample() {
  AccessRecord r;
  r.peer = "127.0.0.1";
  r.method = "GET";
  r.target = "/a?b=1";
  r.version_minor = 1;
  r.status = 200;
  r.bytes_sent = 120;
  r.body_bytes = 13;
  r.referer = "http://ref/";
  r.user_agent = "curl/8.0";
  r.wall = milliseconds(1'764'581'400'250);  // 2025-12-01T09:30:00.250Z
  r.request_time = milliseconds(1'234);
  return r;
}

std::string line(const AccessRecord& r, AccessFormat f) {
  std::string out;
  format_access(out, r, f);
  return out;
}

TEST(AccessLogFormat, CombinedIsNginxsWithRequestTime) {
  EXPECT_EQ(line(sample(), AccessFormat::kCombined),
            "127.0.0.1 - - [01/Dec/2025:09:30:00 +0000] \"GET /a?b=1 HTTP/1.1\" 200 13 "
            "\"http://ref/\" \"curl/8.0\" 1.234\n");
}

TEST(AccessLogFormat, CombinedEscapesQuotesBackslashesAndControlBytes) {
  AccessRecord r = sample();
  r.user_agent = "a\"b\\c\x01\xff";
  r.referer = {};
  r.target = "/\x7f";
  EXPECT_EQ(line(r, AccessFormat::kCombined),
            "127.0.0.1 - - [01/Dec/2025:09:30:00 +0000] \"GET /\\x7F HTTP/1.1\" 200 13 \"-\" "
            "\"a\\x22b\\x5Cc\\x01\\xFF\" 1.234\n");
}

TEST(AccessLogFormat, RequestWithoutALineIsADash) {
  AccessRecord r = sample();
  r.method = {};
  r.target = {};
  r.referer = {};
  r.user_agent = {};
  r.status = 400;
  r.body_bytes = 12;
  r.request_time = milliseconds(0);
  EXPECT_EQ(line(r, AccessFormat::kCombined),
            "127.0.0.1 - - [01/Dec/2025:09:30:00 +0000] \"-\" 400 12 \"-\" \"-\" 0.000\n");
}

TEST(AccessLogFormat, JsonHasEveryFieldAndNullUpstreamWhenNone) {
  AccessRecord r = sample();
  r.version_minor = 0;
  EXPECT_EQ(line(r, AccessFormat::kJson),
            "{\"time\":\"2025-12-01T09:30:00.250Z\",\"remote_addr\":\"127.0.0.1\","
            "\"request\":\"GET /a?b=1 HTTP/1.0\",\"method\":\"GET\",\"uri\":\"/a?b=1\","
            "\"protocol\":\"HTTP/1.0\",\"status\":200,\"body_bytes_sent\":13,\"bytes_sent\":120,"
            "\"http_referer\":\"http://ref/\",\"http_user_agent\":\"curl/8.0\","
            "\"request_time\":1.234,\"upstream_addr\":null,\"upstream_connect_time\":null,"
            "\"upstream_header_time\":null,\"upstream_response_time\":null}\n");
}

TEST(AccessLogFormat, JsonCarriesTheUpstreamAndEscapesStrings) {
  AccessRecord r = sample();
  r.user_agent = "q\"\\\n\xc3\xa9";
  r.upstream = "10.0.0.2:8080";
  r.upstream_connect = milliseconds(1);
  r.upstream_header = milliseconds(20);
  r.upstream_response = nanoseconds(-1);
  std::string out = line(r, AccessFormat::kJson);
  EXPECT_NE(out.find("\"http_user_agent\":\"q\\\"\\\\\\u000A\\u00C3\\u00A9\""), std::string::npos)
      << out;
  EXPECT_NE(out.find("\"upstream_addr\":\"10.0.0.2:8080\",\"upstream_connect_time\":0.001,"
                     "\"upstream_header_time\":0.020,\"upstream_response_time\":null}"),
            std::string::npos)
      << out;
}

}  // namespace
}  // namespace gearbox::core
