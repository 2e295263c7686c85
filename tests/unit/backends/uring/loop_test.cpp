// The uring loop in-process, under ASan in `make test`: connections closed while a receive, a
// send, an upstream connect or a deadline is in flight, resets mid-body and mid-response, and a
// drain of 1,000 idle connections. A CQE resolved into a freed frame is a heap-use-after-free
// here, and a frame freed with an operation in flight trips RingPump's assertion.
#include "backends/uring/loop.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "backends/common/socket.hpp"
#include "backends/uring/ring.hpp"
#include "server/balancer.hpp"
#include "server/config_load.hpp"
#include "tests/support/fake_upstream.hpp"
#include "tests/support/http_client.hpp"

namespace gearbox::backends::uring {
namespace {

using namespace std::chrono_literals;
using test::Millis;
using test::Socket;

// Every test runs twice: with the ring features this kernel has, and with none of them (plain
// ring, single-shot accept and receive into spare buffers: the fallback paths).
bool g_basic_ring = false;
unsigned g_ring_buffers = Ring::kBufferCount;  // the provided-buffer ring's most buffers

// One Loop on its own thread, listening on 127.0.0.1:0, configured by flags.
class LoopThread {
 public:
  explicit LoopThread(std::vector<std::string> flags) {
    std::vector<const char*> argv{"gearbox"};
    for (const std::string& f : flags) {
      argv.push_back(f.c_str());
    }
    core::ConfigResult r = core::load_config(static_cast<int>(argv.size()), argv.data());
    EXPECT_TRUE(r.ok) << r.error;
    config_ = r.config;
    std::string error;
    auto listener = open_listener("127.0.0.1:0", 4096, false, &error);
    EXPECT_TRUE(listener.has_value()) << error;
    port_ = std::stoi(listener->address.substr(listener->address.rfind(':') + 1));
    EXPECT_EQ(::pipe2(drain_, O_CLOEXEC), 0);
    gens_.publish(config_);
    thread_ = std::thread([this, fd = listener->fd] {
      Loop loop(config_, gens_, fd, drain_[0], config_.max_connections);
      if (g_basic_ring) {
        loop.use_basic_ring();
      }
      loop.use_buffers(g_ring_buffers);
      status_ = loop.run(0);
      stopped_ = true;
    });
  }
  ~LoopThread() {
    if (thread_.joinable()) {
      drain(30s);
    }
    ::close(drain_[0]);
    ::close(drain_[1]);
  }

  int port() const { return port_; }

  // SIGTERM's way in; true when the loop stopped (status 0) within `timeout`.
  bool drain(Millis timeout) {
    char byte = 1;
    EXPECT_EQ(::write(drain_[1], &byte, 1), 1);
    auto until = std::chrono::steady_clock::now() + timeout;
    while (!stopped_ && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(5ms);
    }
    bool stopped = stopped_;
    thread_.join();  // a loop that never stops hangs here: ctest's timeout reports it
    return stopped && status_ == 0;
  }

 private:
  core::Config config_;
  Generations gens_;
  int port_ = 0;
  int drain_[2] = {-1, -1};
  std::thread thread_;
  std::atomic<bool> stopped_{false};
  int status_ = -1;
};

class UringLoopTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override {
    if (std::string why = io_uring_unavailable(); !why.empty()) {
      GTEST_SKIP() << "io_uring unavailable here: " << why;
    }
    g_basic_ring = GetParam();
    g_ring_buffers = Ring::kBufferCount;
  }
};

// A raw client socket with a small receive buffer, so a large response stalls the server's send.
int connect_small_window(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int size = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  return fd;
}

void reset_close(int fd) {
  linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(fd);
}

// Sends as much of `bytes` as fits within `timeout` (the peer may stop reading).
std::size_t send_some(int fd, const std::string& bytes, Millis timeout) {
  std::size_t sent = 0;
  auto until = std::chrono::steady_clock::now() + timeout;
  while (sent < bytes.size() && std::chrono::steady_clock::now() < until) {
    pollfd p{fd, POLLOUT, 0};
    if (::poll(&p, 1, 20) <= 0) {
      continue;
    }
    ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n <= 0) {
      break;
    }
    sent += static_cast<std::size_t>(n);
  }
  return sent;
}

void expect_plaintext_served(int port) {
  Socket s = Socket::connect(port);
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(s.send_all("GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"));
  test::HttpResponse r = s.read_response(5s);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "Hello, World!");
}

