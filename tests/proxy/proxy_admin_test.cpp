// Upstream metrics over every backend: per server requests, failures, retries, health and pooled
// idle connections on /metrics and /status?format=json, with one live and one dead upstream.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/proxy/proxy_fixture.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;

class ProxyAdminTest : public ProxyTest {};

double sample(const std::string& text, const std::string& series) {
  std::size_t at = text.find("\n" + series + " ");
  return at == std::string::npos ? -1 : std::stod(text.substr(at + series.size() + 2));
}

TEST_P(ProxyAdminTest, UpstreamCountersHealthAndPooledConnections) {
  ASSERT_TRUE(start_echo_upstream(echo_a_));
  int dead = closed_port();
  allow_error("127.0.0.1:" + std::to_string(dead));
  ASSERT_TRUE(start_proxy({echo_a_.port(), dead}, {"--admin-listen", "127.0.0.1:0"}));
  int admin = admin_port(server_);
  ASSERT_GT(admin, 0) << server_.log_text();
  CurlClient curl;
  for (int i = 0; i < 6; ++i) {
    EXPECT_EQ(curl.get(url("/health")).status, 200);  // the dead one fails over to the live one
  }
  const std::string live =
      "upstream=\"default\",server=\"127.0.0.1:" + std::to_string(echo_a_.port()) + "\"";
  const std::string down = "upstream=\"default\",server=\"127.0.0.1:" + std::to_string(dead) + "\"";
  std::string text;
  auto until = std::chrono::steady_clock::now() + 3s;
  do {
    text = ::gearbox::test::exchange(admin, "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n").body;
    if (sample(text, "gearbox_upstream_requests_total{" + live + "}") == 6) {
      break;
    }
    std::this_thread::sleep_for(20ms);
  } while (std::chrono::steady_clock::now() < until);
  EXPECT_EQ(sample(text, "gearbox_upstream_requests_total{" + live + "}"), 6) << text;
  EXPECT_EQ(sample(text, "gearbox_upstream_requests_total{" + down + "}"), 0) << text;
  EXPECT_GE(sample(text, "gearbox_upstream_failures_total{" + down + "}"), 1) << text;
  EXPECT_GE(sample(text, "gearbox_upstream_retries_total{" + down + "}"), 1) << text;
  EXPECT_EQ(sample(text, "gearbox_upstream_up{" + down + "}"), 0) << text;
  EXPECT_EQ(sample(text, "gearbox_upstream_up{" + live + "}"), 1) << text;
  EXPECT_GE(sample(text, "gearbox_upstream_idle_connections{" + live + "}"), 1) << text;
  EXPECT_EQ(sample(text, "gearbox_upstream_response_head_seconds_count{" + live + "}"), 6) << text;
  std::string json =
      ::gearbox::test::exchange(admin, "GET /status?format=json HTTP/1.1\r\nHost: a\r\n\r\n").body;
  EXPECT_NE(json.find("\"server\":\"127.0.0.1:" + std::to_string(dead) + "\",\"up\":false"),
            std::string::npos)
      << json;
}

GEARBOX_CONFORMANCE_SUITE(ProxyAdminTest);

}  // namespace
}  // namespace gearbox::test
