// Proxy conformance against a scripted in-process upstream (tests/support/fake_upstream.hpp), over
// every backend: keep-alive reuse and the keep-alive race, response header rewriting, Upgrade
// tunnelling, 502 (upstream down, malformed response), 504 (slow upstream), mid-response close,
// and a CL+TE smuggling attempt that must never reach the upstream.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/proxy/proxy_fixture.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

constexpr const char* kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

class ProxyFaultTest : public ProxyTest {
 protected:
  // Starts the fake upstream with `handler` and the proxy in front of it.
  void start_with(FakeUpstream::Handler handler, const std::vector<std::string>& extra = {}) {
    ASSERT_TRUE(fake_.start(std::move(handler)));
    ASSERT_TRUE(start_proxy({fake_.port()}, extra));
    allow_error("127.0.0.1:" + std::to_string(fake_.port()));
  }

  // Sends `count` GETs on one keep-alive connection, `gap` apart, and expects each answered 200
  // "ok" (by the upstream's kOk, never by bytes it sent unasked).
  void expect_ok_on_one_connection(int count, std::chrono::milliseconds gap) {
    Socket s = Socket::connect(port());
    ASSERT_TRUE(s.valid()) << s.error();
    for (int i = 0; i < count; ++i) {
      if (i > 0) {
        std::this_thread::sleep_for(gap);
      }
      ASSERT_TRUE(s.send_all("GET /r" + std::to_string(i) + " HTTP/1.1\r\nHost: app\r\n\r\n"));
      HttpResponse r = s.read_response();
      ASSERT_TRUE(r.ok()) << "request " << i << ": " << r.error;
      ASSERT_EQ(r.status, 200) << "request " << i << ": " << r.raw_head;
      ASSERT_EQ(r.body, "ok") << "request " << i;
    }
  }

  // Sends one GET and expects a 502 that carries nothing of `poison` (the upstream's bytes).
  void expect_502_for(const std::string& upstream_response, std::string_view poison) {
    start_with(fixed_response_handler(upstream_response));
    HttpResponse r = exchange(port(), "GET /x HTTP/1.1\r\nHost: app\r\n\r\n");
    EXPECT_EQ(r.status, 502) << r.raw_head << r.body << "\n" << r.error;
    EXPECT_EQ(r.body.find(poison), std::string::npos) << r.body;
    EXPECT_EQ(fake_.requests(), 1);
  }
};
GEARBOX_CONFORMANCE_SUITE(ProxyFaultTest);

TEST_P(ProxyFaultTest, KeepAliveReusesUpstreamConnections) {
  start_with(fixed_response_handler(kOk));
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(s.send_all("GET /r" + std::to_string(i) + " HTTP/1.1\r\nHost: app\r\n\r\n"));
    HttpResponse r = s.read_response();
    ASSERT_TRUE(r.ok()) << "request " << i << ": " << r.error;
    ASSERT_EQ(r.status, 200) << "request " << i << ": " << r.raw_head;
    ASSERT_EQ(r.body, "ok");
  }
  EXPECT_EQ(fake_.requests(), 100);
  EXPECT_LE(fake_.connections(), 5) << "100 sequential requests should share pooled connections";
}

TEST_P(ProxyFaultTest, KeepAliveRaceIsRetriedOnAFreshConnection) {
  // The upstream answers one request per connection without saying Connection: close; the
  // next request on that connection is read and dropped, and the connection closed (a FIN or a
  // RST, alternately): the pooled connection dies just as the proxy reuses it.
  std::atomic<int> index{0};
  start_with([&](FakeConnection& conn) {
    const bool reset = index.fetch_add(1) % 2 == 1;
    auto head = conn.read_head();
    if (!head || !conn.send(kOk)) {
      return;
    }
    conn.read_some(5s);
    conn.close(reset);
  });
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(s.send_all("GET /r" + std::to_string(i) + " HTTP/1.1\r\nHost: app\r\n\r\n"));
    HttpResponse r = s.read_response();
    ASSERT_TRUE(r.ok()) << "request " << i << ": " << r.error;
    ASSERT_EQ(r.status, 200) << "request " << i << ": " << r.raw_head << r.body << "\nlog:\n"
                             << server_.log_text();
  }
  EXPECT_EQ(fake_.requests(), 20);
  EXPECT_GE(fake_.connections(), 20);
}

