// Proxy conformance against gearbox's own echo mode as the upstream, over every backend: bodies
// of 0 B to 8 MiB both ways, chunked both ways, pipelining, the request head as the
// upstream received it (hop-by-hop fields, X-Forwarded-*, Via), routes, and failover.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/proxy/proxy_fixture.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;

class ProxyEchoTest : public ProxyTest {
 protected:
  // One echo upstream, the proxy in front of it with --max-body 16m plus `extra`.
  void start_pair(const std::vector<std::string>& extra = {}) {
    ASSERT_TRUE(start_echo_upstream(echo_a_));
    std::vector<std::string> args = {"--max-body", "16m"};
    args.insert(args.end(), extra.begin(), extra.end());
    ASSERT_TRUE(start_proxy({echo_a_.port()}, args));
  }

  // Echoes a Content-Length body of `size` bytes through the proxy, then reuses the connection.
  void expect_echo(std::size_t size) {
    Socket s = Socket::connect(port());
    ASSERT_TRUE(s.valid()) << s.error();
    std::string body = binary_body(size);
    std::string head =
        "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-t\r\n"
        "Content-Length: " +
        std::to_string(size) + "\r\n\r\n";
    HttpResponse r = post_and_read(s, head, body, 60s);
    ASSERT_TRUE(r.ok()) << r.error << "\n" << r.raw_head;
    EXPECT_EQ(r.status, 200) << r.raw_head;
    EXPECT_EQ(r.header("Content-Type"), "application/x-t") << r.raw_head;
    EXPECT_EQ(r.body.size(), body.size());
    EXPECT_TRUE(r.body == body) << "body through the proxy differs from the request body";
    EXPECT_FALSE(r.close_delimited) << r.raw_head;
    ASSERT_TRUE(s.send_all("GET /health HTTP/1.1\r\nHost: test\r\n\r\n"));
    HttpResponse next = s.read_response();
    ASSERT_TRUE(next.ok()) << next.error;
    EXPECT_EQ(next.status, 200);
    EXPECT_EQ(next.body, "ok");
  }

  // The request head the upstream received for `request` (a bodiless request), via echo mode.
  std::string upstream_view(const std::string& request) {
    HttpResponse r = exchange(port(), request);
    EXPECT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, 200) << r.raw_head << r.body;
    return r.body;
  }
};
GEARBOX_CONFORMANCE_SUITE(ProxyEchoTest);

TEST_P(ProxyEchoTest, EmptyBody) {
  start_pair();
  expect_echo(0);
}

TEST_P(ProxyEchoTest, OneByteBody) {
  start_pair();
  expect_echo(1);
}

TEST_P(ProxyEchoTest, Body64KiB) {
  start_pair();
  expect_echo(64 * 1024);
}

TEST_P(ProxyEchoTest, Body8MiB) {
  start_pair();
  expect_echo(8 * 1024 * 1024);
}

