// Conformance of echo mode over every backend: bodies echoed byte for byte (fixed length and
// chunked), the head echo, the fixed endpoints, HEAD, keep-alive, pipelining, HTTP/1.0 and
// Expect: 100-continue, all against the real binary on 127.0.0.1:0.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>
#include <thread>

#include "tests/conformance/conformance.hpp"

namespace gearbox::test {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

class EchoTest : public ConformanceTest {};
GEARBOX_CONFORMANCE_SUITE(EchoTest);

std::string post_head(std::size_t length, std::string_view content_type) {
  return "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Type: " + std::string(content_type) +
         "\r\nContent-Length: " + std::to_string(length) + "\r\n\r\n";
}

// Echoes a body of `size` bytes and checks status, framing, content and Content-Type.
void expect_echo(int port, std::size_t size) {
  Socket s = Socket::connect(port);
  ASSERT_TRUE(s.valid()) << s.error();
  std::string body = binary_body(size);
  HttpResponse r = post_and_read(s, post_head(size, "application/x-gearbox-test"), body);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200) << r.raw_head;
  EXPECT_EQ(r.header("Content-Type"), "application/x-gearbox-test") << r.raw_head;
  EXPECT_EQ(r.body.size(), body.size());
  EXPECT_TRUE(r.body == body) << "echoed body differs from the request body";
  EXPECT_FALSE(r.close_delimited) << "echo of a Content-Length body should be length-delimited";
  // The connection stays usable.
  ASSERT_TRUE(s.send_all("GET /health HTTP/1.1\r\nHost: test\r\n\r\n"));
  HttpResponse next = s.read_response();
  ASSERT_TRUE(next.ok()) << next.error;
  EXPECT_EQ(next.status, 200);
  EXPECT_EQ(next.body, "ok");
}

TEST_P(EchoTest, EchoesEmptyBody) {
  ASSERT_TRUE(start_server());
  expect_echo(port(), 0);
}

TEST_P(EchoTest, EchoesOneByteBody) {
  ASSERT_TRUE(start_server());
  expect_echo(port(), 1);
}

TEST_P(EchoTest, Echoes64KiBBody) {
  ASSERT_TRUE(start_server());
  expect_echo(port(), 64 * 1024);
}

TEST_P(EchoTest, Echoes8MiBBody) {
  ASSERT_TRUE(start_server({"--max-body", "16m"}));
  expect_echo(port(), 8 * 1024 * 1024);
}

TEST_P(EchoTest, EchoesChunkedBodyChunked) {
  ASSERT_TRUE(start_server());
  std::string expected;
  std::string request =
      "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Type: text/x-chunks\r\n"
      "Transfer-Encoding: chunked\r\n\r\n";
  for (std::size_t size : {1u, 10u, 4096u, 100'000u, 7u}) {
    std::string piece = binary_body(size);
    std::ostringstream hex;
    hex << std::hex << size;
    request += hex.str() + "\r\n" + piece + "\r\n";
    expected += piece;
  }
  request += "0\r\n\r\n";
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  HttpResponse r = post_and_read(s, request, "");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200) << r.raw_head;
  EXPECT_TRUE(r.chunked) << "a chunked request must get a chunked response:\n" << r.raw_head;
  EXPECT_FALSE(r.header("Content-Length").has_value()) << r.raw_head;
  EXPECT_EQ(r.header("Content-Type"), "text/x-chunks") << r.raw_head;
  EXPECT_EQ(r.body.size(), expected.size());
  EXPECT_TRUE(r.body == expected) << "echoed chunked body differs";
}

TEST_P(EchoTest, EchoesChunkedBodySentByteByByte) {
  ASSERT_TRUE(start_server());
  std::string request =
      "POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
      "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n";
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  for (char c : request) {
    ASSERT_TRUE(s.send_all(std::string_view(&c, 1))) << s.error();
  }
  HttpResponse r = s.read_response();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.chunked) << r.raw_head;
  EXPECT_EQ(r.body, "hello world");
}