// An idle pooled connection the upstream closed (its keep-alive timeout, 150 ms here, is
// shorter than ours) is seen to be closed before it is reused: the next request goes to a fresh
// connection at once, never to the dead one first (which would need the keep-alive-race retry,
// logged as the upstream closing before responding).
TEST_P(ProxyFaultTest, IdleConnectionTheUpstreamClosedIsNotSentTheNextRequest) {
  start_with([](FakeConnection& conn) {
    while (conn.read_head(150ms)) {
      if (!conn.send(kOk)) {
        return;
      }
    }
    conn.close();
  });
  expect_ok_on_one_connection(3, 400ms);
  EXPECT_EQ(fake_.requests(), 3);
  EXPECT_EQ(fake_.connections(), 3);
  EXPECT_EQ(server_.log_text().find("before responding"), std::string::npos) << server_.log_text();
}

// Bytes an upstream sends on an idle pooled connection, unasked (here a whole response, 50 ms
// after the one asked for), are never taken for the response to the next request sent on it:
// that connection is dropped, and the next request gets its own answer on a fresh one.
TEST_P(ProxyFaultTest, UnaskedBytesOnAnIdleConnectionAreNeverTakenForTheNextResponse) {
  start_with([](FakeConnection& conn) {
    if (!conn.read_head() || !conn.send(kOk)) {
      return;
    }
    std::this_thread::sleep_for(50ms);
    if (!conn.send("HTTP/1.1 200 OK\r\nContent-Length: 6\r\n\r\npoison")) {
      return;
    }
    while (conn.read_head(2s)) {
      if (!conn.send(kOk)) {
        return;
      }
    }
  });
  expect_ok_on_one_connection(3, 300ms);
  EXPECT_EQ(fake_.connections(), 3);
}

TEST_P(ProxyFaultTest, ResponseHopByHopFieldsRemovedAndViaAdded) {
  start_with(fixed_response_handler(
      "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive, X-Resp-Secret\r\n"
      "X-Resp-Secret: 1\r\nKeep-Alive: timeout=5\r\nX-End-To-End: kept\r\n\r\nok"));
  HttpResponse r = exchange(port(), "GET / HTTP/1.1\r\nHost: app\r\n\r\n");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok");
  EXPECT_EQ(r.header_count("X-Resp-Secret"), 0u) << r.raw_head;
  EXPECT_EQ(r.header_count("Keep-Alive"), 0u) << r.raw_head;
  EXPECT_FALSE(r.has_connection_token("X-Resp-Secret")) << r.raw_head;
  EXPECT_EQ(r.header("X-End-To-End"), "kept") << r.raw_head;
  ASSERT_TRUE(r.header("Via").has_value()) << r.raw_head;
  EXPECT_NE(r.header("Via")->find("1.1 gearbox"), std::string::npos) << r.raw_head;
}

