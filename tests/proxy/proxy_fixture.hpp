// The fixture shared by the proxy conformance suites: gearbox in proxy mode over the backend
// named by the test parameter, in front of upstreams on 127.0.0.1 (gearbox echo processes on the
// thread backend, an in-process FakeUpstream, or nginx), with the ConformanceTest log checks.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "tests/conformance/conformance.hpp"
#include "tests/support/fake_upstream.hpp"

namespace gearbox::test {

class ProxyTest : public ConformanceTest {
 protected:
  // Starts `upstream` as gearbox --mode echo (thread backend, --max-body 16m, --access-log -) on
  // 127.0.0.1:0.
  static bool start_echo_upstream(ServerProcess& upstream) {
    return upstream.start(gearbox_binary(),
                          {"--backend", "thread", "--mode", "echo", "--listen", "127.0.0.1:0",
                           "--max-body", "16m", "--access-log", "-"});
  }

  // Requests an echo upstream has logged so far (its access-log lines).
  static int served(const ServerProcess& upstream) {
    int n = 0;
    for (const auto& line : upstream.log_lines()) {
      n += line.starts_with("gearbox: access:") ? 1 : 0;
    }
    return n;
  }

  // Waits up to `timeout` for an echo upstream to have logged `n` requests (its log is read
  // from a pipe, after it answered); returns what it logged by then.
  static int wait_served(const ServerProcess& upstream, int n,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds{3000}) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    int got = served(upstream);
    while (got < n && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds{10});
      got = served(upstream);
    }
    return got;
  }

  // Starts the server under test: `--backend <param> --mode proxy --listen 127.0.0.1:0`, one
  // `--upstream 127.0.0.1:P` per port, then `extra`. Use as ASSERT_TRUE(start_proxy(...)).
  bool start_proxy(const std::vector<int>& upstream_ports,
                   const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--backend", GetParam(), "--mode",
                                     "proxy",     "--listen", "127.0.0.1:0"};
    for (int p : upstream_ports) {
      args.push_back("--upstream");
      args.push_back("127.0.0.1:" + std::to_string(p));
    }
    args.insert(args.end(), extra.begin(), extra.end());
    if (!server_.start(gearbox_binary(), args)) {
      return false;
    }
    EXPECT_EQ(server_.backend(), GetParam()) << server_.first_line();
    EXPECT_EQ(server_.mode(), "proxy") << server_.first_line();
    return true;
  }

  void TearDown() override {
    ConformanceTest::TearDown();
    for (ServerProcess* p : {&echo_a_, &echo_b_}) {
      if (p->pid() > 0 && !p->exit_status().has_value()) {
        EXPECT_EQ(p->stop(), 0) << "echo upstream log:\n" << p->log_text();
      }
    }
    fake_.stop();
  }

  ServerProcess echo_a_;
  ServerProcess echo_b_;
  FakeUpstream fake_;
};

// A port on 127.0.0.1 that nothing listens on (bound, read, closed).
inline int closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

inline std::string lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return out;
}

// The values of every "Name: value" line named `name` (case-insensitive) in an echoed head.
inline std::vector<std::string> head_values(std::string_view head, std::string_view name) {
  std::vector<std::string> out;
  std::string want = lower(name) + ":";
  std::size_t pos = 0;
  while (pos < head.size()) {
    std::size_t end = head.find("\r\n", pos);
    if (end == std::string_view::npos) {
      end = head.size();
    }
    std::string_view line = head.substr(pos, end - pos);
    if (lower(line.substr(0, want.size())) == want) {
      std::string_view v = line.substr(want.size());
      while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) {
        v.remove_prefix(1);
      }
      while (!v.empty() && (v.back() == ' ' || v.back() == '\t')) {
        v.remove_suffix(1);
      }
      out.emplace_back(v);
    }
    pos = end + 2;
  }
  return out;
}

}  // namespace gearbox::test
