// The proxy's access log over every backend: a JSON line names the upstream that served and its
// timings, and a request no upstream could serve (502) is logged too.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>

#include "tests/proxy/proxy_fixture.hpp"
#include "tests/support/files.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;

class ProxyAccessLogTest : public ProxyTest {
 protected:
  std::vector<std::string> wait_lines(std::size_t n) { return wait_for_lines(log_path(), n, 3s); }
  std::string log_path() const { return dir_.path() + "/access.log"; }

  TempDir dir_;
};

TEST_P(ProxyAccessLogTest, JsonLineNamesTheUpstreamAndItsTimings) {
  ASSERT_TRUE(start_echo_upstream(echo_a_));
  ASSERT_TRUE(
      start_proxy({echo_a_.port()}, {"--access-log", log_path(), "--access-log-format", "json"}));
  EXPECT_EQ(CurlClient().get(url("/plaintext")).status, 200);
  auto lines = wait_lines(1);
  ASSERT_EQ(lines.size(), 1u);
  const std::string upstream = "\"upstream_addr\":\"127.0.0.1:" + std::to_string(echo_a_.port());
  EXPECT_NE(lines[0].find(upstream), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"status\":200"), std::string::npos) << lines[0];
  EXPECT_NE(lines[0].find("\"body_bytes_sent\":13"), std::string::npos) << lines[0];
  for (const char* timing :
       {"upstream_connect_time", "upstream_header_time", "upstream_response_time"}) {
    std::regex number("\"" + std::string(timing) + "\":\\d+\\.\\d{3}[,}]");
    EXPECT_TRUE(std::regex_search(lines[0], number)) << timing << " in " << lines[0];
  }
}

TEST_P(ProxyAccessLogTest, BadGatewayIsLoggedWithTheUpstreamTried) {
  // A port nobody listens on: connect refused, 502.
  int dead = closed_port();
  allow_error("127.0.0.1:" + std::to_string(dead));
  ASSERT_TRUE(start_proxy({dead}, {"--access-log", log_path()}));
  EXPECT_EQ(CurlClient().get(url("/x")).status, 502);
  auto lines = wait_lines(1);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("\"GET /x HTTP/1.1\" 502 "), std::string::npos) << lines[0];
}

GEARBOX_CONFORMANCE_SUITE(ProxyAccessLogTest);

}  // namespace
}  // namespace gearbox::test