TEST_P(ProxyFaultTest, UpgradeIsTunnelledAfter101) {
  start_with([&](FakeConnection& conn) {
    if (!conn.read_head()) {
      return;
    }
    conn.send(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n");
    for (;;) {
      std::string bytes = conn.read_some(5s);
      if (bytes.empty() || !conn.send(bytes)) {
        return;
      }
    }
  });
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(
      s.send_all("GET /ws HTTP/1.1\r\nHost: app\r\nConnection: Upgrade\r\n"
                 "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\r\n"));
  HttpResponse r = s.read_response(3s);
  ASSERT_TRUE(r.ok()) << r.error << r.raw_head;
  ASSERT_EQ(r.status, 101) << r.raw_head;
  EXPECT_TRUE(r.has_connection_token("upgrade")) << r.raw_head;
  EXPECT_EQ(lower(r.header("Upgrade").value_or("")), "websocket") << r.raw_head;
  ASSERT_EQ(fake_.request_heads().size(), 1u);
  const std::string upstream_head = fake_.request_heads()[0];
  EXPECT_EQ(head_values(upstream_head, "Upgrade"), std::vector<std::string>{"websocket"})
      << upstream_head;
  EXPECT_EQ(head_values(upstream_head, "Sec-WebSocket-Version"), std::vector<std::string>{"13"})
      << upstream_head;
  ASSERT_TRUE(s.send_all("ping-1"));
  EXPECT_EQ(s.read_some(6, 3s), "ping-1");
  std::string big = binary_body(256 * 1024);
  std::string back;
  std::string send_error;
  bool sent = false;
  std::thread sender([&] { sent = send_all_fd(s.fd(), big, 5s, &send_error); });
  auto deadline = Clock::now() + 5s;
  while (back.size() < big.size() && Clock::now() < deadline) {
    std::string got = s.read_some(1, 1s);
    if (got.empty()) {
      break;
    }
    back += got;
  }
  sender.join();
  EXPECT_TRUE(sent) << send_error;
  EXPECT_EQ(back.size(), big.size());
  EXPECT_TRUE(back == big) << "tunnelled bytes differ";
  s.shutdown_write();
  CloseResult closed = s.wait_for_close(3s);
  EXPECT_TRUE(closed.closed) << "the tunnel should close once the upstream closes";
  EXPECT_TRUE(closed.extra.empty()) << closed.extra;
}

// Issue 8 point 12: an upstream that never sends 100 Continue, so the interim response can
// only come from the proxy, and that records the head it got, which must carry no Expect
// (the proxy answered it; RFC 9110 §10.1.1).
TEST_P(ProxyFaultTest, ExpectContinueAnsweredByTheProxy) {
  start_with([&](FakeConnection& conn) {
    if (!conn.read_head()) {
      return;
    }
    std::string body = conn.read_exact(5);
    conn.send("HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
              body);
  });
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(
      s.send_all("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
                 "Expect: 100-continue\r\n\r\n"));
  HttpResponse interim = s.read_response(3s);
  ASSERT_TRUE(interim.ok()) << interim.error;
  ASSERT_EQ(interim.status, 100) << interim.raw_head;
  ASSERT_TRUE(s.send_all("hello"));
  HttpResponse r = s.read_response();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200) << r.raw_head;
  EXPECT_EQ(r.body, "hello");
  ASSERT_EQ(fake_.request_heads().size(), 1u);
  const std::string upstream_head = fake_.request_heads()[0];
  EXPECT_TRUE(upstream_head.starts_with("POST /echo HTTP/1.1\r\n")) << upstream_head;
  EXPECT_TRUE(head_values(upstream_head, "Expect").empty()) << "Expect reached the upstream:\n"
                                                            << upstream_head;
}

// Issue 8 point 1: CONNECT is refused (501) in proxy mode too, and never reaches an upstream.
TEST_P(ProxyFaultTest, ConnectIsRefusedWith501AndNeverReachesTheUpstream) {
  start_with(fixed_response_handler("HTTP/1.1 200 Connection Established\r\n\r\n"));
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(
      s.send_all("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01"));
  HttpResponse r = s.read_response(3s);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 501) << r.raw_head;
  CloseResult closed = s.wait_for_close(3s);
  EXPECT_TRUE(closed.closed) << "the connection should close after the 501";
  EXPECT_TRUE(closed.extra.empty()) << closed.extra;
  EXPECT_EQ(fake_.connections(), 0);
}