// A buffer ring of two buffers, 200 clients sending at once: receives find it empty (ENOBUFS)
// and go to spare buffers; every client is answered, and again after its connection slept (a
// connection whose receive ended must arm another before it may sleep).
TEST_P(UringLoopTest, ReceivesThatFindTheBufferRingEmptyAreAllAnsweredBeforeAndAfterSleeping) {
  g_ring_buffers = 2;
  LoopThread loop({});
  std::vector<Socket> clients;
  for (int i = 0; i < 200; ++i) {
    clients.push_back(Socket::connect(loop.port()));
    ASSERT_TRUE(clients.back().valid()) << clients.back().error();
  }
  for (int round = 0; round < 2; ++round) {
    for (Socket& s : clients) {
      ASSERT_TRUE(s.send_all("GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    for (Socket& s : clients) {
      test::HttpResponse r = s.read_response(5s);
      ASSERT_TRUE(r.ok()) << "round " << round << ": " << r.error;
      EXPECT_EQ(r.body, "Hello, World!");
    }
    std::this_thread::sleep_for(100ms);  // the idle ones sleep
  }
  EXPECT_TRUE(loop.drain(5s));
}

// Receives that find the buffer ring empty share at most Loop::kStarvedReceives spare buffers
// and wait their turn beyond that. When the spares are held by connections whose cores read no
// more (proxied requests awaiting a silent upstream, each with more pipelined behind it than the
// core reads ahead: the rest waits in the spare it arrived in), the waiting receives take spares
// past the bound once none got its turn for Loop::kStarvedPatience, rather than stall until
// those upstream exchanges time out.
TEST_P(UringLoopTest, ReceivesWaitingForBuffersHeldByStalledConnectionsDoNotWaitForThem) {
  g_ring_buffers = 2;
  test::FakeUpstream upstream;
  ASSERT_TRUE(upstream.start([](test::FakeConnection& c) {
    while (std::optional<std::string> head = c.read_head()) {
      if (head->find("/slow") != std::string::npos) {
        c.wait_for_close(20s);  // never answers
        return;
      }
      c.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
    }
  }));
  LoopThread loop({"--mode", "proxy", "--upstream", "127.0.0.1:" + std::to_string(upstream.port()),
                   "--drain-timeout", "200ms", "--log-level", "error"});
  std::string pipelined = "GET /slow HTTP/1.1\r\nHost: t\r\n\r\n";
  while (pipelined.size() < 2 * Loop::kInputBufferSize) {
    pipelined += "GET /next HTTP/1.1\r\nHost: t\r\n\r\n";
  }
  std::vector<Socket> holders;
  for (std::size_t i = 0; i < Loop::kStarvedReceives + 8; ++i) {
    holders.push_back(Socket::connect(loop.port()));
    ASSERT_TRUE(holders.back().valid()) << holders.back().error();
    ASSERT_TRUE(holders.back().send_all(pipelined));
  }
  std::this_thread::sleep_for(300ms);
  const auto start = std::chrono::steady_clock::now();
  Socket s = Socket::connect(loop.port());
  ASSERT_TRUE(s.send_all("GET /fast HTTP/1.1\r\nHost: t\r\n\r\n"));
  test::HttpResponse r = s.read_response(5s);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.body, "ok");
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  EXPECT_TRUE(loop.drain(5s));
  upstream.stop();
}

TEST_P(UringLoopTest, DrainTimeoutClosesAConnectionWithItsReceiveInFlight) {
  LoopThread loop({"--drain-timeout", "200ms"});
  Socket s = Socket::connect(loop.port());
  ASSERT_TRUE(s.send_all("GET /plaintext HTTP/1.1\r\nHost: t\r\n"));  // head unfinished
  std::this_thread::sleep_for(50ms);
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(loop.drain(5s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  EXPECT_EQ(s.wait_for_close(2s).closed, true);
}

TEST_P(UringLoopTest, LingerEndsWithItsReceiveInFlightWhileTheLoopServesOn) {
  LoopThread loop({});
  Socket s = Socket::connect(loop.port());
  ASSERT_TRUE(s.send_all("GET /plaintext HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
  test::HttpResponse r = s.read_response(5s);
  ASSERT_TRUE(r.ok()) << r.error;
  // The client keeps its side open: the server's lingering receive is still in flight when the
  // linger time (2 s) ends the connection; the loop goes on serving meanwhile and afterwards.
  EXPECT_TRUE(s.wait_for_close(4s).closed);
  expect_plaintext_served(loop.port());
  EXPECT_TRUE(loop.drain(5s));
}

TEST_P(UringLoopTest, ClientResetWithTheSendInFlight) {
  LoopThread loop({"--max-body", "64m"});
  int fd = connect_small_window(loop.port());
  // A 32 MiB echo to a client that reads nothing: the server's send stalls in flight, then its
  // reads stop too (backpressure) and the client's own send stalls.
  const std::size_t body = 32u << 20;
  std::string request =
      "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body) + "\r\n\r\n" +
      std::string(body, 'x');
  std::size_t sent = send_some(fd, request, 700ms);
  EXPECT_LT(sent, request.size()) << "the server never stalled";
  reset_close(fd);
  expect_plaintext_served(loop.port());  // the loop carries on
  EXPECT_TRUE(loop.drain(5s));
}

TEST_P(UringLoopTest, DrainTimeoutClosesAConnectionWithItsSendInFlight) {
  LoopThread loop({"--max-body", "64m", "--drain-timeout", "200ms"});
  int fd = connect_small_window(loop.port());
  const std::size_t body = 32u << 20;
  std::string request =
      "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body) + "\r\n\r\n" +
      std::string(body, 'x');
  std::size_t sent = send_some(fd, request, 700ms);
  EXPECT_LT(sent, request.size()) << "the server never stalled";
  EXPECT_TRUE(loop.drain(5s));
  ::close(fd);
}

TEST_P(UringLoopTest, ClientResetMidBody) {
  LoopThread loop({});
  int fd = connect_small_window(loop.port());
  std::string head = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 1000000\r\n\r\n";
  ASSERT_EQ(send_some(fd, head + std::string(100'000, 'y'), 2s), head.size() + 100'000);
  std::this_thread::sleep_for(50ms);
  reset_close(fd);
  expect_plaintext_served(loop.port());
  EXPECT_TRUE(loop.drain(5s));
}

TEST_P(UringLoopTest, BodyTimeoutWithTheBodyReceiveInFlightIntoTheCoreBuffer) {
  // Mid-body the receive reads into the core's own input buffer: the body timeout cuts the
  // echo under way while that receive is in flight; the buffer outlives it (the close cancels
  // and reaps the receive first), and the bytes sent after the cut are lingered away.
  LoopThread loop({"--body-timeout", "300ms"});
  Socket s = Socket::connect(loop.port());
  ASSERT_TRUE(s.valid()) << s.error();
  std::string head = "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000\r\n\r\n";
  ASSERT_TRUE(s.send_all(head + std::string(40'000, 'y')));
  test::CloseResult c = s.wait_for_close(3s);
  EXPECT_TRUE(c.closed);
  EXPECT_TRUE(c.extra.starts_with("HTTP/1.1 200 ")) << c.extra.substr(0, 40);
  EXPECT_LE(c.extra.size(), head.size() + 40'000 + 200) << "more than the body sent came back";
  expect_plaintext_served(loop.port());
  EXPECT_TRUE(loop.drain(5s));
}

TEST_P(UringLoopTest, DelayDeadlinePendingAtDrainTimeout) {
  LoopThread loop({"--drain-timeout", "200ms"});
  Socket s = Socket::connect(loop.port());
  ASSERT_TRUE(s.send_all("GET /delay/20000 HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::this_thread::sleep_for(50ms);
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(loop.drain(5s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST_P(UringLoopTest, UpstreamConnectInFlightWhenTheConnectTimeoutFires) {
  // A listener whose accept queue is full and never drained: further SYNs are dropped, so a
  // connect to it stays in flight.
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(lfd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(lfd, 0), 0);
  socklen_t len = sizeof addr;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len);
  const int port = ntohs(addr.sin_port);
  std::vector<int> fillers;
  bool hangs = false;
  for (int i = 0; i < 8 && !hangs; ++i) {
    bool in_progress = false;
    core::Endpoint ep;
    std::string error;
    ASSERT_TRUE(parse_endpoint("127.0.0.1:" + std::to_string(port), &ep, &error));
    int fd = connect_nonblocking(ep, &in_progress);
    ASSERT_GE(fd, 0);
    fillers.push_back(fd);
    pollfd p{fd, POLLOUT, 0};
    hangs = in_progress && ::poll(&p, 1, 100) == 0;
  }
  if (!hangs) {
    GTEST_SKIP() << "this kernel completes connects to a full accept queue";
  }
  {
    LoopThread loop({"--mode", "proxy", "--upstream", "127.0.0.1:" + std::to_string(port),
                     "--proxy-connect-timeout", "300ms", "--log-level", "error"});
    Socket s = Socket::connect(loop.port());
    ASSERT_TRUE(s.send_all("GET /x HTTP/1.1\r\nHost: t\r\n\r\n"));
    test::HttpResponse r = s.read_response(5s);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, 504);
    s.close();
    EXPECT_TRUE(loop.drain(5s));
  }
  for (int fd : fillers) {
    ::close(fd);
  }
  ::close(lfd);
}

TEST_P(UringLoopTest, UpstreamResetMidResponse) {
  test::FakeUpstream upstream;
  ASSERT_TRUE(upstream.start([](test::FakeConnection& c) {
    if (!c.read_head()) {
      return;
    }
    c.send("HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + std::string(3000, 'z'));
    std::this_thread::sleep_for(50ms);
    c.close(true);
  }));
  LoopThread loop({"--mode", "proxy", "--upstream", "127.0.0.1:" + std::to_string(upstream.port()),
                   "--log-level", "error"});
  Socket s = Socket::connect(loop.port());
  ASSERT_TRUE(s.send_all("GET /x HTTP/1.1\r\nHost: t\r\n\r\n"));
  bool eof = false;
  std::string got = s.read_until_eof(5s, &eof);
  EXPECT_TRUE(eof);
  EXPECT_NE(got.find("200 OK"), std::string::npos);
  EXPECT_LT(got.size(), 100'000u);  // truncated, never presented as complete
  s.close();
  EXPECT_TRUE(loop.drain(5s));
  upstream.stop();
}

// Pooled upstream connections are watched by a receive armed on the ring: a drain cancels
// them and reaps their completions before the loop ends (the upstream sees each one closed),
// and a client gone while a reused connection's adopted receive awaits the response leaves
// nothing resolved into a freed frame.
TEST_P(UringLoopTest, DrainClosesPooledUpstreamConnectionsWithTheirReceivesArmed) {
  std::atomic<int> closed{0};
  test::FakeUpstream upstream;
  ASSERT_TRUE(upstream.start([&](test::FakeConnection& c) {
    // Counted however the connection ends: EOF (closed by the proxy) or a failed send.
    struct Count {
      std::atomic<int>& n;
      ~Count() { ++n; }
    } count{closed};
    while (auto head = c.read_head(10s)) {
      if (head->find("/slow") != std::string::npos) {
        std::this_thread::sleep_for(300ms);
      }
      if (!c.send("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")) {
        return;
      }
    }
  }));
  {
    LoopThread loop({"--mode", "proxy", "--upstream",
                     "127.0.0.1:" + std::to_string(upstream.port()), "--log-level", "error"});
    std::vector<Socket> clients;
    for (int i = 0; i < 4; ++i) {
      clients.push_back(Socket::connect(loop.port()));
      ASSERT_TRUE(clients.back().send_all("GET /a HTTP/1.1\r\nHost: t\r\n\r\n"));
    }
    for (Socket& s : clients) {
      test::HttpResponse r = s.read_response(5s);
      ASSERT_TRUE(r.ok()) << r.error;
      ASSERT_EQ(r.body, "ok");
    }
    // Reused: the slow answer is awaited by the adopted receive when the client resets.
    ASSERT_TRUE(clients[0].send_all("GET /slow HTTP/1.1\r\nHost: t\r\n\r\n"));
    std::this_thread::sleep_for(50ms);
    clients[0].close(true);
    ASSERT_TRUE(clients[1].send_all("GET /b HTTP/1.1\r\nHost: t\r\n\r\n"));
    test::HttpResponse r = clients[1].read_response(5s);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.body, "ok");
    std::this_thread::sleep_for(400ms);  // the slow answer came, to a connection let go
    EXPECT_TRUE(loop.drain(5s));
  }
  auto until = std::chrono::steady_clock::now() + 5s;
  while (closed.load() < upstream.connections() && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(10ms);
  }
  EXPECT_GE(upstream.connections(), 2);  // one pooled at least while the slow one was awaited
  EXPECT_EQ(closed.load(), upstream.connections())
      << "pooled upstream connections left open after the drain";
  upstream.stop();
}

TEST_P(UringLoopTest, DrainWithAThousandIdleKeepAliveConnections) {
  LoopThread loop({});
  std::vector<Socket> clients;
  for (int i = 0; i < 1000; ++i) {
    Socket s = Socket::connect(loop.port());
    ASSERT_TRUE(s.valid()) << i << ": " << s.error();
    ASSERT_TRUE(s.send_all("GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"));
    clients.push_back(std::move(s));
  }
  for (Socket& s : clients) {
    test::HttpResponse r = s.read_response(5s);
    ASSERT_TRUE(r.ok()) << r.error;
    ASSERT_EQ(r.status, 200);
  }
  auto start = std::chrono::steady_clock::now();
  EXPECT_TRUE(loop.drain(10s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s) << "idle connections held the drain up";
  for (Socket& s : clients) {
    EXPECT_TRUE(s.wait_for_close(2s).closed);
  }
}

INSTANTIATE_TEST_SUITE_P(Rings, UringLoopTest, ::testing::Values(false, true),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? std::string("BasicRing") : std::string("Features");
                         });

}  // namespace
}  // namespace gearbox::backends::uring