// Issue 8 point 2: trailer fields are never framing (RFC 9110 §6.5.1, RFC 9112 §7.1.2). A
// Transfer-Encoding there cut the echoed body short, Connection: close lost the next request.
TEST_P(EchoTest, FramingFieldsInATrailerAreIgnored) {
  ASSERT_TRUE(start_server());
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(
      s.send_all("POST /echo HTTP/1.1\r\nHost: test\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n0\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\n"
                 "Connection: close\r\n\r\nGET /health HTTP/1.1\r\nHost: test\r\n\r\n"));
  HttpResponse r = s.read_response();
  ASSERT_TRUE(r.ok()) << r.error << r.raw_head;
  EXPECT_EQ(r.status, 200) << r.raw_head;
  EXPECT_EQ(r.body, "hello");
  HttpResponse next = s.read_response();
  ASSERT_TRUE(next.ok()) << "the request after the trailer section was lost: " << next.error;
  EXPECT_EQ(next.status, 200);
  EXPECT_EQ(next.body, "ok");
}

TEST_P(EchoTest, GetEchoesRequestLineAndHeaders) {
  ASSERT_TRUE(start_server());
  HttpResponse r = exchange(port(),
                            "GET /some/path?q=1&r=%20 HTTP/1.1\r\nHost: test.example\r\n"
                            "X-MiXeD-Case: Some Value\r\nAccept: */*\r\n\r\n");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.header("Content-Type").value_or("").starts_with("text/plain")) << r.raw_head;
  EXPECT_NE(r.body.find("GET /some/path?q=1&r=%20 HTTP/1.1"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("Host: test.example"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("X-MiXeD-Case: Some Value"), std::string::npos) << r.body;
  EXPECT_NE(r.body.find("Accept: */*"), std::string::npos) << r.body;
  EXPECT_LT(r.body.find("GET /some/path"), r.body.find("Host: test.example")) << r.body;
}

TEST_P(EchoTest, Plaintext) {
  ASSERT_TRUE(start_server());
  HttpResponse r = exchange(port(), "GET /plaintext HTTP/1.1\r\nHost: test\r\n\r\n");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.version, "HTTP/1.1");
  EXPECT_EQ(r.status, 200);
  EXPECT_TRUE(r.header("Content-Type").value_or("").starts_with("text/plain")) << r.raw_head;
  EXPECT_EQ(r.body, "Hello, World!");
}

TEST_P(EchoTest, Health) {
  ASSERT_TRUE(start_server());
  CurlClient curl;
  auto r = curl.get(url("/health"));
  ASSERT_EQ(r.curl_code, 0) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "ok");
}

TEST_P(EchoTest, DelayAnswersAfterTheDelay) {
  ASSERT_TRUE(start_server());
  auto start = Clock::now();
  HttpResponse r = exchange(port(), "GET /delay/200 HTTP/1.1\r\nHost: test\r\n\r\n");
  auto elapsed = Clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_GE(elapsed, 200ms);
  EXPECT_LT(elapsed, 2000ms);
}

TEST_P(EchoTest, DelaysOverlapOnSeparateConnections) {
  ASSERT_TRUE(start_server());
  Socket a = Socket::connect(port());
  Socket b = Socket::connect(port());
  ASSERT_TRUE(a.valid() && b.valid());
  auto start = Clock::now();
  ASSERT_TRUE(a.send_all("GET /delay/300 HTTP/1.1\r\nHost: test\r\n\r\n"));
  ASSERT_TRUE(b.send_all("GET /delay/300 HTTP/1.1\r\nHost: test\r\n\r\n"));
  HttpResponse ra = a.read_response();
  HttpResponse rb = b.read_response();
  auto elapsed = Clock::now() - start;
  ASSERT_TRUE(ra.ok()) << ra.error;
  ASSERT_TRUE(rb.ok()) << rb.error;
  EXPECT_EQ(ra.status, 200);
  EXPECT_EQ(rb.status, 200);
  EXPECT_GE(elapsed, 300ms);
  EXPECT_LT(elapsed, 600ms) << "two /delay/300 on two connections were served one after the other";
}