// Issue 8 point 2: a chunked request whose trailer section carries Transfer-Encoding and
// Content-Length got 501; trailer fields are not framing (RFC 9110 §6.5.1) and the upstream
// gets none of them (the trailer section is dropped; RFC 9112 §7.1.2).
TEST_P(ProxyFaultTest, FramingFieldsInATrailerAreIgnoredAndNotForwarded) {
  std::mutex mutex;
  std::string upstream_bytes;
  start_with([&](FakeConnection& conn) {
    for (;;) {
      auto head = conn.read_head();
      if (!head) {
        return;
      }
      std::string got = *head;
      if (got.starts_with("POST")) {
        while (!got.ends_with("\r\n0\r\n\r\n")) {
          std::string more = conn.read_some(3s);
          if (more.empty()) {
            break;
          }
          got += more;
        }
      }
      {
        std::lock_guard lock(mutex);
        upstream_bytes += got;
      }
      if (!conn.send(kOk)) {
        return;
      }
    }
  });
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(
      s.send_all("POST /t HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
                 "0\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\nX-Tail: 1\r\n\r\n"
                 "GET /after HTTP/1.1\r\nHost: app\r\n\r\n"));
  HttpResponse r = s.read_response(3s);
  ASSERT_TRUE(r.ok()) << r.error << r.raw_head;
  EXPECT_EQ(r.status, 200) << r.raw_head << r.body;
  HttpResponse after = s.read_response(3s);
  ASSERT_TRUE(after.ok()) << after.error;
  EXPECT_EQ(after.status, 200);
  EXPECT_EQ(fake_.request_lines(),
            (std::vector<std::string>{"POST /t HTTP/1.1", "GET /after HTTP/1.1"}));
  std::lock_guard lock(mutex);
  const std::size_t body = upstream_bytes.find("\r\n\r\n") + 4;
  EXPECT_EQ(upstream_bytes.substr(body, upstream_bytes.find("GET /after") - body),
            "5\r\nhello\r\n0\r\n\r\n")
      << upstream_bytes;
  EXPECT_EQ(upstream_bytes.find("gzip"), std::string::npos) << upstream_bytes;
  EXPECT_EQ(upstream_bytes.find("X-Tail"), std::string::npos) << upstream_bytes;
}

TEST_P(ProxyFaultTest, BadGatewayWhenUpstreamDown) {
  int dead = closed_port();
  ASSERT_TRUE(start_proxy({dead}));
  allow_error("127.0.0.1:" + std::to_string(dead));
  HttpResponse r = exchange(port(), "GET / HTTP/1.1\r\nHost: app\r\n\r\n");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 502) << r.raw_head;
  EXPECT_TRUE(server_.wait_for_log("127.0.0.1:" + std::to_string(dead), 1s))
      << "the error should be logged with the upstream's address:\n"
      << server_.log_text();
}

TEST_P(ProxyFaultTest, GatewayTimeoutWhenUpstreamIsSlow) {
  start_with(
      [](FakeConnection& conn) {
        if (conn.read_head()) {
          conn.wait_for_close(10s);
        }
      },
      {"--proxy-read-timeout", "500ms"});
  auto begin = Clock::now();
  HttpResponse r = exchange(port(), "GET /slow HTTP/1.1\r\nHost: app\r\n\r\n", 5s);
  auto took = Clock::now() - begin;
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 504) << r.raw_head;
  EXPECT_GE(took, 450ms);
  EXPECT_LT(took, 3s);
}

