// Conformance of error handling over every backend: each malformed or over-limit request gets
// its status (RFC 9112 / RFC 9110) and the server then closes the connection. Raw sockets only.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "tests/conformance/conformance.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;

class ErrorTest : public ConformanceTest {
 protected:
  // Sends `request`, expects a response with one of `statuses` and then the connection closed
  // by the server with nothing more sent.
  void expect_error(const std::string& request, std::vector<int> statuses) {
    Socket s = Socket::connect(port());
    ASSERT_TRUE(s.valid()) << s.error();
    ASSERT_TRUE(s.send_all(request)) << s.error();
    HttpResponse r = s.read_response(3s);
    ASSERT_TRUE(r.ok()) << r.error;
    bool expected = std::find(statuses.begin(), statuses.end(), r.status) != statuses.end();
    EXPECT_TRUE(expected) << "got " << r.status << ", expected one of "
                          << ::testing::PrintToString(statuses) << "\n"
                          << r.raw_head << r.body;
    EXPECT_EQ(r.version, "HTTP/1.1");
    auto close = s.wait_for_close(3s);
    EXPECT_TRUE(close.closed) << "the server must close the connection after a " << r.status;
    EXPECT_EQ(close.extra, "") << "bytes after the error response";
    // The server is still serving.
    HttpResponse ok = exchange(port(), "GET /health HTTP/1.1\r\nHost: test\r\n\r\n");
    ASSERT_TRUE(ok.ok()) << ok.error;
    EXPECT_EQ(ok.status, 200);
  }
  void expect_error(const std::string& request, int status) {
    expect_error(request, std::vector<int>{status});
  }
};
GEARBOX_CONFORMANCE_SUITE(ErrorTest);

// Issue 8 point 1: CONNECT was echoed with a 200, which tells a client its tunnel is open
// (RFC 9110 §9.3.6). gearbox opens no tunnel: 501 and close, the tunnel bytes unread.
TEST_P(ErrorTest, ConnectIsRefusedWith501AndClosed) {
  ASSERT_TRUE(start_server());
  expect_error("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n\x16\x03\x01",
               501);
}

TEST_P(ErrorTest, RequestLineTooLongIs414) {
  ASSERT_TRUE(start_server({"--max-header", "4k"}));
  expect_error("GET /" + std::string(8000, 'a') + " HTTP/1.1\r\nHost: test\r\n\r\n", 414);
}

TEST_P(ErrorTest, HeaderSectionTooLargeIs431) {
  ASSERT_TRUE(start_server({"--max-header", "4k"}));
  expect_error("GET / HTTP/1.1\r\nHost: test\r\nX-Big: " + std::string(8000, 'b') + "\r\n\r\n",
               431);
}

TEST_P(ErrorTest, ManySmallHeadersOverMaxHeaderIs431) {
  ASSERT_TRUE(start_server({"--max-header", "4k"}));
  std::string request = "GET / HTTP/1.1\r\nHost: test\r\n";
  for (int i = 0; i < 400; ++i) {
    request += "X-F" + std::to_string(i) + ": v\r\n";
  }
  expect_error(request + "\r\n", 431);
}

TEST_P(ErrorTest, TooManyHeaderFieldsIs431) {
  ASSERT_TRUE(start_server({"--max-headers", "10"}));
  std::string request = "GET / HTTP/1.1\r\nHost: test\r\n";
  for (int i = 0; i < 20; ++i) {
    request += "X-F" + std::to_string(i) + ": v\r\n";
  }
  expect_error(request + "\r\n", 431);
}

TEST_P(ErrorTest, HeadersAtMaxHeadersAreAccepted) {
  ASSERT_TRUE(start_server({"--max-headers", "10"}));
  std::string request = "GET / HTTP/1.1\r\nHost: test\r\n";
  for (int i = 0; i < 9; ++i) {
    request += "X-F" + std::to_string(i) + ": v\r\n";
  }
  HttpResponse r = exchange(port(), request + "\r\n");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
}

TEST_P(ErrorTest, ContentLengthOverMaxBodyIs413) {
  ASSERT_TRUE(start_server({"--max-body", "1k"}));
  expect_error("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 4096\r\n\r\n", 413);
}