TEST_P(EchoTest, CpuBurnsCpu) {
  ASSERT_TRUE(start_server());
  // Warm up (the first request may pay for thread creation etc.).
  ASSERT_TRUE(exchange(port(), "GET /health HTTP/1.1\r\nHost: t\r\n\r\n").ok());
  Millis before = server_.cpu_time();
  auto start = Clock::now();
  HttpResponse r = exchange(port(), "GET /cpu/50 HTTP/1.1\r\nHost: test\r\n\r\n");
  auto elapsed = Clock::now() - start;
  Millis burnt = server_.cpu_time() - before;
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  // Clock ticks are 10 ms; allow one tick of measurement error.
  EXPECT_GE(burnt, 40ms) << "server CPU time grew by only " << burnt.count() << " ms";
  EXPECT_GE(elapsed, 40ms);
  EXPECT_LT(elapsed, 2000ms);
}

TEST_P(EchoTest, HeadHasNoBody) {
  ASSERT_TRUE(start_server());
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(s.send_all("HEAD /plaintext HTTP/1.1\r\nHost: test\r\n\r\n"));
  HttpResponse head = s.read_response(5s, /*head_request=*/true);
  ASSERT_TRUE(head.ok()) << head.error;
  EXPECT_EQ(head.status, 200);
  // Had any body bytes followed the HEAD response, they would precede the next status line.
  ASSERT_TRUE(s.send_all("GET /plaintext HTTP/1.1\r\nHost: test\r\n\r\n"));
  HttpResponse get = s.read_response();
  ASSERT_TRUE(get.ok()) << "bytes after the HEAD response? " << get.error;
  EXPECT_EQ(get.status, 200);
  EXPECT_EQ(get.body, "Hello, World!");
  if (head.header("Content-Length").has_value()) {
    EXPECT_EQ(head.header("Content-Length"), get.header("Content-Length"));
  }
}

TEST_P(EchoTest, HeadOfHeadEchoHasNoBody) {
  ASSERT_TRUE(start_server());
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(
      s.send_all("HEAD /anything HTTP/1.1\r\nHost: test\r\n\r\n"
                 "GET /health HTTP/1.1\r\nHost: test\r\n\r\n"));
  HttpResponse head = s.read_response(5s, true);
  ASSERT_TRUE(head.ok()) << head.error;
  EXPECT_EQ(head.status, 200);
  HttpResponse get = s.read_response();
  ASSERT_TRUE(get.ok()) << "bytes after the HEAD response? " << get.error;
  EXPECT_EQ(get.body, "ok");
}

TEST_P(EchoTest, KeepAliveReusesOneConnection) {
  ASSERT_TRUE(start_server());
  CurlClient curl;
  for (int i = 0; i < 10; ++i) {
    auto r = curl.get(url(i % 2 == 0 ? "/plaintext" : "/health"));
    ASSERT_EQ(r.curl_code, 0) << r.error;
    EXPECT_EQ(r.status, 200);
  }
  auto post = curl.request("POST", url("/echo"), "some body", {"Content-Type: text/x-test"});
  ASSERT_EQ(post.curl_code, 0) << post.error;
  EXPECT_EQ(post.body, "some body");
  EXPECT_EQ(curl.connects(), 1) << "libcurl had to open " << curl.connects() << " connections";
}

TEST_P(EchoTest, PipelinedRequestsAnsweredInOrder) {
  ASSERT_TRUE(start_server());
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(
      s.send_all("GET /delay/100 HTTP/1.1\r\nHost: test\r\n\r\n"
                 "POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 6\r\n\r\nsecond"
                 "GET /plaintext HTTP/1.1\r\nHost: test\r\n\r\n"));
  HttpResponse first = s.read_response();
  HttpResponse second = s.read_response();
  HttpResponse third = s.read_response();
  ASSERT_TRUE(first.ok()) << first.error;
  ASSERT_TRUE(second.ok()) << second.error;
  ASSERT_TRUE(third.ok()) << third.error;
  EXPECT_EQ(first.status, 200);
  EXPECT_NE(first.body, "second") << "responses out of order";
  EXPECT_NE(first.body, "Hello, World!") << "responses out of order";
  EXPECT_EQ(second.body, "second");
  EXPECT_EQ(third.body, "Hello, World!");
  auto close = s.wait_for_close(300ms);
  EXPECT_FALSE(close.closed) << "keep-alive connection closed after pipelined requests";
  EXPECT_EQ(close.extra, "");
}