// Issue 8 point 4: one of three upstreams goes silent while connections to it are pooled (its
// link cut: it accepts and reads, and never answers). Idempotent requests sent to it went to
// 504 after the read timeout although two servers were healthy; now each goes to the next
// server, none fails, and the first timeout marks the silent server down (max_fails 1 for
// fail_timeout 10 s) so that the next requests skip it. At most one request per client
// connection can have been sent to it before that (each prefork worker and pool thread keeps
// its own health state).
TEST_P(ProxyFaultTest, BlackHoledUpstreamCostsRetriesNotErrors) {
  std::atomic<bool> silent{false};
  ASSERT_TRUE(fake_.start([&](FakeConnection& conn) {
    while (conn.read_head()) {
      if (silent.load()) {
        conn.wait_for_close(20s);
        return;
      }
      if (!conn.send(kOk)) {
        return;
      }
    }
  }));
  FakeUpstream healthy_a;
  FakeUpstream healthy_b;
  ASSERT_TRUE(healthy_a.start(fixed_response_handler(kOk)));
  ASSERT_TRUE(healthy_b.start(fixed_response_handler(kOk)));
  ASSERT_TRUE(start_proxy({fake_.port(), healthy_a.port(), healthy_b.port()},
                          {"--proxy-read-timeout", "1500ms"}));
  allow_error("127.0.0.1:" + std::to_string(fake_.port()));
  constexpr int kClients = 4;
  constexpr int kWarmUp = 3;
  constexpr int kRequests = 10;
  std::vector<Socket> clients;
  for (int c = 0; c < kClients; ++c) {
    clients.push_back(Socket::connect(port()));
    ASSERT_TRUE(clients.back().valid()) << clients.back().error();
  }
  auto run = [&](int count, std::atomic<int>& failed, std::string& first_error) {
    std::mutex mutex;
    std::vector<std::thread> threads;
    for (int c = 0; c < kClients; ++c) {
      threads.emplace_back([&, c] {
        for (int i = 0; i < count; ++i) {
          HttpResponse r = clients[c].send_all("GET /r HTTP/1.1\r\nHost: app\r\n\r\n")
                               ? clients[c].read_response(10s)
                               : HttpResponse{};
          if (!r.ok() || r.status != 200 || r.body != "ok") {
            std::lock_guard lock(mutex);
            if (failed.fetch_add(1) == 0) {
              first_error = std::to_string(r.status) + " " + r.error + "\n" + r.raw_head;
            }
          }
        }
      });
    }
    for (auto& t : threads) {
      t.join();
    }
  };
  std::atomic<int> failed{0};
  std::string first_error;
  run(kWarmUp, failed, first_error);  // connections to all three are pooled now
  ASSERT_EQ(failed.load(), 0) << first_error;
  ASSERT_GT(fake_.requests(), 0) << "round robin never reached the first upstream";
  const int before = fake_.requests();
  silent.store(true);
  run(kRequests, failed, first_error);
  EXPECT_EQ(failed.load(), 0) << "requests failed although two upstreams were healthy; first: "
                              << first_error << "\nlog:\n"
                              << server_.log_text();
  const int lost = fake_.requests() - before;
  std::printf("[ info ] the silent upstream got %d of %d requests, %d failed\n", lost,
              kClients * kRequests, failed.load());
  EXPECT_GE(lost, 1) << "round robin never tried the silent upstream";
  EXPECT_LE(lost, kClients) << "the silent upstream kept getting requests after a timeout:\n"
                            << server_.log_text();
  EXPECT_EQ(healthy_a.requests() + healthy_b.requests() + before, kClients * (kWarmUp + kRequests));
  healthy_a.stop();
  healthy_b.stop();
}