TEST_P(ErrorTest, ChunkedBodyOverMaxBodyIs413) {
  ASSERT_TRUE(start_server({"--max-body", "1k"}));
  // Echo streams, so the 200 head may already be out when the limit is crossed: then the
  // response must be cut (no clean end). Without a head yet, 413.
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  std::string request = "POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 3; ++i) {
    request += "258\r\n" + std::string(600, 'x') + "\r\n";
  }
  ASSERT_TRUE(s.send_all(request)) << s.error();
  HttpResponse r = s.read_response(3s);
  if (r.ok()) {
    EXPECT_EQ(r.status, 413) << r.raw_head;
  } else {
    EXPECT_EQ(r.status, 200) << r.error;
    EXPECT_TRUE(r.chunked) << r.raw_head;
    EXPECT_LE(r.body.size(), 1024u) << "more than --max-body echoed";
  }
  auto close = s.wait_for_close(3s);
  EXPECT_TRUE(close.closed);
}

TEST_P(ErrorTest, BodyAtMaxBodyIsAccepted) {
  ASSERT_TRUE(start_server({"--max-body", "1k"}));
  HttpResponse r =
      exchange(port(), "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 1024\r\n\r\n" +
                           std::string(1024, 'y'));
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, std::string(1024, 'y'));
}

TEST_P(ErrorTest, UnknownTransferCodingIs501) {
  ASSERT_TRUE(start_server());
  // RFC 9112 §6.1: a transfer coding the server does not understand -> 501.
  expect_error(
      "POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n",
      501);
}

TEST_P(ErrorTest, ChunkedNotTheFinalTransferCodingIs400) {
  ASSERT_TRUE(start_server());
  // RFC 9112 §6.3 item 4: chunked not the final coding of a request: 400 (a MUST), then close.
  expect_error("POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: gzip\r\n\r\n", 400);
  expect_error(
      "POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked, gzip\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n",
      400);
  // RFC 9112 §6.1: chunked applied twice is malformed framing.
  expect_error(
      "POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked, chunked\r\n\r\n"
      "5\r\nhello\r\n0\r\n\r\n",
      400);
}

TEST_P(ErrorTest, AsteriskFormOtherThanOptionsIs400) {
  ASSERT_TRUE(start_server());
  // RFC 9112 §3.2.4: "*" is the target of a server-wide OPTIONS only.
  expect_error("GET * HTTP/1.1\r\nHost: test\r\n\r\n", 400);
  expect_error("DELETE * HTTP/1.1\r\nHost: test\r\n\r\n", 400);
}

