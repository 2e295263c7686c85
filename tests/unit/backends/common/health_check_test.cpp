// Active health checks against tiny upstreams listening on 127.0.0.1 (backends/common/
// health_check.cpp). Sockets on loopback only; every wait is bounded, the file runs in < 1 s.
#include "backends/common/health_check.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace gearbox::backends {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

core::Endpoint loopback(int port) {
  core::Endpoint ep;
  auto* a = reinterpret_cast<sockaddr_in*>(&ep.addr);
  a->sin_family = AF_INET;
  a->sin_port = htons(static_cast<std::uint16_t>(port));
  a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ep.len = sizeof(sockaddr_in);
  ep.text = "127.0.0.1:" + std::to_string(port);
  return ep;
}

// Answers every connection with `reply` once it has read a whole head (or, with an empty
// reply, holds the connection open and says nothing). Records the heads it received.
class FakeUpstream {
 public:
  explicit FakeUpstream(std::string reply) : reply_(std::move(reply)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    core::Endpoint ep = loopback(0);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&ep.addr), ep.len), 0);
    EXPECT_EQ(::listen(fd_, 16), 0);
    sockaddr_in bound{};
    socklen_t len = sizeof bound;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&bound), &len);
    port_ = ntohs(bound.sin_port);
    EXPECT_EQ(::pipe(stop_), 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeUpstream() {
    char b = 1;
    EXPECT_EQ(::write(stop_[1], &b, 1), 1);
    thread_.join();
    for (int fd : held_) {
      ::close(fd);
    }
    ::close(fd_);
    ::close(stop_[0]);
    ::close(stop_[1]);
  }
  int port() const { return port_; }
  core::Endpoint endpoint() const { return loopback(port_); }
  std::vector<std::string> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }
  int count() { return count_.load(); }

 private:
  void serve() {
    for (;;) {
      pollfd fds[2] = {{fd_, POLLIN, 0}, {stop_[0], POLLIN, 0}};
      if (::poll(fds, 2, 2000) <= 0 || fds[1].revents != 0) {
        return;
      }
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) {
        continue;
      }
      ++count_;
      if (reply_.empty()) {
        held_.push_back(c);
        continue;
      }
      std::string head;
      char buf[512];
      while (head.find("\r\n\r\n") == std::string::npos) {
        pollfd p{c, POLLIN, 0};
        if (::poll(&p, 1, 1000) <= 0) {
          break;
        }
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) {
          break;
        }
        head.append(buf, static_cast<std::size_t>(n));
      }
      {
        std::lock_guard lock(mu_);
        requests_.push_back(head);
      }
      (void)!::send(c, reply_.data(), reply_.size(), MSG_NOSIGNAL);
      ::close(c);
    }
  }

  std::string reply_;
  int fd_ = -1;
  int port_ = 0;
  int stop_[2] = {-1, -1};
  std::vector<int> held_;
  std::mutex mu_;
  std::vector<std::string> requests_;
  std::atomic<int> count_{0};
  std::thread thread_;
};

// A port nothing listens on: bound, then closed.
int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  core::Endpoint ep = loopback(0);
  ::bind(fd, reinterpret_cast<sockaddr*>(&ep.addr), ep.len);
  sockaddr_in bound{};
  socklen_t len = sizeof bound;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len);
  ::close(fd);
  return ntohs(bound.sin_port);
}

core::UpstreamGroup group_of(std::vector<core::Endpoint> eps, std::string path) {
  core::UpstreamGroup g;
  g.name = "g";
  g.health_path = std::move(path);
  g.connect_timeout = core::Duration{300};
  g.read_timeout = core::Duration{300};
  for (auto& ep : eps) {
    core::UpstreamServer s;
    s.endpoint = ep;
    g.servers.push_back(s);
  }
  return g;
}

const char kOk[] = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";
const char kUnavailable[] = "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n";

TEST(HealthCheck, ProbeSendsExactRequest) {
  FakeUpstream up(kOk);
  EXPECT_TRUE(probe_health(up.endpoint(), "svc.internal", "/healthz", 500ms));
  ASSERT_EQ(up.requests().size(), 1u);
  EXPECT_EQ(up.requests()[0],
            "GET /healthz HTTP/1.1\r\nHost: svc.internal\r\nUser-Agent: gearbox-health\r\n"
            "Connection: close\r\n\r\n");
}