TEST_P(ProxyFaultTest, GatewayTimeoutWhenConnectHangsPastProxyConnectTimeout) {
  // A listener whose accept queue is full (backlog 0, one connection waiting): the kernel drops
  // further SYNs, so a connect to it neither succeeds nor fails.
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(lfd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(lfd, 0), 0);
  ASSERT_EQ(::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int hung = ntohs(addr.sin_port);
  Socket filler = Socket::connect(hung);
  ASSERT_TRUE(filler.valid()) << filler.error();
  ASSERT_TRUE(start_proxy({hung}, {"--proxy-connect-timeout", "500ms"}));
  allow_error("127.0.0.1:" + std::to_string(hung));
  auto begin = Clock::now();
  HttpResponse r = exchange(port(), "GET /x HTTP/1.1\r\nHost: app\r\n\r\n", 4s);
  auto took = Clock::now() - begin;
  ::close(lfd);
  ASSERT_TRUE(r.ok()) << "no answer within 4 s with --proxy-connect-timeout 500ms: " << r.error;
  EXPECT_EQ(r.status, 504) << r.raw_head;
  EXPECT_GE(took, 450ms) << "answered before the connect timeout";
  EXPECT_LT(took, 2500ms);
  EXPECT_TRUE(server_.wait_for_log("connect timed out", 1s)) << server_.log_text();
}

TEST_P(ProxyFaultTest, GatewayTimeoutWhenUpstreamStopsReadingPastProxySendTimeout) {
  // The upstream reads the head, then nothing: the request body fills its buffers and the
  // proxy's writes stop; --proxy-send-timeout ends the exchange with a 504.
  start_with(
      [this](FakeConnection& conn) {
        int small = 4096;
        ::setsockopt(conn.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
        if (conn.read_head()) {
          while (!fake_.stopping()) {
            std::this_thread::sleep_for(10ms);
          }
        }
      },
      {"--proxy-send-timeout", "1s", "--max-body", "0"});
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  auto begin = Clock::now();
  ASSERT_TRUE(
      s.send_all("POST /upload HTTP/1.1\r\nHost: app\r\nContent-Length: 100000000000\r\n\r\n"));
  std::atomic<bool> stop{false};
  std::thread sender([&] {
    const std::string chunk(64 * 1024, 'b');
    while (!stop.load() && send_all_fd(s.fd(), chunk, 100ms)) {
    }
  });
  HttpResponse r = s.read_response(6s);
  auto took = Clock::now() - begin;
  stop = true;
  sender.join();
  ASSERT_TRUE(r.ok()) << "no answer within 6 s with --proxy-send-timeout 1s: " << r.error;
  EXPECT_EQ(r.status, 504) << r.raw_head;
  EXPECT_GE(took, 900ms) << "answered before the send timeout";
  EXPECT_LT(took, 3s);
  EXPECT_TRUE(server_.wait_for_log("send timed out", 1s)) << server_.log_text();
}

// Connections from the server under test to 127.0.0.1:`port` that still hold a descriptor
// (any TCP state but TIME_WAIT), from /proc/net/tcp: those whose socket is open in the server's
// process tree. Not every line to that port: a port is reused, and the lingering sockets of an
// earlier server's clients (a test run alongside) would count.
int held_connections_to(const ServerProcess& server, int port) {
  std::set<unsigned long> inodes;
  std::vector<pid_t> pids = server.children();  // prefork's workers
  pids.push_back(server.pid());
  for (pid_t pid : pids) {
    std::error_code ec;
    for (const auto& e :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd", ec)) {
      unsigned long inode = 0;
      const std::string target = std::filesystem::read_symlink(e.path(), ec).string();
      if (std::sscanf(target.c_str(), "socket:[%lu]", &inode) == 1) {
        inodes.insert(inode);
      }
    }
  }
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);
  int n = 0;
  while (std::getline(in, line)) {
    unsigned sl, local_port, remote_port, state;
    unsigned long inode = 0;
    char local[16], remote[16];
    if (std::sscanf(line.c_str(),
                    " %u: %8[0-9A-F]:%X %8[0-9A-F]:%X %X %*X:%*X %*X:%*X %*X %*u %*u %lu", &sl,
                    local, &local_port, remote, &remote_port, &state, &inode) == 7 &&
        static_cast<int>(remote_port) == port && state != 0x06 && inodes.count(inode) != 0) {
      ++n;
    }
  }
  return n;
}

// Issue 8 point 6: descriptors grew under sustained proxy load. Not a leak: idle upstream
// connections kept for reuse, at most --proxy-keepalive per server in each pool, each closed
// after --proxy-keepalive-timeout. After the load they must fall back to that bound, then to
// none, and the server's descriptor count to where it was.
TEST_P(ProxyFaultTest, DescriptorsSettleAfterLoadToTheKeepaliveBoundThenToTheStart) {
  constexpr int kClients = 16;
  constexpr int kKeep = 2;
  start_with(fixed_response_handler(kOk),
             {"--proxy-keepalive", std::to_string(kKeep), "--proxy-keepalive-timeout", "1s"});
  const bool prefork = GetParam() == "prefork";
  std::this_thread::sleep_for(300ms);  // prefork's spare workers are forked
  const int fds_before = server_.open_fds();
  // Keep-alive load plus new connections: each client reconnects every 20 requests.
  std::atomic<int> failed{0};
  std::vector<std::thread> clients;
  const auto until = Clock::now() + 2s;
  for (int c = 0; c < kClients; ++c) {
    clients.emplace_back([&] {
      while (Clock::now() < until) {
        Socket s = Socket::connect(port());
        for (int i = 0; i < 20 && s.valid(); ++i) {
          HttpResponse r = s.send_all("GET /load HTTP/1.1\r\nHost: app\r\n\r\n")
                               ? s.read_response(5s)
                               : HttpResponse{};
          if (!r.ok() || r.status != 200) {
            ++failed;
            break;
          }
        }
      }
    });
  }
  for (std::thread& t : clients) {
    t.join();
  }
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(fake_.requests(), kClients * 20);
  // Within the keep-alive timeout: idle upstream connections, at most kKeep per pool (one per
  // prefork worker, one per process otherwise).
  std::this_thread::sleep_for(200ms);
  const int pools = prefork ? static_cast<int>(server_.children().size()) : 1;
  const int held = held_connections_to(server_, fake_.port());
  std::printf("%s: %d upstream connections made, %d held after the load (bound %d x %d)\n",
              GetParam().c_str(), fake_.connections(), held, kKeep, pools);
  EXPECT_LE(held, kKeep * pools) << "more idle upstream connections than --proxy-keepalive";
  // Past the keep-alive timeout (plus the once-a-second sweep): none.
  bool settled = false;
  for (int i = 0; i < 50 && !settled; ++i) {
    std::this_thread::sleep_for(100ms);
    settled = held_connections_to(server_, fake_.port()) == 0;
  }
  EXPECT_TRUE(settled) << held_connections_to(server_, fake_.port())
                       << " upstream connections still held 5 s after the load";
  if (!prefork) {  // prefork's worker count follows the load, and its descriptors with it
    int fds_after = server_.open_fds();
    for (int i = 0; i < 30 && fds_after != fds_before; ++i) {
      std::this_thread::sleep_for(100ms);
      fds_after = server_.open_fds();
    }
    EXPECT_EQ(fds_after, fds_before) << "descriptors did not settle back after the load";
  }
}

TEST_P(ProxyFaultTest, BadGatewayOnTwoContentLengths) {
  expect_502_for("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\npoison",
                 "poison");
}

TEST_P(ProxyFaultTest, BadGatewayOnContentLengthWithTransferEncoding) {
  expect_502_for(
      "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
      "6\r\npoison\r\n0\r\n\r\n",
      "poison");
}

TEST_P(ProxyFaultTest, BadGatewayOnMalformedStatusLine) {
  expect_502_for("HTTP/1.1 2x0 OK\r\nContent-Length: 6\r\n\r\npoison", "poison");
}

TEST_P(ProxyFaultTest, UpstreamCloseMidBodyTruncatesTheClient) {
  start_with([](FakeConnection& conn) {
    if (conn.read_head()) {
      conn.send("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n" + std::string(100, 'x'));
    }
  });
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(s.send_all("GET /big HTTP/1.1\r\nHost: app\r\n\r\n"));
  HttpResponse r = s.read_response(3s);
  EXPECT_EQ(r.status, 200) << r.raw_head;
  EXPECT_FALSE(r.ok()) << "a truncated response must not look complete";
  EXPECT_LT(r.body.size(), 1000u);
  EXPECT_TRUE(s.wait_for_close(2s).closed) << "the client connection should be closed";
}

TEST_P(ProxyFaultTest, UpstreamCloseMidChunkedBodyTruncatesTheClient) {
  start_with([](FakeConnection& conn) {
    if (conn.read_head()) {
      conn.send("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n64\r\n" +
                std::string(100, 'x') + "\r\n64\r\n" + std::string(50, 'y'));
    }
  });
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(s.send_all("GET /big HTTP/1.1\r\nHost: app\r\n\r\n"));
  HttpResponse r = s.read_response(3s);
  EXPECT_EQ(r.status, 200) << r.raw_head;
  EXPECT_FALSE(r.ok()) << "a truncated chunked response must not get its last chunk";
  EXPECT_TRUE(s.wait_for_close(2s).closed) << "the client connection should be closed";
}

TEST_P(ProxyFaultTest, PassiveHealthSkipsAFailedServer) {
  int dead = closed_port();
  ASSERT_TRUE(fake_.start(fixed_response_handler(kOk)));
  ASSERT_TRUE(start_proxy({dead, fake_.port()}));
  const std::string dead_address = "127.0.0.1:" + std::to_string(dead);
  allow_error(dead_address);
  CurlClient client;
  for (int i = 0; i < 20; ++i) {
    auto r = client.get(url("/r" + std::to_string(i)), 3s);
    ASSERT_EQ(r.curl_code, 0) << "request " << i << ": " << r.error;
    ASSERT_EQ(r.status, 200) << "request " << i << ":\n" << r.head << r.body;
  }
  EXPECT_EQ(fake_.requests(), 20);
  int attempts = 0;
  for (const auto& line : server_.log_lines()) {
    attempts +=
        line.find(dead_address) != std::string::npos && line.find("connect") != std::string::npos
            ? 1
            : 0;
  }
  EXPECT_EQ(attempts, 1) << "after one failure (max_fails 1) the dead server should be skipped "
                            "for fail_timeout (10 s):\n"
                         << server_.log_text();
}

TEST_P(ProxyFaultTest, ClientGoneAbandonsTheUpstreamRequest) {
  std::atomic<bool> upstream_closed{false};
  start_with([&](FakeConnection& conn) {
    if (conn.read_head()) {
      conn.wait_for_close(10s);
      upstream_closed.store(true);
    }
  });
  {
    Socket s = Socket::connect(port());
    ASSERT_TRUE(s.valid()) << s.error();
    ASSERT_TRUE(s.send_all("GET /slow HTTP/1.1\r\nHost: app\r\n\r\n"));
    auto deadline = Clock::now() + 3s;
    while (fake_.requests() == 0 && Clock::now() < deadline) {
      std::this_thread::sleep_for(5ms);
    }
    ASSERT_EQ(fake_.requests(), 1);
    s.close(/*reset=*/true);
  }
  auto deadline = Clock::now() + 3s;
  while (!upstream_closed.load() && Clock::now() < deadline) {
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_TRUE(upstream_closed.load())
      << "the upstream connection should be closed soon after the client went away (the "
         "read timeout is the default 60 s)";
}

TEST_P(ProxyFaultTest, CloseDelimitedResponseEndsAtUpstreamClose) {
  start_with([](FakeConnection& conn) {
    if (conn.read_head()) {
      conn.send("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close-body");
    }
  });
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(s.send_all("GET / HTTP/1.1\r\nHost: app\r\n\r\n"));
  HttpResponse r = s.read_response(3s);
  ASSERT_TRUE(r.ok()) << r.error << r.raw_head;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "until-close-body");
}

TEST_P(ProxyFaultTest, SmugglingAttemptNeverReachesUpstream) {
  start_with(fixed_response_handler(kOk));
  const std::string smuggled = "0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: app\r\n\r\n";
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(s.send_all(
      "POST /x HTTP/1.1\r\nHost: app\r\nContent-Length: " + std::to_string(smuggled.size()) +
      "\r\nTransfer-Encoding: chunked\r\n\r\n" + smuggled));
  HttpResponse r = s.read_response(3s);
  EXPECT_EQ(r.status, 400) << r.raw_head << r.error;
  CloseResult closed = s.wait_for_close(2s);
  EXPECT_TRUE(closed.closed) << "the connection should close after the 400";
  EXPECT_TRUE(closed.extra.empty()) << "bytes after the 400: " << closed.extra;
  // A later, clean request is the only one the upstream ever sees.
  HttpResponse after = exchange(port(), "GET /after HTTP/1.1\r\nHost: app\r\n\r\n");
  ASSERT_TRUE(after.ok()) << after.error;
  EXPECT_EQ(after.status, 200);
  EXPECT_EQ(fake_.request_lines(), std::vector<std::string>{"GET /after HTTP/1.1"});
}

}  // namespace
}  // namespace gearbox::test
