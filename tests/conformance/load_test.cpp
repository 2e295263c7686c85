// A short, bounded wrk run per backend (2 s, 16 connections, 127.0.0.1 only): every request must
// be answered 2xx with no socket error. Skipped when wrk is not installed.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <regex>
#include <string>
#include <vector>

#include "tests/conformance/conformance.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;

class LoadTest : public ConformanceTest {};
GEARBOX_CONFORMANCE_SUITE(LoadTest);

std::string find_in_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    std::size_t end = dirs.find(':', start);
    std::string dir =
        dirs.substr(start, end == std::string::npos ? std::string::npos : end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    if (end == std::string::npos) {
      break;
    }
    start = end + 1;
  }
  return {};
}

long match_number(const std::string& text, const std::regex& re, long fallback) {
  std::smatch m;
  return std::regex_search(text, m, re) ? std::stol(m[1]) : fallback;
}

TEST_P(LoadTest, WrkPlaintextHasNoErrors) {
  std::string wrk = find_in_path("wrk");
  if (wrk.empty()) {
    GTEST_SKIP() << "wrk is not installed (Debian package 'wrk'); load smoke test skipped";
  }
  ASSERT_TRUE(start_server());
  ProcessResult r =
      run_process({wrk, "-t1", "-c16", "-d2s", "--timeout", "2s", url("/plaintext")}, 15s);
  ASSERT_FALSE(r.timed_out) << r.out;
  ASSERT_EQ(r.status, 0) << r.out << r.err_text();
  long requests = match_number(r.out, std::regex(R"(([0-9]+) requests in)"), -1);
  EXPECT_GT(requests, 0) << r.out;
  std::smatch m;
  if (std::regex_search(r.out, m,
                        std::regex(R"(Socket errors: connect ([0-9]+), read ([0-9]+), write )"
                                   R"(([0-9]+), timeout ([0-9]+))"))) {
    ADD_FAILURE() << "wrk saw socket errors: " << m[0] << "\n" << r.out;
  }
  long non_2xx = match_number(r.out, std::regex(R"(Non-2xx or 3xx responses: ([0-9]+))"), 0);
  EXPECT_EQ(non_2xx, 0) << r.out;
  // The server is still healthy afterwards.
  HttpResponse after = exchange(port(), "GET /health HTTP/1.1\r\nHost: test\r\n\r\n");
  ASSERT_TRUE(after.ok()) << after.error;
  EXPECT_EQ(after.status, 200);
  std::cout << "[ wrk      ] " << GetParam() << ": " << requests << " requests in 2 s\n";
}

// c10k in miniature: many keep-alive connections opened at once, each with a request written
// while it still waits in the listen backlog, must all be answered, and then serve a second
// request each (the first ones keep their threads, loops or fibers busy while the last are
// accepted). prefork holds one connection per worker, so there every exchange closes.
TEST_P(LoadTest, ManyConnectionsOpenedAtOnceAreAllAnswered) {
  constexpr int kConnections = 600;
  rlimit fds{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &fds), 0);
  if (fds.rlim_max < 2 * kConnections + 64) {
    GTEST_SKIP() << "the descriptor limit (" << fds.rlim_max << ") is too low for this test";
  }
  fds.rlim_cur = std::max<rlim_t>(fds.rlim_cur, 2 * kConnections + 64);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &fds), 0);  // the server inherits it
  ASSERT_TRUE(start_server({"--backlog", "1024"}));
  const bool close_each = GetParam() == "prefork";
  const std::string request = std::string("GET /plaintext HTTP/1.1\r\nHost: test\r\n") +
                              (close_each ? "Connection: close\r\n" : "") + "\r\n";
  const std::string body = "Hello, World!";

  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port()));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::vector<int> socks;
  auto open_all = [&] {
    for (int i = 0; i < kConnections; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      ASSERT_GE(fd, 0);
      socks.push_back(fd);
      ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0)
          << "connection " << i << ": " << std::strerror(errno);
    }
  };
  // Writes the request on every socket, then reads until each has a whole response.
  auto exchange_all = [&](const char* round) {
    for (int fd : socks) {
      ASSERT_EQ(::send(fd, request.data(), request.size(), MSG_NOSIGNAL),
                static_cast<ssize_t>(request.size()));
    }
    std::vector<std::string> got(socks.size());
    std::size_t answered = 0;
    auto deadline = std::chrono::steady_clock::now() + 60s;
    auto complete = [&](const std::string& text) {
      return text.find("\r\n\r\n") != std::string::npos &&
             text.size() >= text.find("\r\n\r\n") + 4 + body.size();
    };
    while (answered < socks.size() && std::chrono::steady_clock::now() < deadline) {
      std::vector<pollfd> fds;
      std::vector<std::size_t> which;
      for (std::size_t i = 0; i < socks.size(); ++i) {
        if (!complete(got[i])) {
          fds.push_back({socks[i], POLLIN, 0});
          which.push_back(i);
        }
      }
      ASSERT_GE(::poll(fds.data(), fds.size(), 1000), 0);
      for (std::size_t k = 0; k < fds.size(); ++k) {
        if (fds[k].revents == 0) {
          continue;
        }
        char buf[4096];
        ssize_t n = ::recv(fds[k].fd, buf, sizeof buf, 0);
        ASSERT_GT(n, 0) << round << ": connection " << which[k] << " closed before its answer";
        got[which[k]].append(buf, static_cast<std::size_t>(n));
        if (complete(got[which[k]])) {
          ++answered;
        }
      }
    }
    ASSERT_EQ(answered, socks.size()) << round << ": answered within 60 s";
    for (std::size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i].rfind("HTTP/1.1 200 ", 0), 0u) << round << ", connection " << i;
      ASSERT_EQ(got[i].substr(got[i].size() - body.size()), body) << round << ", connection " << i;
    }
  };
  auto close_all = [&] {
    for (int fd : socks) {
      ::close(fd);
    }
    socks.clear();
  };

  open_all();
  if (!HasFatalFailure()) {
    exchange_all("first request");
  }
  if (!HasFatalFailure() && close_each) {
    close_all();
    open_all();
  }
  if (!HasFatalFailure()) {
    exchange_all("second request");
  }
  close_all();
}

}  // namespace
}  // namespace gearbox::test
