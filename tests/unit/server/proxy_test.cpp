// Byte scripts through the core's proxy half: what reaches the upstream, what reaches the
// client, when the upstream connection is reused or discarded, and each 502/504 rule.
#include <gtest/gtest.h>

#include <string>

#include "tests/support/core_harness.hpp"
#include "tests/support/proxy_config.hpp"

namespace gearbox {
namespace {

using test::CoreHarness;
using namespace std::chrono_literals;

// The shared proxy configuration, with a 2 s upstream read timeout for the timeout cases.
core::Config proxy_config(int servers = 1) {
  core::Config cfg = test::proxy_config(servers);
  cfg.groups[0].read_timeout = 2000ms;
  return cfg;
}

const std::string kOk = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

TEST(ProxyLeg, RelaysRequestAndResponseAndReusesTheConnection) {
  CoreHarness h(proxy_config());
  h.upstream_script = kOk;
  h.send("GET /a HTTP/1.1\r\nHost: app\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\n\r\n");
  h.run();
  EXPECT_EQ(h.upstream_received(),
            "GET /a HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: 127.0.0.1\r\n"
            "X-Forwarded-Proto: http\r\nX-Forwarded-Host: app\r\nVia: 1.1 gearbox\r\n\r\n");
  EXPECT_EQ(h.output(), "HTTP/1.1 200 OK\r\nVia: 1.1 gearbox\r\nContent-Length: 2\r\n\r\nok");
  EXPECT_EQ(h.reuses(), 1);
  EXPECT_FALSE(h.closed());
}

TEST(ProxyLeg, StreamsChunkedRequestBodyReframed) {
  CoreHarness h(proxy_config());
  h.upstream_script = kOk;
  h.send(
      "POST /a HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n");
  h.run();
  EXPECT_TRUE(h.upstream_received().ends_with("\r\n\r\n3\r\nabc\r\n0\r\n\r\n"))
      << h.upstream_received();
  EXPECT_NE(h.upstream_received().find("Transfer-Encoding: chunked\r\n"), std::string::npos);
  EXPECT_TRUE(h.output().ends_with("ok"));
}

TEST(ProxyLeg, RefusedUpstreamIs502) {
  CoreHarness h(proxy_config());
  h.upstream_refuses = true;
  h.send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 502 ")) << h.output();
  EXPECT_EQ(h.connects(), 1);
}

TEST(ProxyLeg, ConnectFailureTriesTheNextServer) {
  CoreHarness h(proxy_config(2));
  h.upstream_refuses = true;
  h.send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  EXPECT_EQ(h.connects(), 2);
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 502 ")) << h.output();
}

TEST(ProxyLeg, MalformedUpstreamResponseIs502AndDiscarded) {
  CoreHarness h(proxy_config());
  h.upstream_script = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok";
  h.send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 502 ")) << h.output();
  EXPECT_EQ(h.reuses(), 0);
}

TEST(ProxyLeg, UpstreamClosingMidBodyCutsTheClientResponse) {
  CoreHarness h(proxy_config());
  h.upstream_script = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
  h.upstream_eof = true;
  h.send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 200 OK\r\n")) << h.output();
  EXPECT_TRUE(h.output().ends_with("abc"));
  EXPECT_TRUE(h.shut_wr() || h.closed());
}

TEST(ProxyLeg, SilentUpstreamIs504AfterReadTimeout) {
  CoreHarness h(proxy_config());
  h.send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  EXPECT_EQ(h.output(), "");
  h.advance(1999ms);
  EXPECT_EQ(h.output(), "");
  h.advance(1ms);
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 504 ")) << h.output();
}

TEST(ProxyLeg, UntilCloseResponseIsChunkedToHttp11Client) {
  CoreHarness h(proxy_config());
  h.upstream_script = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc";
  h.upstream_eof = true;
  h.send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  EXPECT_EQ(h.output(),
            "HTTP/1.1 200 OK\r\nVia: 1.1 gearbox\r\nTransfer-Encoding: chunked\r\n\r\n"
            "3\r\nabc\r\n0\r\n\r\n");
  EXPECT_FALSE(h.closed());
}

TEST(ProxyLeg, SmugglingAttemptNeverReachesTheUpstream) {
  CoreHarness h(proxy_config());
  h.upstream_script = kOk;
  h.send(
      "POST /a HTTP/1.1\r\nHost: app\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n"
      "0\r\n\r\nGET /admin HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 400 ")) << h.output();
  EXPECT_EQ(h.upstream_received(), "");
  EXPECT_EQ(h.connects(), 0);
}

TEST(ProxyLeg, HeadResponseHasNoBody) {
  CoreHarness h(proxy_config());
  h.upstream_script = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n";
  h.send("HEAD /a HTTP/1.1\r\nHost: app\r\n\r\nGET /b HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 200 OK\r\n")) << h.output();
  EXPECT_NE(h.upstream_received().find("GET /b HTTP/1.1"), std::string::npos)
      << "the pipelined request after HEAD was not forwarded";
}

