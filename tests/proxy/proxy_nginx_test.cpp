// Proxy conformance with Debian's nginx as the upstream, over every backend: nginx is started on
// an ephemeral port with tests/proxy/nginx.conf.in, and gearbox proxies a fixed reply and a large
// static file from it over kept-alive connections.
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/proxy/proxy_fixture.hpp"
#include "tests/support/nginx_process.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;

std::string nginx_template() {
  std::ifstream in(std::string(GEARBOX_SOURCE_DIR) + "/tests/proxy/nginx.conf.in");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

class ProxyNginxTest : public ProxyTest {
 protected:
  void SetUp() override {
    if (!NginxProcess::available()) {
      GTEST_SKIP() << NginxProcess::kBinary << " is not installed (make deps)";
    }
  }
  void TearDown() override {
    ProxyTest::TearDown();
    if (nginx_.pid() > 0) {
      EXPECT_EQ(nginx_.stop(), 0) << nginx_.error_log();
    }
  }
  NginxProcess nginx_;
};
GEARBOX_CONFORMANCE_SUITE(ProxyNginxTest);

TEST_P(ProxyNginxTest, StaticReplyThroughGearbox) {
  std::string templ = nginx_template();
  ASSERT_FALSE(templ.empty());
  ASSERT_TRUE(nginx_.start(templ));
  ASSERT_TRUE(start_proxy({nginx_.port()}));
  HttpResponse r = exchange(port(), "GET /static HTTP/1.1\r\nHost: app\r\n\r\n");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200) << r.raw_head;
  EXPECT_EQ(r.body, "nginx-static\n");
  EXPECT_NE(r.header("Server").value_or("").find("nginx"), std::string::npos) << r.raw_head;
  ASSERT_TRUE(r.header("Via").has_value()) << r.raw_head;
  HttpResponse miss = exchange(port(), "GET /files/absent HTTP/1.1\r\nHost: app\r\n\r\n");
  ASSERT_TRUE(miss.ok()) << miss.error;
  EXPECT_EQ(miss.status, 404) << "nginx's own 404 passes through:\n" << miss.raw_head;
}

TEST_P(ProxyNginxTest, LargeStaticFileOverKeptAliveConnection) {
  const std::string file = binary_body(4 * 1024 * 1024 + 17);
  ASSERT_TRUE(nginx_.write_file("www/big.bin", file));
  ASSERT_TRUE(nginx_.start(nginx_template()));
  ASSERT_TRUE(start_proxy({nginx_.port()}));
  CurlClient client;
  for (int i = 0; i < 3; ++i) {
    auto r = client.get(url("/files/big.bin"), 20s);
    ASSERT_EQ(r.curl_code, 0) << r.error;
    ASSERT_EQ(r.status, 200) << r.head;
    EXPECT_EQ(r.body.size(), file.size());
    EXPECT_TRUE(r.body == file) << "file through gearbox differs from nginx's";
    auto s = client.get(url("/static"), 5s);
    ASSERT_EQ(s.curl_code, 0) << s.error;
    EXPECT_EQ(s.body, "nginx-static\n");
  }
  EXPECT_EQ(client.connects(), 1) << "the client connection to gearbox should be kept alive";
}

TEST_P(ProxyNginxTest, HeadAndConditionalRequestsKeepFraming) {
  ASSERT_TRUE(nginx_.write_file("www/page.txt", "page body\n"));
  ASSERT_TRUE(nginx_.start(nginx_template()));
  ASSERT_TRUE(start_proxy({nginx_.port()}));
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(s.send_all("HEAD /files/page.txt HTTP/1.1\r\nHost: app\r\n\r\n"));
  HttpResponse head = s.read_response(5s, /*head_request=*/true);
  ASSERT_TRUE(head.ok()) << head.error;
  EXPECT_EQ(head.status, 200) << head.raw_head;
  EXPECT_EQ(head.header("Content-Length"), "10") << head.raw_head;
  EXPECT_TRUE(head.body.empty());
  auto modified = head.header("Last-Modified");
  ASSERT_TRUE(modified.has_value()) << head.raw_head;
  ASSERT_TRUE(s.send_all(
      "GET /files/page.txt HTTP/1.1\r\nHost: app\r\nIf-Modified-Since: " + *modified + "\r\n\r\n"));
  HttpResponse cached = s.read_response();
  ASSERT_TRUE(cached.ok()) << cached.error;
  EXPECT_EQ(cached.status, 304) << cached.raw_head;
  EXPECT_TRUE(cached.body.empty());
  ASSERT_TRUE(s.send_all("GET /files/page.txt HTTP/1.1\r\nHost: app\r\n\r\n"));
  HttpResponse full = s.read_response();
  ASSERT_TRUE(full.ok()) << full.error;
  EXPECT_EQ(full.body, "page body\n");
}

}  // namespace
}  // namespace gearbox::test
