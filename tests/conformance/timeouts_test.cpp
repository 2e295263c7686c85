// Conformance of the slow-client defences over every backend: a stalled head, an idle
// keep-alive connection and a stalled body are each cut after their timeout (short flags keep
// the suite quick), while a connection that keeps making progress is not.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
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

// A client that stops reading its answers: once the server's writes stop progressing, the
// connection is cut after --send-timeout (a reset), both when it pipelines small requests and
// when its body is echoed back as it streams in. The buffers between them fill within
// milliseconds, so the cut comes about --send-timeout after the client's first byte. pool once
// cut both only at twice the timeout: at the deadline its reactor retried the parked write,
// which moved a few bytes into a socket poll(2) did not call writable and restarted the clock.
void expect_cut_after_send_timeout(int port, std::string_view head, std::string_view chunk) {
  Socket s = Socket::connect(port, 2s, /*rcvbuf=*/4096);
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(s.send_all(head));
  StallResult r = send_until_cut(s.fd(), chunk, 12s);
  ASSERT_TRUE(r.cut) << "not cut within 12 s with --send-timeout 2s (" << r.sent << " bytes sent)";
  std::printf("cut %lld ms after the first byte, %lld ms after the last progress\n",
              static_cast<long long>(r.total.count()),
              static_cast<long long>(r.stalled_for.count()));
  EXPECT_GE(r.stalled_for, 1600ms) << "cut before the send timeout";
  EXPECT_LE(r.total, 3300ms) << "cut only " << r.total.count()
                             << " ms after the client began, with --send-timeout 2s";
}

TEST_P(TimeoutTest, PipeliningClientThatNeverReadsIsCutAfterSendTimeout) {
  ASSERT_TRUE(start_server({"--send-timeout", "2s"}));
  std::string requests;
  for (int i = 0; i < 1000; ++i) {
    requests += "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n";
  }
  expect_cut_after_send_timeout(port(), "", requests);
}

TEST_P(TimeoutTest, StreamedEchoThatIsNeverReadIsCutAfterSendTimeout) {
  ASSERT_TRUE(start_server({"--send-timeout", "2s", "--max-body", "0"}));
  expect_cut_after_send_timeout(
      port(), "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 100000000000\r\n\r\n",
      std::string(64 * 1024, 'x'));
}

}  // namespace
}  // namespace gearbox::test