TEST(ProxyLeg, KeepAliveRaceIsRetriedOnceOnAFreshConnectionToTheSameServer) {
  CoreHarness h(proxy_config(1));
  h.upstream_script = kOk;
  h.stale_connections = 1;
  h.send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  EXPECT_EQ(h.connects(), 2);
  EXPECT_TRUE(h.output().ends_with("\r\n\r\nok")) << h.output();
}

TEST(ProxyLeg, KeepAliveRaceIsRetriedOnlyOnce) {
  CoreHarness h(proxy_config(1));
  h.upstream_script = kOk;
  h.stale_connections = 2;
  h.send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  EXPECT_EQ(h.connects(), 2);
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 502 ")) << h.output();
}

// Issue 8 point 1: the proxy opens no tunnel either, and contacts no upstream for CONNECT.
TEST(ProxyLeg, ConnectIsRefusedWith501AndNeverReachesTheUpstream) {
  CoreHarness h(proxy_config());
  h.upstream_script = "HTTP/1.1 200 Connection Established\r\n\r\n";
  h.send("CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n\x16\x03\x01");
  h.run();
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 501 ")) << h.output();
  EXPECT_NE(h.output().find("Connection: close\r\n"), std::string::npos) << h.output();
  EXPECT_EQ(h.connects(), 0);
  EXPECT_EQ(h.upstream_received(), "");
}