TEST_P(ErrorTest, ContentLengthWithTransferEncodingIs400) {
  ASSERT_TRUE(start_server());
  // RFC 9112 §6.3 item 3: a request smuggling vector; reject.
  expect_error(
      "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\n"
      "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      400);
}

TEST_P(ErrorTest, TwoDifferentContentLengthsIs400) {
  ASSERT_TRUE(start_server());
  // RFC 9112 §6.3 item 5.
  expect_error(
      "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n"
      "hello!",
      400);
}

TEST_P(ErrorTest, BadChunkSizeIs400) {
  ASSERT_TRUE(start_server());
  // Echo streams: the 200 head may already be out when the bad chunk size arrives, but here
  // it is in the same write as the head, so the error is found first.
  expect_error(
      "POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n"
      "0\r\n\r\n",
      400);
}

TEST_P(ErrorTest, ObsFoldIs400) {
  ASSERT_TRUE(start_server());
  // RFC 9112 §5.2: obs-fold outside message/http -> 400.
  expect_error("GET / HTTP/1.1\r\nHost: test\r\nX-Folded: one\r\n  two\r\n\r\n", 400);
}

TEST_P(ErrorTest, BareCrIs400) {
  ASSERT_TRUE(start_server());
  // RFC 9112 §2.2: a bare CR -> reject.
  expect_error("GET / HTTP/1.1\r\nHost: test\r\nX-Cr: a\rb\r\n\r\n", 400);
}

TEST_P(ErrorTest, SpaceBeforeColonIs400) {
  ASSERT_TRUE(start_server());
  // RFC 9112 §5.1: whitespace between field name and colon -> 400.
  expect_error("GET / HTTP/1.1\r\nHost: test\r\nX-Space : v\r\n\r\n", 400);
}

TEST_P(ErrorTest, MissingHostIs400) {
  ASSERT_TRUE(start_server());
  // RFC 9112 §3.2: an HTTP/1.1 request without Host -> 400.
  expect_error("GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", 400);
}

TEST_P(ErrorTest, TwoHostsIs400) {
  ASSERT_TRUE(start_server());
  // RFC 9112 §3.2: more than one Host -> 400.
  expect_error("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400);
}

TEST_P(ErrorTest, InvalidHostValueIs400) {
  ASSERT_TRUE(start_server());
  // RFC 9110 §7.2 / RFC 9112 §3.2: a Host that is no uri-host [":" port] -> 400.
  expect_error("GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 400);
  expect_error("GET / HTTP/1.1\r\nHost: user@example.com\r\n\r\n", 400);
}

TEST_P(ErrorTest, UnknownMethodIs501) {
  ASSERT_TRUE(start_server());
  // RFC 9110 §9.1: a method token the server does not recognise -> 501 Not Implemented.
  expect_error("BREW /pot HTTP/1.1\r\nHost: test\r\n\r\n", 501);
  expect_error("get / HTTP/1.1\r\nHost: test\r\n\r\n", 501);  // methods are case-sensitive
}

TEST_P(ErrorTest, ControlCharacterInTargetIs400) {
  ASSERT_TRUE(start_server());
  expect_error(std::string("GET /a\x01") + "b HTTP/1.1\r\nHost: test\r\n\r\n", 400);
}

TEST_P(ErrorTest, DelInTargetIs400) {
  ASSERT_TRUE(start_server());
  expect_error(
      "GET /a\x7f"
      "b HTTP/1.1\r\nHost: test\r\n\r\n",
      400);
}

TEST_P(ErrorTest, Http20RequestLineIs505) {
  ASSERT_TRUE(start_server());
  expect_error("GET / HTTP/2.0\r\nHost: test\r\n\r\n", 505);
}

TEST_P(ErrorTest, Http12RequestLineIs505) {
  ASSERT_TRUE(start_server());
  expect_error("GET / HTTP/1.2\r\nHost: test\r\n\r\n", 505);
}

TEST_P(ErrorTest, Http09RequestGetsAStatusLine) {
  ASSERT_TRUE(start_server());
  // An HTTP/0.9 request line: the answer must still be an HTTP/1.1 status line, never a
  // status-less 0.9 reply (the reader rejects anything not starting "HTTP/").
  expect_error("GET /plaintext\r\n\r\n", {400, 505});
}

TEST_P(ErrorTest, GarbageRequestLineIs400) {
  ASSERT_TRUE(start_server());
  const char kTlsHello[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 not http\r\n\r\n";
  expect_error(std::string(kTlsHello, sizeof kTlsHello - 1), 400);
}

// A malformed request pipelined after a good one still gets its 400 (nginx does): the good
// one's answer first, then the 400, then the close. It was cut without an answer: the core took
// the previous response's start for the error's.
TEST_P(ErrorTest, MalformedRequestPipelinedAfterAGoodOneIs400) {
  ASSERT_TRUE(start_server());
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(
      s.send_all("GET /plaintext HTTP/1.1\r\nHost: test\r\n\r\n"
                 "GET /plaintext HTTP/1.1\r\nHost: test\r\nBad Field: x\r\n\r\n"));
  HttpResponse good = s.read_response(3s);
  ASSERT_TRUE(good.ok()) << good.error;
  EXPECT_EQ(good.status, 200);
  EXPECT_EQ(good.body, "Hello, World!");
  HttpResponse bad = s.read_response(3s);
  ASSERT_TRUE(bad.ok()) << bad.error;
  EXPECT_EQ(bad.status, 400) << bad.raw_head;
  auto close = s.wait_for_close(3s);
  EXPECT_TRUE(close.closed) << "the server must close the connection after a 400";
  EXPECT_EQ(close.extra, "");
}

}  // namespace
}  // namespace gearbox::test