// TechEmpower's plaintext depth, sent in one piece: all sixteen answered, in order, and the
// connection still serves (the core batches them into one write).
TEST_P(EchoTest, SixteenPipelinedRequestsInOneSendAreAnsweredInOrder) {
  ASSERT_TRUE(start_server());
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  std::string in;
  for (int i = 0; i < 16; ++i) {
    in += i % 4 == 3 ? "GET /health HTTP/1.1\r\nHost: test\r\n\r\n"
                     : "GET /plaintext HTTP/1.1\r\nHost: test\r\n\r\n";
  }
  ASSERT_TRUE(s.send_all(in));
  for (int i = 0; i < 16; ++i) {
    HttpResponse r = s.read_response();
    ASSERT_TRUE(r.ok()) << "response " << i << ": " << r.error;
    EXPECT_EQ(r.status, 200);
    EXPECT_EQ(r.body, i % 4 == 3 ? "ok" : "Hello, World!") << "response " << i;
  }
  auto close = s.wait_for_close(300ms);
  EXPECT_FALSE(close.closed) << "keep-alive connection closed after pipelined requests";
  EXPECT_EQ(close.extra, "");
}

TEST_P(EchoTest, Http10ClosesByDefault) {
  ASSERT_TRUE(start_server());
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(s.send_all("GET /plaintext HTTP/1.0\r\n\r\n"));
  HttpResponse r = s.read_response();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "Hello, World!");
  auto close = s.wait_for_close(3s);
  EXPECT_TRUE(close.closed) << "HTTP/1.0 without keep-alive must be closed after the response";
  EXPECT_EQ(close.extra, "");
}

TEST_P(EchoTest, Http10KeepAliveStaysOpen) {
  ASSERT_TRUE(start_server());
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(s.send_all("GET /plaintext HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  HttpResponse r = s.read_response();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_FALSE(r.close_delimited) << "a keep-alive response needs a length:\n" << r.raw_head;
  EXPECT_TRUE(r.has_connection_token("keep-alive")) << r.raw_head;
  ASSERT_TRUE(s.send_all("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
  HttpResponse again = s.read_response();
  ASSERT_TRUE(again.ok()) << again.error;
  EXPECT_EQ(again.body, "ok");
}

TEST_P(EchoTest, ConnectionCloseClosesAfterResponse) {
  ASSERT_TRUE(start_server());
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(s.send_all("GET /plaintext HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"));
  HttpResponse r = s.read_response();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "Hello, World!");
  auto close = s.wait_for_close(3s);
  EXPECT_TRUE(close.closed) << "Connection: close must close after the response";
  EXPECT_EQ(close.extra, "");
}

TEST_P(EchoTest, ExpectContinueGets100BeforeBody) {
  ASSERT_TRUE(start_server());
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(
      s.send_all("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 11\r\n"
                 "Content-Type: text/plain\r\nExpect: 100-continue\r\n\r\n"));
  HttpResponse interim = s.read_response(3s);
  ASSERT_TRUE(interim.ok()) << interim.error;
  EXPECT_EQ(interim.status, 100) << interim.raw_head;
  EXPECT_EQ(interim.raw_head.substr(0, 21), "HTTP/1.1 100 Continue");
  ASSERT_TRUE(s.send_all("hello there"));
  HttpResponse r = s.read_response();
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "hello there");
}

TEST_P(EchoTest, ExpectContinueOverMaxBodyGets413Without100) {
  ASSERT_TRUE(start_server({"--max-body", "1k"}));
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(
      s.send_all("POST /echo HTTP/1.1\r\nHost: test\r\nContent-Length: 4096\r\n"
                 "Expect: 100-continue\r\n\r\n"));
  HttpResponse r = s.read_response(3s);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 413) << r.raw_head;
  auto close = s.wait_for_close(3s);
  EXPECT_TRUE(close.closed);
  EXPECT_EQ(close.extra, "");
}

}  // namespace
}  // namespace gearbox::test
