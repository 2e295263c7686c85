// Conformance of the slow-client defences over every backend: a stalled head, an idle
// keep-alive connection and a stalled body are each cut after their timeout (short flags keep
// the suite quick), while a connection that keeps making progress is not.
#include <gtest/gtest.h>

#include <chrono>
#include <string>
#include <thread>

#include "tests/conformance/conformance.hpp"

namespace gearbox::test {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

class TimeoutTest : public ConformanceTest {};
GEARBOX_CONFORMANCE_SUITE(TimeoutTest);

Millis since(Clock::time_point start) {
  return std::chrono::duration_cast<Millis>(Clock::now() - start);
}

TEST_P(TimeoutTest, StalledHeadIsClosedAfterHeaderTimeout) {
  ASSERT_TRUE(start_server({"--header-timeout", "1s"}));
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  auto start = Clock::now();
  ASSERT_TRUE(s.send_all("GET /plaintext HTTP/1.1\r\nHost: te"));
  auto close = s.wait_for_close(3s);
  Millis elapsed = since(start);
  EXPECT_TRUE(close.closed) << "a stalled head was not cut within 3 s with --header-timeout 1s";
  EXPECT_GE(elapsed, 900ms) << "closed before the header timeout";
  if (!close.extra.empty()) {
    EXPECT_EQ(close.extra.substr(0, 12), "HTTP/1.1 408") << close.extra;
  }
}

TEST_P(TimeoutTest, SilentConnectionIsClosedAfterTimeout) {
  // Connected but no byte sent: the header (or idle) timeout applies; both are 1 s here.
  ASSERT_TRUE(start_server({"--header-timeout", "1s", "--idle-timeout", "1s"}));
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  auto start = Clock::now();
  auto close = s.wait_for_close(3s);
  EXPECT_TRUE(close.closed) << "a silent connection was not closed within 3 s";
  EXPECT_GE(since(start), 900ms);
  if (!close.extra.empty()) {
    EXPECT_EQ(close.extra.substr(0, 12), "HTTP/1.1 408") << close.extra;
  }
}

TEST_P(TimeoutTest, HeadTricklingPastHeaderTimeoutIsCut) {
  // The header timeout bounds the whole head, not the gap between bytes (slowloris).
  ASSERT_TRUE(start_server({"--header-timeout", "1s"}));
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  auto start = Clock::now();
  std::string head = "GET /plaintext HTTP/1.1\r\nHost: test\r\nX-Slow: ";
  bool cut = false;
  for (int i = 0; i < 40 && since(start) < 3500ms; ++i) {
    if (!s.send_all(i < static_cast<int>(head.size()) ? head.substr(i, 1) : "a")) {
      cut = true;
      break;
    }
    auto close = s.wait_for_close(100ms);
    if (close.closed) {
      cut = true;
      if (!close.extra.empty()) {
        EXPECT_EQ(close.extra.substr(0, 12), "HTTP/1.1 408") << close.extra;
      }
      break;
    }
  }
  EXPECT_TRUE(cut) << "a head sent one byte per 100 ms was not cut by --header-timeout 1s";
  EXPECT_GE(since(start), 900ms);
  EXPECT_LT(since(start), 3500ms);
}

TEST_P(TimeoutTest, IdleKeepAliveIsClosedAfterIdleTimeout) {
  ASSERT_TRUE(start_server({"--idle-timeout", "1s"}));
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(s.send_all("GET /plaintext HTTP/1.1\r\nHost: test\r\n\r\n"));
  HttpResponse r = s.read_response();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  auto start = Clock::now();
  auto close = s.wait_for_close(3s);
  EXPECT_TRUE(close.closed) << "an idle keep-alive connection outlived --idle-timeout 1s";
  EXPECT_GE(since(start), 900ms);
  EXPECT_EQ(close.extra, "") << "an idle close sends nothing";
}

TEST_P(TimeoutTest, ActiveKeepAliveOutlivesIdleTimeout) {
  ASSERT_TRUE(start_server({"--idle-timeout", "1s"}));
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  // Four requests 600 ms apart: 2.4 s in all, but never 1 s idle.
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(s.send_all("GET /health HTTP/1.1\r\nHost: test\r\n\r\n")) << "request " << i;
    HttpResponse r = s.read_response();
    ASSERT_TRUE(r.ok()) << "request " << i << ": " << r.error;
    EXPECT_EQ(r.body, "ok");
    std::this_thread::sleep_for(600ms);
  }
}

TEST_P(TimeoutTest, StalledBodyIsCutAfterBodyTimeout) {
  ASSERT_TRUE(start_server({"--body-timeout", "1s"}));
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(s.send_all("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 10\r\n\r\nabc"));
  auto start = Clock::now();
  auto close = s.wait_for_close(3s);
  EXPECT_TRUE(close.closed) << "a stalled body was not cut within 3 s with --body-timeout 1s";
  EXPECT_GE(since(start), 900ms);
  // Whatever was sent (408, or a 200 head with part of the echo) must not be a complete 200.
  if (close.extra.starts_with("HTTP/1.1 200")) {
    EXPECT_EQ(close.extra.find("abc", close.extra.find("\r\n\r\n")),
              close.extra.find("\r\n\r\n") + 4)
        << close.extra;
  }
}

}  // namespace
}  // namespace gearbox::test
