// Byte scripts through the core in echo mode: exact bytes out, every script re-run with the input
// split at every byte boundary, and timeouts on a fake clock.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <string>

#include "tests/support/core_harness.hpp"

namespace gearbox {
namespace {

using test::CoreHarness;
using namespace std::chrono_literals;

// How the harness hands the client's bytes over: read into the span the core lends (a blocking
// pump), or from the driver's own memory (on_client_data, a ring's provided buffers) with the
// body read into the span the core lends mid-body (as the ring driver does) or handed over too;
// or as the ring driver, the connection put to sleep whenever it can (Connection::sleep); or
// handed over (body too) and kept while the core writes from them (Context::driver_keeps_data).
enum class Input { kLent, kOwned, kOwnedHandOverBody, kOwnedSleeping, kOwnedKept };

std::string run_script(const std::string& in, std::size_t piece = 0, std::size_t write_piece = 0,
                       core::Config cfg = {}, Input input = Input::kLent) {
  CoreHarness h(cfg, input != Input::kLent);
  h.hand_over_mid_body = input == Input::kOwnedHandOverBody || input == Input::kOwnedKept;
  if (input == Input::kOwnedKept) {
    h.keep_handed_data();
  }
  h.sleep_when_idle = input == Input::kOwnedSleeping;
  h.piece = piece;
  h.write_piece = write_piece;
  h.send(in);
  h.send_eof();
  h.run();
  return h.output();
}

// The same output whatever the read and write sizes, and whether the bytes are read into the
// span the core lends or handed over from the driver's memory (on_client_data), the connection
// then put to sleep whenever it can (Connection::sleep).
void expect_split_invariant(const std::string& in, core::Config cfg = {}) {
  const std::string whole = run_script(in, 0, 0, cfg);
  for (Input input : {Input::kLent, Input::kOwned, Input::kOwnedHandOverBody, Input::kOwnedSleeping,
                      Input::kOwnedKept}) {
    const char* how = input == Input::kLent    ? ""
                      : input == Input::kOwned ? " (handed over, body read into the lent span)"
                      : input == Input::kOwnedHandOverBody ? " (handed over, body too)"
                      : input == Input::kOwnedSleeping     ? " (handed over, sleeping when idle)"
                                                           : " (handed over and kept)";
    for (std::size_t piece = 1; piece <= in.size(); piece += (piece < 64 ? 1 : 97)) {
      ASSERT_EQ(run_script(in, piece, 0, cfg, input), whole) << "read piece " << piece << how;
    }
    for (std::size_t w : {1, 2, 7, 64}) {
      ASSERT_EQ(run_script(in, 0, w, cfg, input), whole) << "write piece " << w << how;
    }
  }
}

// The harness's clock starts at steady time 1 h and the default wall offset is 0.
#define kDate "Date: Thu, 01 Jan 1970 01:00:00 GMT\r\n"

const std::string kPlaintextResponse = "HTTP/1.1 200 OK\r\nServer: gearbox\r\n" kDate
                                       "Content-Type: text/plain\r\nContent-Length: 13\r\n\r\n"
                                       "Hello, World!";

TEST(ConnectionEcho, Plaintext) {
  CoreHarness h;
  h.send("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
  h.run();
  EXPECT_EQ(h.output(), kPlaintextResponse);
  EXPECT_FALSE(h.closed());
  EXPECT_TRUE(h.conn().idle());
}

// A reload (SIGHUP) superseded the configuration the connection was accepted under: the next
// response says Connection: close and the connection ends after it, at a request boundary.
TEST(ConnectionEcho, ASupersededConfigurationClosesAfterTheNextResponse) {
  std::atomic<std::uint32_t> in_force{3};
  CoreHarness h;
  h.context().config_epoch = &in_force;
  h.context().epoch = 3;
  h.send("GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
  h.run();
  EXPECT_EQ(h.output().find("Connection: close"), std::string::npos) << h.output();
  EXPECT_FALSE(h.closed());
  const std::size_t first = h.output().size();
  in_force = 4;
  h.send("GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
  h.run();
  std::string second = h.output().substr(first);
  EXPECT_TRUE(second.starts_with("HTTP/1.1 200 OK\r\n")) << second;
  EXPECT_NE(second.find("\r\nConnection: close\r\n"), std::string::npos) << second;
  EXPECT_TRUE(h.shut_wr()) << "the close began (the lingering close waits for the client's FIN)";
  h.send_eof();
  h.run();
  EXPECT_TRUE(h.closed());
}

// The driver asks for it (a prefork worker whose own listener has clients waiting): the next
// response says Connection: close.
TEST(ConnectionEcho, CloseAfterExchangeAskedByTheDriverEndsTheNextResponse) {
  CoreHarness h;
  h.context().close_after_exchange = true;
  h.send("GET /plaintext HTTP/1.1\r\nHost: x\r\n\r\n");
  h.run();
  EXPECT_NE(h.output().find("\r\nConnection: close\r\n"), std::string::npos) << h.output();
  EXPECT_TRUE(h.shut_wr());
}

TEST(ConnectionEcho, PipelinedRequestsAnsweredInOrder) {
  std::string in =
      "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /health HTTP/1.1\r\nHost: a\r\n\r\n"
      "GET /plaintext HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
  CoreHarness h;
  h.send(in);
  h.run();
  std::string health = "HTTP/1.1 200 OK\r\nServer: gearbox\r\n" kDate
                       "Content-Type: text/plain\r\nContent-Length: "
                       "2\r\n\r\nok";
  std::string last = "HTTP/1.1 200 OK\r\nServer: gearbox\r\n" kDate
                     "Connection: close\r\nContent-Type: text/plain\r\n"
                     "Content-Length: 13\r\n\r\nHello, World!";
  EXPECT_EQ(h.output(), kPlaintextResponse + health + last);
  EXPECT_TRUE(h.shut_wr());
  expect_split_invariant(in);
}

TEST(ConnectionEcho, EchoesContentLengthBody) {
  std::string in =
      "POST /x HTTP/1.1\r\nHost: a\r\nContent-Type: text/x\r\nContent-Length: 5\r\n\r\nhello";
  CoreHarness h;
  h.send(in);
  h.run();
  EXPECT_EQ(h.output(), "HTTP/1.1 200 OK\r\nServer: gearbox\r\n" kDate
                        "Content-Type: text/x\r\nContent-Length: 5\r\n\r\n"
                        "hello");
  expect_split_invariant(in);
}

// The de-chunked body of a chunked response, or "<malformed>".
std::string dechunk(const std::string& out) {
  std::size_t start = out.find("\r\n\r\n");
  if (start == std::string::npos) {
    return "<malformed>";
  }
  std::string body = out.substr(start + 4);
  std::string decoded;
  std::size_t pos = 0;
  while (true) {
    std::size_t eol = body.find("\r\n", pos);
    if (eol == std::string::npos) {
      return "<malformed>";
    }
    std::size_t n = std::stoul(body.substr(pos, eol - pos), nullptr, 16);
    if (n == 0) {
      return body.substr(eol) == "\r\n\r\n" ? decoded : "<malformed>";
    }
    decoded += body.substr(eol + 2, n);
    pos = eol + 2 + n + 2;
  }
}

TEST(ConnectionEcho, ChunkedInChunkedOut) {
  std::string in =
      "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n2;ext=1\r\nde\r\n0\r\n\r\n";
  // Chunk boundaries follow the reads (streaming), the body does not.
  for (std::size_t piece = 0; piece <= in.size(); ++piece) {
    std::string out = run_script(in, piece);
    ASSERT_TRUE(out.starts_with("HTTP/1.1 200 OK\r\n")) << out;
    EXPECT_NE(out.find("Transfer-Encoding: chunked\r\n"), std::string::npos);
    ASSERT_EQ(dechunk(out), "abcde") << "piece " << piece << ": " << out;
  }
}

TEST(ConnectionEcho, BodilessRequestGetsItsHeadEchoed) {
  CoreHarness h;
  h.send("GET /x?y=1 HTTP/1.1\r\nHost: a\r\nX-Test: v\r\n\r\n");
  h.run();
  std::string body = "GET /x?y=1 HTTP/1.1\r\nHost: a\r\nX-Test: v\r\n";
  EXPECT_EQ(h.output(), "HTTP/1.1 200 OK\r\nServer: gearbox\r\n" kDate
                        "Content-Type: text/plain\r\n"
                        "Content-Length: " +
                            std::to_string(body.size()) + "\r\n\r\n" + body);
}

TEST(ConnectionEcho, DateFollowsTheEventTimeAndTheWallOffset) {
  core::Config cfg;
  // 2026-11-25 00:00:00 UTC is 1795564800 s after the epoch; the harness starts at 1 h.
  cfg.wall_offset = std::chrono::seconds(1795564800) - std::chrono::hours(1);
  CoreHarness h(cfg);
  h.send("GET /health HTTP/1.1\r\nHost: a\r\n\r\n");
  h.run();
  EXPECT_NE(h.output().find("\r\nDate: Wed, 25 Nov 2026 00:00:00 GMT\r\n"), std::string::npos)
      << h.output();
  h.advance(std::chrono::milliseconds(59'500));
  h.send("GET /health HTTP/1.1\r\nHost: a\r\n\r\n");
  h.run();
  EXPECT_NE(h.output().find("\r\nDate: Wed, 25 Nov 2026 00:00:59 GMT\r\n"), std::string::npos)
      << h.output();
}

TEST(ConnectionEcho, HeadHasNoBody) {
  CoreHarness h;
  h.send("HEAD /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
  h.run();
  EXPECT_EQ(h.output(), "HTTP/1.1 200 OK\r\nServer: gearbox\r\n" kDate
                        "Content-Type: text/plain\r\nContent-Length: 13"
                        "\r\n\r\n");
}

TEST(ConnectionEcho, Http10ClosesUnlessKeepAlive) {
  {
    CoreHarness h;
    h.send("GET /health HTTP/1.0\r\n\r\n");
    h.run();
    EXPECT_NE(h.output().find("Connection: close\r\n"), std::string::npos);
    EXPECT_TRUE(h.shut_wr());
  }
  {
    CoreHarness h;
    h.send("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    h.run();
    EXPECT_EQ(h.output().find("Connection: close"), std::string::npos);
    EXPECT_FALSE(h.shut_wr());
  }
}

TEST(ConnectionEcho, ExpectContinueSendsInterimBeforeBodyIsRead) {
  CoreHarness h;
  h.send("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
  h.run();
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 100 Continue\r\n\r\n")) << h.output();
  h.send("abc");
  h.run();
  EXPECT_TRUE(h.output().ends_with("\r\n\r\nabc")) << h.output();
}

TEST(ConnectionEcho, ExpectContinueOverLimitGets413WithoutInterim) {
  core::Config cfg;
  cfg.limits.max_body = 10;
  CoreHarness h(cfg);
  h.send("POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n");
  h.run();
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 413 ")) << h.output();
  EXPECT_EQ(h.output().find("100 Continue"), std::string::npos);
}

struct BadCase {
  const char* name;
  std::string request;
  int status;
};

class ConnectionErrors : public ::testing::TestWithParam<BadCase> {};

TEST_P(ConnectionErrors, AnswersStatusAndCloses) {
  core::Config cfg;
  cfg.limits.max_header = 256;
  cfg.limits.max_headers = 5;
  cfg.limits.max_body = 16;
  CoreHarness h(cfg);
  h.send(GetParam().request);
  h.run();
  std::string prefix = "HTTP/1.1 " + std::to_string(GetParam().status) + " ";
  EXPECT_TRUE(h.output().starts_with(prefix)) << h.output();
  EXPECT_NE(h.output().find("Connection: close\r\n"), std::string::npos);
  EXPECT_TRUE(h.shut_wr());
  h.send_eof();
  h.run();
  EXPECT_TRUE(h.closed());
}

INSTANTIATE_TEST_SUITE_P(
    Statuses, ConnectionErrors,
    ::testing::Values(
        BadCase{"UriTooLong", "GET /" + std::string(400, 'a') + " HTTP/1.1\r\nHost: a\r\n\r\n",
                414},
        BadCase{"HeaderTooLarge",
                "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(300, 'b') + "\r\n\r\n", 431},
        BadCase{"TooManyFields",
                "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 1\r\nC: 1\r\nD: 1\r\nE: 1\r\n\r\n", 431},
        BadCase{"BodyTooLarge", "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 17\r\n\r\n", 413},
        BadCase{"UnknownTransferEncoding",
                "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501},
        BadCase{
            "ContentLengthWithTransferEncoding",
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
            400},
        BadCase{"MissingHost", "GET / HTTP/1.1\r\n\r\n", 400},
        BadCase{"HttpVersion2", "GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505},
        BadCase{"BadDelayArgument", "GET /delay/abc HTTP/1.1\r\nHost: a\r\n\r\n", 400},
        // Issue 8 point 1: CONNECT was echoed with a 200, which means "tunnel open".
        BadCase{"ConnectIsRefusedWith501",
                "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n\x16\x03\x01", 501}),
    [](const auto& info) { return std::string(info.param.name); });

TEST(ConnectionTimeouts, PartialHeadGets408AfterHeaderTimeout) {
  core::Config cfg;
  cfg.header_timeout = 1000ms;
  CoreHarness h(cfg);
  h.send("GET / HTTP/1.1\r\nHo");
  h.run();
  EXPECT_EQ(h.output(), "");
  h.advance(999ms);
  EXPECT_EQ(h.output(), "");
  h.advance(1ms);
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 408 ")) << h.output();
}

TEST(ConnectionTimeouts, IdleKeepAliveConnectionIsClosedSilently) {
  core::Config cfg;
  cfg.idle_timeout = 5000ms;
  CoreHarness h(cfg);
  h.send("GET /health HTTP/1.1\r\nHost: a\r\n\r\n");
  h.run();
  std::string first = h.output();
  h.advance(4999ms);
  EXPECT_FALSE(h.closed());
  h.advance(1ms);
  EXPECT_EQ(h.output(), first);
  EXPECT_TRUE(h.shut_wr() || h.closed());
}

TEST(ConnectionEcho, DelayAnswersAtItsDeadline) {
  CoreHarness h;
  h.send("GET /delay/250 HTTP/1.1\r\nHost: a\r\n\r\n");
  h.run();
  EXPECT_EQ(h.output(), "");
  EXPECT_EQ(h.deadline(), h.now() + 250ms);
  h.advance(250ms);
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 200 OK\r\n")) << h.output();
}

TEST(ConnectionEcho, DrainClosesIdleAndFinishesInFlight) {
  CoreHarness h;
  h.send("GET /delay/100 HTTP/1.1\r\nHost: a\r\n\r\n");
  h.run();
  h.conn().on_drain(h.now());
  h.run();
  EXPECT_FALSE(h.closed());
  h.advance(100ms);
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 200 OK\r\n")) << h.output();
  EXPECT_NE(h.output().find("Connection: close\r\n"), std::string::npos);
  EXPECT_TRUE(h.shut_wr());
}

TEST(ConnectionEcho, SlowReaderIsAbortedAfterSendTimeout) {
  core::Config cfg;
  cfg.send_timeout = 1000ms;
  CoreHarness h(cfg);
  h.client_window = 10;  // the client reads 10 bytes of the answer, then nothing
  h.send("GET /health HTTP/1.1\r\nHost: a\r\n\r\n");
  h.run();
  ASSERT_EQ(h.output(), "HTTP/1.1 2");
  EXPECT_EQ(h.deadline(), h.now() + cfg.send_timeout);
  h.advance(999ms);
  EXPECT_FALSE(h.closed()) << "cut before the send timeout";
  h.advance(1ms);
  EXPECT_TRUE(h.closed()) << "a client that stopped reading outlived --send-timeout";
  EXPECT_EQ(h.close_mode(), core::CloseMode::kAbort);
}

TEST(ConnectionEcho, ReaderThatKeepsReadingOutlivesSendTimeout) {
  core::Config cfg;
  cfg.send_timeout = 1000ms;
  CoreHarness h(cfg);
  h.client_window = 10;
  h.send("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\n\r\n" + std::string(3000, 'x'));
  h.run();
  // 10 bytes every 900 ms: progress each time, so the timeout restarts (it is not a total).
  for (int i = 0; i < 5; ++i) {
    h.advance(900ms);
    ASSERT_FALSE(h.closed()) << "step " << i;
    h.client_window += 10;
    h.run();
  }
  EXPECT_EQ(h.output().size(), 60u);
}

TEST(ConnectionEcho, PipeliningClientWhoseWindowIsFullIsAbortedAfterSendTimeout) {
  // The first answer fits exactly; the next cannot move a byte. The send timeout must run
  // from the moment it waits, not only after a write that left bytes behind.
  core::Config cfg;
  cfg.send_timeout = 1000ms;
  std::string two =
      "GET /health HTTP/1.1\r\nHost: a\r\n\r\nGET /health HTTP/1.1\r\nHost: a\r\n\r\n";
  CoreHarness probe(cfg);
  probe.send("GET /health HTTP/1.1\r\nHost: a\r\n\r\n");
  probe.run();
  CoreHarness h(cfg);
  h.client_window = probe.output().size();
  h.send(two);
  h.run();
  ASSERT_EQ(h.output(), probe.output());
  EXPECT_LE(h.deadline(), h.now() + cfg.send_timeout);
  h.advance(1000ms);
  EXPECT_TRUE(h.closed()) << "a client that never read the second answer outlived --send-timeout";
  EXPECT_EQ(h.close_mode(), core::CloseMode::kAbort);
}

TEST(ConnectionEcho, ClientThatTakesNoByteIsAbortedAfterSendTimeout) {
  core::Config cfg;
  cfg.send_timeout = 1000ms;
  CoreHarness h(cfg);
  h.client_window = 0;
  h.send("GET /health HTTP/1.1\r\nHost: a\r\n\r\n");
  h.run();
  EXPECT_EQ(h.output(), "");
  h.advance(1000ms);
  EXPECT_TRUE(h.closed());
  EXPECT_EQ(h.close_mode(), core::CloseMode::kAbort);
}

// --- Bytes the driver owns, handed over with on_client_data() ---------------------------------

TEST(ConnectionOwnedInput, IdleKeepAliveConnectionHoldsNoInputBuffer) {
  CoreHarness h({}, true);
  EXPECT_FALSE(h.conn().holds_buffers()) << "a buffer before the first byte";
  h.send("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
  h.run();
  EXPECT_EQ(h.output(), kPlaintextResponse);
  EXPECT_FALSE(h.conn().holds_buffers());
  EXPECT_EQ(h.free_buffers(), 0u) << "a request parsed in place took a buffer";
}

TEST(ConnectionOwnedInput, PartialHeadNeedsNoInputBuffer) {
  // The parser keeps what it has of a head itself: pieces of a head are parsed where they lie.
  CoreHarness h({}, true);
  h.piece = 10;
  h.send("GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
  h.run();
  EXPECT_EQ(h.output(), kPlaintextResponse);
  EXPECT_FALSE(h.conn().holds_buffers());
  EXPECT_EQ(h.free_buffers(), 0u);
}

TEST(ConnectionOwnedInput, BodyIsCopiedAndTheBufferGoesBackAtTheBoundary) {
  CoreHarness h({}, true);
  h.send("POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
  h.run();
  EXPECT_TRUE(h.output().ends_with("\r\n\r\nhello")) << h.output();
  EXPECT_FALSE(h.conn().holds_buffers());
  EXPECT_EQ(h.free_buffers(), 1u) << "the body's buffer was not given back";
}

TEST(ConnectionOwnedInput, ABodyAfterItsHeadIsReadIntoTheLentSpanAndNothingIsHeldAfter) {
  // The ring driver reads a body into the buffer the core needs for it anyway (no provided
  // buffer copied in); between requests no span is lent (the harness checks) and none is held.
  CoreHarness h({}, true);
  const std::string head = "POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 40000\r\n\r\n";
  std::string body;
  for (int i = 0; i < 40000; ++i) {
    body += static_cast<char>('a' + i % 26);
  }
  h.piece = head.size();  // the head alone, then the body in pieces of that size
  h.send(head + body + "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
  h.run();
  EXPECT_TRUE(h.output().ends_with("\r\n\r\n" + body + kPlaintextResponse)) << h.output().size();
  EXPECT_GE(h.lent_reads(), static_cast<int>(body.size() / head.size()));
  EXPECT_FALSE(h.conn().holds_buffers());
  EXPECT_EQ(h.free_buffers(), 1u);
}

TEST(ConnectionOwnedInput, ALentSpanIsKeptUntilItsReadIsReportedThoughTheRequestFailed) {
  // A read into the lent span may be in flight (a ring's receive) when the core gives up on
  // the request (here the body timeout): the buffer must not go back to the pool, where another
  // connection would take it while the kernel still writes into it, before that read is over.
  core::Config cfg;
  CoreHarness h(cfg, true);
  h.send("POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n");
  h.run();
  const std::span<char> lent = h.conn().wants().client_read;
  ASSERT_FALSE(lent.empty()) << "no span lent mid-body";
  h.advance(cfg.body_timeout + 1s);  // 408, written; then lingering
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 408 ")) << h.output();
  EXPECT_TRUE(h.conn().holds_buffers()) << "the lent span's buffer was let go with a read on it";
  EXPECT_EQ(h.free_buffers(), 0u);
  std::memcpy(lent.data(), "abc", 3);  // the read in flight completes
  h.conn().on_client_read(3, h.now());
  EXPECT_FALSE(h.conn().holds_buffers());
  EXPECT_EQ(h.free_buffers(), 1u);
  h.send_eof();
  h.run();
  EXPECT_TRUE(h.closed());
}

TEST(ConnectionOwnedInput, APoolOfLargerBuffersMovesABodyInLargerPieces) {
  // The ring driver's pool has 64 KiB buffers: the lent span, and so each body read and echoed
  // piece, is that large; the bytes still come back exact.
  constexpr std::size_t kBig = 64 * 1024;
  CoreHarness h({}, true, kBig);
  const std::string head = "POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 200000\r\n\r\n";
  std::string body;
  for (int i = 0; i < 200000; ++i) {
    body += static_cast<char>('a' + i % 23);
  }
  h.send(head);
  h.run();
  EXPECT_EQ(h.conn().wants().client_read.size(), kBig);
  h.send(body);
  h.run();
  EXPECT_TRUE(h.output().ends_with("\r\n\r\n" + body)) << h.output().size();
  EXPECT_LE(h.client_writes(), 1 + static_cast<int>(body.size() / kBig) + 1);
  EXPECT_FALSE(h.conn().holds_buffers());
}

TEST(ConnectionOwnedInput, AnEchoedBodyIsWrittenFromTheKeptBytesNotCopied) {
  // A driver that keeps what it handed over (the ring's provided buffer) until the write is
  // done: the body goes out from there, no input buffer is taken, and the bytes are let go
  // once written (the harness scribbles over them then: the next answer must not need them).
  CoreHarness h({}, true);
  h.keep_handed_data();
  const std::string body(4096, 'b');
  h.send("POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 4096\r\n\r\n" + body +
         "POST /e HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
         "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n");
  h.run();
  const std::string& out = h.output();
  const std::size_t first = out.find("\r\n\r\n" + body + "HTTP/1.1 200 OK\r\n");
  ASSERT_NE(first, std::string::npos) << out;
  EXPECT_NE(out.find("\r\n\r\n3\r\nabc\r\n0\r\n\r\n", first), std::string::npos) << out;
  EXPECT_TRUE(out.ends_with(kPlaintextResponse)) << out;
  EXPECT_EQ(h.writes_from_handed_data(), 1) << "the 4 KiB body was not written from the bytes";
  EXPECT_EQ(h.held_writes(), 1);
  EXPECT_FALSE(h.conn().wants().client_data_held);
  EXPECT_FALSE(h.conn().holds_buffers());
}

TEST(ConnectionOwnedInput, KeptBytesAreLetGoWhenTheExchangeIsAbandoned) {
  // The client stops reading the echo and then resets: the write that pointed into the kept
  // bytes is abandoned, and so is the hold.
  CoreHarness h({}, true);
  h.keep_handed_data();
  h.client_window = 0;
  h.send("POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
  h.run();
  EXPECT_TRUE(h.conn().wants().client_data_held);
  h.conn().on_client_error(ECONNRESET, h.now());
  h.run();
  EXPECT_TRUE(h.closed());
}

TEST(ConnectionOwnedInput, WithoutKeepingNothingPointsIntoHandedOverBytes) {
  CoreHarness h({}, true);
  h.send("POST /e HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello");
  h.client_window = 0;
  h.run();
  EXPECT_FALSE(h.conn().wants().client_data_held);
  EXPECT_TRUE(h.conn().holds_buffers()) << "the body was not copied into an input buffer";
}

TEST(ConnectionOwnedInput, PipelinedFloodTakesWhatFitsAndTheRestLater) {
  CoreHarness h({}, true);
  const std::string one = "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n";
  std::string flood;
  for (int i = 0; i < 1000; ++i) {
    flood += one;
  }
  // The first request is answered from the handed-over bytes; the rest waits for that answer
  // to be written, in the 16 KiB input buffer: what does not fit is not taken.
  std::size_t taken = h.conn().on_client_data(flood, h.now());
  EXPECT_EQ(taken, one.size() + core::BufferPool::kSize);
  h.send(flood.substr(taken));
  h.run();
  std::string expected;
  for (int i = 0; i < 1000; ++i) {
    expected += kPlaintextResponse;
  }
  EXPECT_EQ(h.output(), expected);
  EXPECT_FALSE(h.conn().holds_buffers());
}

}  // namespace
// What follows a batch goes out after it, in order: an error answer to a malformed pipelined
// request, an echoed body, the close of the last request.
TEST(ConnectionEcho, PipelinedBatchIsFollowedInOrderByWhatComesAfterIt) {
  for (bool owned : {false, true}) {
    std::string two =
        "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n"
        "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n";
    {
      CoreHarness h({}, owned);
      h.send(two + "GET /plaintext HTTP/1.1\r\nHost: a\r\nBad Field: x\r\n\r\n");
      h.run();
      EXPECT_EQ(h.output().substr(0, 2 * kPlaintextResponse.size()),
                kPlaintextResponse + kPlaintextResponse)
          << "owned " << owned;
      EXPECT_EQ(h.output().substr(2 * kPlaintextResponse.size(), 24), "HTTP/1.1 400 Bad Request")
          << h.output();
      EXPECT_TRUE(h.shut_wr());
    }
    {
      CoreHarness h({}, owned);
      std::string in = two + "POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
                       "GET /plaintext HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";
      h.send(in);
      h.run();
      const std::string echo =
          "HTTP/1.1 200 OK\r\nServer: gearbox\r\n" kDate "Content-Length: 5\r\n\r\nhello";
      const std::string last = "HTTP/1.1 200 OK\r\nServer: gearbox\r\n" kDate
                               "Connection: close\r\nContent-Type: text/plain\r\n"
                               "Content-Length: 13\r\n\r\nHello, World!";
      EXPECT_EQ(h.output(), kPlaintextResponse + kPlaintextResponse + echo + last)
          << "owned " << owned;
      EXPECT_TRUE(h.shut_wr());
      EXPECT_LE(h.client_writes(), 3);
      expect_split_invariant(in);
    }
  }
}

// TechEmpower's plaintext depth: sixteen requests in one read are answered with one write (a
// write per response was sixteen sends and sixteen completions on a ring), from a lent span and
// handed over alike.
TEST(ConnectionEcho, SixteenPipelinedRequestsInOneReadAreAnsweredWithOneWrite) {
  for (bool owned : {false, true}) {
    std::string in;
    for (int i = 0; i < 16; ++i) {
      in += "GET /plaintext HTTP/1.1\r\nHost: a\r\n\r\n";
    }
    CoreHarness h({}, owned);
    h.send(in);
    h.run();
    std::string want;
    for (int i = 0; i < 16; ++i) {
      want += kPlaintextResponse;
    }
    EXPECT_EQ(h.output(), want) << "owned " << owned;
    EXPECT_EQ(h.client_writes(), 1) << "owned " << owned;
  }
}

}  // namespace gearbox