// Issue 8 point 2: framing fields in a trailer section are not framing (they were 501 when
// one was Transfer-Encoding) and never reach the upstream: the trailer section is dropped.
TEST(ProxyLeg, FramingFieldsInATrailerAreIgnoredAndNotForwarded) {
  CoreHarness h(proxy_config());
  h.upstream_script = kOk;
  h.send(
      "POST /a HTTP/1.1\r\nHost: app\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
      "0\r\nTransfer-Encoding: gzip\r\nContent-Length: 5\r\nConnection: close\r\n\r\n"
      "GET /b HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  const std::string& up = h.upstream_received();
  const std::size_t second = up.find("GET /b HTTP/1.1\r\n");
  ASSERT_NE(second, std::string::npos) << "the pipelined request was lost:\n" << up;
  EXPECT_TRUE(up.substr(0, second).ends_with("\r\n\r\n3\r\nabc\r\n0\r\n\r\n")) << up;
  EXPECT_EQ(up.find("gzip"), std::string::npos) << up;
  EXPECT_EQ(up.find("Content-Length: 5"), std::string::npos) << up;
  EXPECT_EQ(up.find("close"), std::string::npos) << up;
  EXPECT_EQ(h.output().find("HTTP/1.1 200 OK"), 0u) << h.output();
  EXPECT_NE(h.output().find("HTTP/1.1 200 OK", 1), std::string::npos) << h.output();
  EXPECT_FALSE(h.closed());
}

// Issue 8 point 3: RFC 9112 §3.2.2: for an absolute-form target the authority replaces the
// received Host; the target goes upstream in origin-form, to the configured upstream.
TEST(ProxyLeg, AbsoluteFormTargetSetsHostFromItsAuthority) {
  CoreHarness h(proxy_config());
  h.upstream_script = kOk;
  h.send("GET http://other.example:8080/p?q=1 HTTP/1.1\r\nHost: wrong.example\r\n\r\n");
  h.run();
  EXPECT_EQ(h.upstream_received(),
            "GET /p?q=1 HTTP/1.1\r\nHost: other.example:8080\r\nX-Forwarded-For: 127.0.0.1\r\n"
            "X-Forwarded-Proto: http\r\nX-Forwarded-Host: other.example:8080\r\n"
            "Via: 1.1 gearbox\r\n\r\n");
  EXPECT_EQ(h.connects(), 1);
  EXPECT_TRUE(h.output().ends_with("\r\n\r\nok")) << h.output();
}

TEST(ProxyLeg, AbsoluteFormTargetWithUserinfoIs400) {
  CoreHarness h(proxy_config());
  h.upstream_script = kOk;
  h.send("GET http://user@other.example/p HTTP/1.1\r\nHost: other.example\r\n\r\n");
  h.run();
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 400 ")) << h.output();
  EXPECT_EQ(h.connects(), 0);
}

// --- Issue 8 point 4: failover (nginx's proxy_next_upstream error timeout) ------------------

const std::string kServer0 = "127.0.0.1:9000";
const std::string kServer1 = "127.0.0.1:9001";
const std::string kServer2 = "127.0.0.1:9002";

// A black-holed server (accepts, never answers): the idempotent request goes to the next
// server after the read timeout instead of ending in 504, and the timeout counts as a failure
// (max_fails 1), so the next request skips the silent server.
TEST(ProxyFailover, ReadTimeoutBeforeTheHeadRetriesAnIdempotentRequestOnTheNextServer) {
  CoreHarness h(proxy_config(2));
  h.upstream_script = kOk;
  h.silent_upstreams = {kServer0};
  h.send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  EXPECT_EQ(h.connects_to(kServer0), 1);
  EXPECT_EQ(h.output(), "");
  h.advance(2000ms);  // the read timeout
  EXPECT_EQ(h.connects_to(kServer1), 1);
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 200 OK\r\n")) << h.output();
  EXPECT_TRUE(h.output().ends_with("\r\n\r\nok")) << h.output();
  EXPECT_TRUE(h.received_by(kServer1).starts_with("GET /a HTTP/1.1\r\n"));
  h.send("GET /b HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  EXPECT_EQ(h.connects_to(kServer0), 1) << "the timed-out server should be skipped";
  EXPECT_TRUE(h.output().ends_with("ok\r\n\r\n") || h.output().ends_with("\r\n\r\nok"));
  EXPECT_NE(h.received_by(kServer1).find("GET /b HTTP/1.1\r\n"), std::string::npos);
}

TEST(ProxyFailover, ResetBeforeTheHeadRetriesAnIdempotentRequestOnTheNextServer) {
  CoreHarness h(proxy_config(2));
  h.upstream_script = kOk;
  h.resetting_upstreams = {kServer0};
  h.send("DELETE /a HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  EXPECT_EQ(h.connects_to(kServer0), 1);
  EXPECT_EQ(h.connects_to(kServer1), 1);
  EXPECT_TRUE(h.output().ends_with("\r\n\r\nok")) << h.output();
}

// A PUT's body is held (idempotent): the next server gets the whole request again.
TEST(ProxyFailover, HeldBodyIsSentAgainToTheNextServer) {
  for (const char* framing :
       {"Content-Length: 5\r\n\r\nhello",
        "Transfer-Encoding: chunked\r\n\r\n2\r\nhe\r\n3\r\nllo\r\n0\r\n\r\n"}) {
    CoreHarness h(proxy_config(2));
    h.upstream_script = kOk;
    h.silent_upstreams = {kServer0};
    h.send(std::string("PUT /a HTTP/1.1\r\nHost: app\r\n") + framing);
    h.run();
    h.advance(2000ms);
    EXPECT_TRUE(h.output().ends_with("\r\n\r\nok")) << framing << h.output();
    EXPECT_EQ(h.received_by(kServer1), h.received_by(kServer0)) << framing;
    EXPECT_TRUE(h.received_by(kServer1).ends_with(
        std::string_view(framing).substr(std::string_view(framing).find("\r\n\r\n") + 4)))
        << h.received_by(kServer1);
  }
}

// RFC 9110 §9.2.2: a POST that reached a server may have had its effect: never sent twice.
TEST(ProxyFailover, NonIdempotentRequestIsNotSentAgain) {
  {
    CoreHarness h(proxy_config(2));
    h.upstream_script = kOk;
    h.silent_upstreams = {kServer0};
    h.send("POST /a HTTP/1.1\r\nHost: app\r\nContent-Length: 1\r\n\r\nz");
    h.run();
    h.advance(2000ms);
    EXPECT_TRUE(h.output().starts_with("HTTP/1.1 504 ")) << h.output();
    EXPECT_EQ(h.connects_to(kServer1), 0);
  }
  {
    CoreHarness h(proxy_config(2));
    h.upstream_script = kOk;
    h.resetting_upstreams = {kServer0};
    h.send("POST /a HTTP/1.1\r\nHost: app\r\n\r\n");
    h.run();
    EXPECT_TRUE(h.output().starts_with("HTTP/1.1 502 ")) << h.output();
    EXPECT_EQ(h.connects_to(kServer1), 0);
  }
}

// A body too big to hold cannot be sent again.
TEST(ProxyFailover, BodyTooBigToHoldIsNotSentAgain) {
  core::Config cfg = proxy_config(2);
  cfg.limits.max_body = 1 << 20;
  CoreHarness h(cfg);
  h.upstream_script = kOk;
  h.silent_upstreams = {kServer0};
  const std::string body(100 * 1024, 'b');
  h.send("PUT /a HTTP/1.1\r\nHost: app\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body);
  h.run();
  h.advance(2000ms);
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 504 ")) << h.output().substr(0, 200);
  EXPECT_EQ(h.connects_to(kServer1), 0);
}

// Once the response head reached the client, a failure cuts the response: no retry.
TEST(ProxyFailover, NoRetryOnceTheResponseHeadWasSent) {
  CoreHarness h(proxy_config(2));
  h.upstream_script = "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc";
  h.send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n");
  h.run();
  h.advance(2000ms);
  EXPECT_EQ(h.connects(), 1);
  EXPECT_TRUE(h.output().starts_with("HTTP/1.1 200 OK\r\n")) << h.output();
  EXPECT_TRUE(h.output().ends_with("abc")) << h.output();
}

// Only when no server answers does the client get 504 (all timed out) or 502; the number of
// tries is bounded by next_upstream_tries, their time by next_upstream_timeout.
TEST(ProxyFailover, TriesAreBoundedAndTheLastFailureGivesTheStatus) {
  {
    CoreHarness h(proxy_config(3));
    h.silent_upstreams = {kServer0, kServer1, kServer2};
    h.send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n");
    h.run();
    h.advance(2000ms);
    h.advance(2000ms);
    EXPECT_EQ(h.output(), "");
    h.advance(2000ms);
    EXPECT_EQ(h.connects(), 3);
    EXPECT_TRUE(h.output().starts_with("HTTP/1.1 504 ")) << h.output();
  }
  {
    core::Config cfg = proxy_config(3);
    cfg.groups[0].next_upstream_tries = 2;
    CoreHarness h(cfg);
    h.silent_upstreams = {kServer0, kServer1, kServer2};
    h.send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n");
    h.run();
    h.advance(2000ms);
    h.advance(2000ms);
    EXPECT_EQ(h.connects(), 2);
    EXPECT_TRUE(h.output().starts_with("HTTP/1.1 504 ")) << h.output();
  }
  {
    core::Config cfg = proxy_config(3);
    cfg.groups[0].next_upstream_timeout = 3000ms;
    CoreHarness h(cfg);
    h.silent_upstreams = {kServer0, kServer1, kServer2};
    h.send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n");
    h.run();
    h.advance(2000ms);  // 2 s in: a second try is allowed
    h.advance(2000ms);  // 4 s in: no third
    EXPECT_EQ(h.connects(), 2);
    EXPECT_TRUE(h.output().starts_with("HTTP/1.1 504 ")) << h.output();
  }
  {
    core::Config cfg = proxy_config(2);
    CoreHarness h(cfg);
    h.silent_upstreams = {kServer0};
    h.resetting_upstreams = {kServer1};
    h.send("GET /a HTTP/1.1\r\nHost: app\r\n\r\n");
    h.run();
    h.advance(2000ms);
    EXPECT_EQ(h.connects(), 2);
    EXPECT_TRUE(h.output().starts_with("HTTP/1.1 502 ")) << h.output();
  }
}

TEST(ProxyOwnedInput, IdleProxiedConnectionHoldsNoBuffers) {
  CoreHarness h(proxy_config(), true);
  h.upstream_script = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  h.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  h.run();
  EXPECT_NE(h.output().find("\r\n\r\nok"), std::string::npos) << h.output();
  EXPECT_EQ(h.reuses(), 1);
  EXPECT_FALSE(h.conn().holds_buffers()) << "client or upstream buffer kept while idle";
}

TEST(ProxyOwnedInput, APoolOfLargerBuffersReadsTheUpstreamInLargerPieces) {
  constexpr std::size_t kBig = 64 * 1024;
  CoreHarness h(proxy_config(), true, kBig);
  std::string body(150'000, 'r');
  for (std::size_t i = 0; i < body.size(); i += 7) {
    body[i] = static_cast<char>('a' + i % 26);
  }
  h.upstream_script = "HTTP/1.1 200 OK\r\nContent-Length: 150000\r\n\r\n" + body;
  h.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  h.run();
  EXPECT_TRUE(h.output().ends_with("\r\n\r\n" + body)) << h.output().size();
  EXPECT_LE(h.client_writes(), 3) << "the upstream's bytes came in pieces smaller than 64 KiB";
  EXPECT_FALSE(h.conn().holds_buffers());
}

TEST(ProxyLeg, ResponseHeadAndTheBodyReadWithItGoOutInOneWrite) {
  CoreHarness h(proxy_config());
  h.upstream_script = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
  h.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  h.run();
  EXPECT_TRUE(h.output().ends_with("\r\n\r\nok")) << h.output();
  EXPECT_EQ(h.client_writes(), 1);
}

// Re-chunked: the head and the first chunk go together; there is one chunk-header buffer, so
// the next chunk (here the last one) waits for that write.
TEST(ProxyLeg, ChunkedResponseHeadJoinsItsFirstChunkOnly) {
  CoreHarness h(proxy_config());
  h.upstream_script =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n3\r\nyes\r\n0\r\n\r\n";
  h.send("GET /a HTTP/1.1\r\nHost: x\r\n\r\n");
  h.run();
  EXPECT_TRUE(h.output().ends_with("\r\n\r\n2\r\nok\r\n3\r\nyes\r\n0\r\n\r\n")) << h.output();
  EXPECT_EQ(h.client_writes(), 3);
}

}  // namespace
}  // namespace gearbox