TEST_P(ProxyEchoTest, ChunkedBothWays) {
  start_pair();
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  std::string body = binary_body(300'000);
  std::string framed;
  for (std::size_t at = 0, n = 1; at < body.size(); at += n, n = n * 3 + 7) {
    n = std::min(n, body.size() - at);
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", n);
    framed += size + body.substr(at, n) + "\r\n";
  }
  framed += "0\r\n\r\n";
  std::string head =
      "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Type: application/x-t\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  HttpResponse r = post_and_read(s, head, framed);
  ASSERT_TRUE(r.ok()) << r.error << "\n" << r.raw_head;
  EXPECT_EQ(r.status, 200) << r.raw_head;
  EXPECT_TRUE(r.chunked) << "a chunked upstream response must reach the client chunked:\n"
                         << r.raw_head;
  EXPECT_EQ(r.header_count("Content-Length"), 0u) << r.raw_head;
  EXPECT_EQ(r.body.size(), body.size());
  EXPECT_TRUE(r.body == body);
  ASSERT_TRUE(s.send_all("GET /health HTTP/1.1\r\nHost: test\r\n\r\n"));
  HttpResponse next = s.read_response();
  ASSERT_TRUE(next.ok()) << next.error;
  EXPECT_EQ(next.body, "ok");
}

TEST_P(ProxyEchoTest, PipelinedRequestsAnsweredInOrder) {
  start_pair();
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(
      s.send_all("GET /first HTTP/1.1\r\nHost: test\r\n\r\n"
                 "POST /second HTTP/1.1\r\nHost: test\r\nContent-Length: 6\r\n\r\nsecond"
                 "GET /third HTTP/1.1\r\nHost: test\r\n\r\n"));
  HttpResponse a = s.read_response();
  ASSERT_TRUE(a.ok()) << a.error;
  EXPECT_EQ(a.status, 200);
  EXPECT_TRUE(a.body.starts_with("GET /first HTTP/1.1\r\n")) << a.body;
  HttpResponse b = s.read_response();
  ASSERT_TRUE(b.ok()) << b.error;
  EXPECT_EQ(b.status, 200);
  EXPECT_EQ(b.body, "second");
  HttpResponse c = s.read_response();
  ASSERT_TRUE(c.ok()) << c.error;
  EXPECT_EQ(c.status, 200);
  EXPECT_TRUE(c.body.starts_with("GET /third HTTP/1.1\r\n")) << c.body;
  EXPECT_FALSE(s.has_buffered());
}

TEST_P(ProxyEchoTest, HopByHopFieldsRemovedAndForwardingFieldsSet) {
  start_pair();
  std::string seen = upstream_view(
      "GET /head?q=1 HTTP/1.1\r\nHost: app.example\r\n"
      "Connection: keep-alive, X-Secret\r\nX-Secret: do-not-forward\r\n"
      "Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\nTE: trailers\r\n"
      "Trailer: X-Tail\r\nX-Forwarded-For: 6.6.6.6\r\nX-End-To-End: kept\r\n\r\n");
  EXPECT_TRUE(seen.starts_with("GET /head?q=1 HTTP/1.1\r\n")) << seen;
  for (const char* name : {"Connection", "X-Secret", "Keep-Alive", "Proxy-Connection", "TE",
                           "Trailer", "Upgrade", "Transfer-Encoding"}) {
    auto values = head_values(seen, name);
    // Connection: keep-alive/close toward the upstream is the proxy's own hop; anything else
    // from the client must be gone.
    if (std::string_view(name) == "Connection") {
      for (const auto& v : values) {
        EXPECT_EQ(lower(v).find("x-secret"), std::string::npos) << seen;
      }
      continue;
    }
    EXPECT_TRUE(values.empty()) << name << " reached the upstream:\n" << seen;
  }
  EXPECT_EQ(head_values(seen, "X-End-To-End"), std::vector<std::string>{"kept"}) << seen;
  EXPECT_EQ(head_values(seen, "Host"), std::vector<std::string>{"app.example"}) << seen;
  EXPECT_EQ(head_values(seen, "X-Forwarded-For"), std::vector<std::string>{"127.0.0.1"})
      << "an untrusted client's X-Forwarded-For must be replaced:\n"
      << seen;
  EXPECT_EQ(head_values(seen, "X-Forwarded-Proto"), std::vector<std::string>{"http"}) << seen;
  EXPECT_EQ(head_values(seen, "X-Forwarded-Host"), std::vector<std::string>{"app.example"}) << seen;
  auto via = head_values(seen, "Via");
  ASSERT_EQ(via.size(), 1u) << seen;
  EXPECT_NE(via[0].find("1.1 gearbox"), std::string::npos) << seen;
}

// Issue 8 point 3: RFC 9112 §3.2.2: the authority of an absolute-form target replaces the
// received Host (it was forwarded as sent); the target goes upstream in origin-form, and only
// to the configured upstream.
TEST_P(ProxyEchoTest, AbsoluteFormTargetSetsHostFromItsAuthority) {
  start_pair();
  std::string seen =
      upstream_view("GET http://other.example:8080/p?q=1 HTTP/1.1\r\nHost: wrong.example\r\n\r\n");
  EXPECT_TRUE(seen.starts_with("GET /p?q=1 HTTP/1.1\r\n")) << seen;
  EXPECT_EQ(head_values(seen, "Host"), std::vector<std::string>{"other.example:8080"}) << seen;
  EXPECT_EQ(head_values(seen, "X-Forwarded-Host"), std::vector<std::string>{"other.example:8080"})
      << seen;
  HttpResponse userinfo =
      exchange(port(), "GET http://user@other.example/p HTTP/1.1\r\nHost: other.example\r\n\r\n");
  EXPECT_EQ(userinfo.status, 400) << userinfo.raw_head << userinfo.error;
}

// RFC 9110 §9.3.7: a server-wide OPTIONS reaches the upstream as one, also when it came in
// absolute-form with an empty path (HAProxy forwards it; nginx answers 400).
TEST_P(ProxyEchoTest, ServerWideOptionsIsForwardedInAsteriskForm) {
  start_pair();
  std::string seen = upstream_view("OPTIONS * HTTP/1.1\r\nHost: app\r\n\r\n");
  EXPECT_TRUE(seen.starts_with("OPTIONS * HTTP/1.1\r\n")) << seen;
  EXPECT_EQ(head_values(seen, "Host"), std::vector<std::string>{"app"}) << seen;
  seen = upstream_view("OPTIONS http://other.example:8080 HTTP/1.1\r\nHost: app\r\n\r\n");
  EXPECT_TRUE(seen.starts_with("OPTIONS * HTTP/1.1\r\n")) << seen;
  EXPECT_EQ(head_values(seen, "Host"), std::vector<std::string>{"other.example:8080"}) << seen;
  seen = upstream_view("OPTIONS http://other.example:8080/ HTTP/1.1\r\nHost: app\r\n\r\n");
  EXPECT_TRUE(seen.starts_with("OPTIONS / HTTP/1.1\r\n")) << seen;
}

TEST_P(ProxyEchoTest, ForwardedForAppendedForTrustedProxy) {
  start_pair({"--trusted-proxy", "127.0.0.1/32"});
  std::string seen =
      upstream_view("GET / HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: 6.6.6.6, 10.0.0.1\r\n\r\n");
  EXPECT_EQ(head_values(seen, "X-Forwarded-For"),
            std::vector<std::string>{"6.6.6.6, 10.0.0.1, 127.0.0.1"})
      << seen;
  seen = upstream_view("GET / HTTP/1.1\r\nHost: app\r\n\r\n");
  EXPECT_EQ(head_values(seen, "X-Forwarded-For"), std::vector<std::string>{"127.0.0.1"}) << seen;
}

// The trusted-proxy verdict is made once per connection, when it is accepted: later requests on
// the same keep-alive connection keep it, also after the connection slept between them (uring
// frees an idle connection's state and wakes it without the peer's address).
TEST_P(ProxyEchoTest, ForwardedForStaysAppendedOnAKeepAliveConnectionThatSlept) {
  start_pair({"--trusted-proxy", "127.0.0.1/32"});
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  for (int i = 0; i < 4; ++i) {
    // Pauses longer than the uring loop's 50 ms doze: the connection is asleep each time.
    std::this_thread::sleep_for(std::chrono::milliseconds(120));
    ASSERT_TRUE(s.send_all("GET / HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: 6.6.6.6\r\n\r\n"));
    HttpResponse r = s.read_response();
    ASSERT_TRUE(r.ok()) << "request " << i << ": " << r.error;
    EXPECT_EQ(head_values(r.body, "X-Forwarded-For"),
              std::vector<std::string>{"6.6.6.6, 127.0.0.1"})
        << "request " << i << ":\n"
        << r.body;
  }
}

TEST_P(ProxyEchoTest, ExistingViaIsAppendedTo) {
  start_pair();
  std::string seen = upstream_view("GET / HTTP/1.1\r\nHost: app\r\nVia: 1.0 fred\r\n\r\n");
  auto via = head_values(seen, "Via");
  std::string joined;
  for (const auto& v : via) {
    joined += v + ",";
  }
  EXPECT_NE(joined.find("1.0 fred"), std::string::npos) << seen;
  EXPECT_NE(joined.find("1.1 gearbox"), std::string::npos) << seen;
}

TEST_P(ProxyEchoTest, RoutesByPrefixAndRejectsUnroutableTargets) {
  ASSERT_TRUE(start_echo_upstream(echo_a_));
  std::filesystem::path file =
      std::filesystem::temp_directory_path() /
      ("gearbox-proxy-routes-" + std::to_string(::getpid()) + "-" + GetParam() + ".toml");
  {
    std::ofstream out(file);
    out << "mode = \"proxy\"\nlisten = \"127.0.0.1:0\"\n"
        << "[upstreams.api]\nservers = [\"127.0.0.1:" << echo_a_.port() << "\"]\n"
        << "[[routes]]\nprefix = \"/api/\"\nupstream = \"api\"\nstrip_prefix = true\n";
  }
  bool started = start_proxy({}, {"--config", file.string()});
  std::filesystem::remove(file);
  ASSERT_TRUE(started);
  std::string seen = upstream_view("GET /api/users?id=7 HTTP/1.1\r\nHost: app\r\n\r\n");
  EXPECT_TRUE(seen.starts_with("GET /users?id=7 HTTP/1.1\r\n")) << seen;
  HttpResponse miss = exchange(port(), "GET /other HTTP/1.1\r\nHost: app\r\n\r\n");
  ASSERT_TRUE(miss.ok()) << miss.error;
  EXPECT_EQ(miss.status, 404) << miss.raw_head;
  // A server-wide OPTIONS goes where "/" would: nowhere here.
  HttpResponse star = exchange(port(), "OPTIONS * HTTP/1.1\r\nHost: app\r\n\r\n");
  EXPECT_EQ(star.status, 404) << star.raw_head << star.error;
  HttpResponse dots = exchange(port(), "GET /api/../secret HTTP/1.1\r\nHost: app\r\n\r\n");
  EXPECT_EQ(dots.status, 400) << dots.raw_head << dots.error;
}

TEST_P(ProxyEchoTest, FailoverWhenOneOfTwoUpstreamsDies) {
  ASSERT_TRUE(start_echo_upstream(echo_a_));
  ASSERT_TRUE(start_echo_upstream(echo_b_));
  ASSERT_TRUE(start_proxy({echo_a_.port(), echo_b_.port()}));
  allow_error("127.0.0.1:" + std::to_string(echo_a_.port()));
  CurlClient client;
  for (int i = 0; i < 50; ++i) {
    if (i == 10) {
      EXPECT_TRUE(echo_a_.wait_for_log("gearbox: access:", 1s))
          << "round robin never reached the first upstream";
      EXPECT_TRUE(echo_b_.wait_for_log("gearbox: access:", 1s))
          << "round robin never reached the second upstream";
      ASSERT_EQ(echo_a_.stop(), 0) << echo_a_.log_text();
    }
    auto r = client.get(url("/plaintext"), 3s);
    ASSERT_EQ(r.curl_code, 0) << "request " << i << ": " << r.error;
    ASSERT_EQ(r.status, 200) << "request " << i << ":\n" << r.head << r.body;
    EXPECT_EQ(r.body, "Hello, World!") << "request " << i;
  }
  EXPECT_GE(wait_served(echo_b_, 40), 40) << "the surviving upstream should have taken the rest";
}

TEST_P(ProxyEchoTest, SigtermWithProxiedRequestsInFlightDrainsEveryOne) {
  // Many connection threads finish at once while the server shuts down: the ThreadSanitizer run
  // of `make test` once caught thread's last connection reading the state the acceptor had
  // just freed.
  constexpr int kClients = 24;
  start_pair({"--drain-timeout", "5s"});
  const std::string request = "GET /delay/800 HTTP/1.1\r\nHost: t\r\n\r\n";
  std::vector<Socket> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Socket::connect(port()));
    ASSERT_TRUE(clients.back().valid()) << clients.back().error();
    ASSERT_TRUE(clients.back().send_all(request));
  }
  // Every one accepted (prefork forks workers for them on demand): drain resets what still
  // waits in the listen backlog, as nginx does.
  for (int i = 0; i < 300 && listen_queue(port()) != 0; ++i) {
    std::this_thread::sleep_for(10ms);
  }
  ASSERT_EQ(listen_queue(port()), 0) << "connections still unaccepted after 3 s";
  server_.send_signal(SIGTERM);
  for (int i = 0; i < kClients; ++i) {
    HttpResponse r = clients[i].read_response(5s);
    ASSERT_TRUE(r.ok()) << "client " << i << ": " << r.error << "\nlog:\n" << server_.log_text();
    EXPECT_EQ(r.status, 200) << "client " << i;
  }
  auto status = server_.wait_exit(5s);
  ASSERT_TRUE(status.has_value()) << server_.log_text();
  EXPECT_EQ(*status, 0) << server_.log_text();
}

}  // namespace
}  // namespace gearbox::test