TEST(HealthCheck, Non2xxIsUnhealthy) {
  FakeUpstream up(kUnavailable);
  EXPECT_FALSE(probe_health(up.endpoint(), "h", "/", 500ms));
}

TEST(HealthCheck, GarbageIsUnhealthy) {
  FakeUpstream up("HTTX/1.1 200 OK\r\n\r\n");
  EXPECT_FALSE(probe_health(up.endpoint(), "h", "/", 500ms));
}

TEST(HealthCheck, RefusedConnectionIsUnhealthy) {
  EXPECT_FALSE(probe_health(loopback(closed_port()), "h", "/", 500ms));
}

TEST(HealthCheck, SilentServerTimesOut) {
  FakeUpstream up("");
  auto start = Clock::now();
  EXPECT_FALSE(probe_health(up.endpoint(), "h", "/", 100ms));
  auto took = Clock::now() - start;
  EXPECT_GE(took, 100ms);
  EXPECT_LT(took, 600ms);
}

TEST(HealthCheck, CheckNowSetsHealthPerServerAndUsesGroupHost) {
  FakeUpstream good(kOk);
  FakeUpstream bad(kUnavailable);
  std::vector<core::UpstreamGroup> groups = {
      group_of({good.endpoint(), bad.endpoint(), loopback(closed_port())}, "/up")};
  groups[0].host = "api.example";
  core::Upstreams u(groups, {});
  u.set_health(0, 0, false);
  HealthChecker checker(u);
  checker.check_now();
  EXPECT_TRUE(u.healthy(0, 0));
  EXPECT_FALSE(u.healthy(0, 1));
  EXPECT_FALSE(u.healthy(0, 2));
  ASSERT_EQ(good.requests().size(), 1u);
  EXPECT_NE(good.requests()[0].find("\r\nHost: api.example\r\n"), std::string::npos);
}

TEST(HealthCheck, HostDefaultsToServerAddress) {
  FakeUpstream good(kOk);
  std::vector<core::UpstreamGroup> groups = {group_of({good.endpoint()}, "/up")};
  core::Upstreams u(groups, {});
  HealthChecker(u).check_now();
  ASSERT_EQ(good.requests().size(), 1u);
  EXPECT_NE(good.requests()[0].find("\r\nHost: 127.0.0.1:" + std::to_string(good.port())),
            std::string::npos);
}

TEST(HealthCheck, GroupsWithoutHealthPathAreNotChecked) {
  FakeUpstream up(kOk);
  std::vector<core::UpstreamGroup> groups = {group_of({up.endpoint()}, "")};
  core::Upstreams u(groups, {});
  HealthChecker checker(u);
  checker.check_now();
  checker.start();
  EXPECT_FALSE(checker.running());
  EXPECT_EQ(up.count(), 0);
}

TEST(HealthCheck, BackgroundThreadChecksEveryInterval) {
  FakeUpstream up(kUnavailable);
  std::vector<core::UpstreamGroup> groups = {group_of({up.endpoint()}, "/")};
  groups[0].health_interval = core::Duration{30};
  core::Upstreams u(groups, {});
  HealthChecker checker(u);
  checker.start();
  ASSERT_TRUE(checker.running());
  auto limit = Clock::now() + 1500ms;
  while (up.count() < 3 && Clock::now() < limit) {
    std::this_thread::sleep_for(5ms);
  }
  checker.stop();
  EXPECT_GE(up.count(), 3);
  EXPECT_FALSE(u.healthy(0, 0));
  EXPECT_FALSE(checker.running());
}

TEST(HealthCheck, StopInterruptsProbeAndWaitPromptly) {
  FakeUpstream silent("");
  std::vector<core::UpstreamGroup> groups = {group_of({silent.endpoint()}, "/")};
  groups[0].connect_timeout = core::Duration{60'000};
  groups[0].read_timeout = core::Duration{60'000};
  groups[0].health_interval = core::Duration{60'000};
  core::Upstreams u(groups, {});
  HealthChecker checker(u);
  checker.start();
  auto limit = Clock::now() + 1000ms;
  while (silent.count() < 1 && Clock::now() < limit) {
    std::this_thread::sleep_for(5ms);
  }
  ASSERT_EQ(silent.count(), 1);
  auto start = Clock::now();
  checker.stop();
  EXPECT_LT(Clock::now() - start, 200ms);
  EXPECT_TRUE(u.healthy(0, 0)) << "an interrupted probe must not mark the server down";
}

}  // namespace
}  // namespace gearbox::backends
