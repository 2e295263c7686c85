// Proxy header hygiene: one regression test per rewrite rule, each with the exact head bytes
// expected (server/proxy_rewrite.cpp).
#include "server/proxy_rewrite.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>

#include <initializer_list>
#include <utility>

namespace gearbox::core {
namespace {

using Fields = std::initializer_list<std::pair<std::string_view, std::string_view>>;

http::RequestHead request(std::string_view method, std::string_view target, Fields fields,
                          int minor = 1) {
  http::RequestHead h;
  h.method = std::string(method);
  h.method_kind = http::method_from(method);
  h.target = std::string(target);
  h.version_minor = minor;
  for (const auto& [n, v] : fields) {
    h.headers.add(n, v);
  }
  return h;
}

http::ResponseHead response(int status, std::string_view reason, Fields fields, int minor = 1) {
  http::ResponseHead h;
  h.status = status;
  h.reason = std::string(reason);
  h.version_minor = minor;
  for (const auto& [n, v] : fields) {
    h.headers.add(n, v);
  }
  return h;
}

RequestRewrite rewrite(bool trusted = false) {
  RequestRewrite rw;
  rw.client_address = "192.0.2.7";
  rw.client_trusted = trusted;
  rw.host = "example.com";
  return rw;
}

std::string upstream_head(const http::RequestHead& req, const RequestRewrite& rw,
                          std::string_view target = "/") {
  std::string out;
  write_upstream_request_head(out, req, target, rw);
  return out;
}

std::string client_head(const http::ResponseHead& resp, const ResponseRewrite& rw) {
  std::string out;
  write_client_response_head(out, resp, rw);
  return out;
}

// The fields every untrusted request to example.com from 192.0.2.7 ends with.
constexpr std::string_view kForwarded =
    "X-Forwarded-For: 192.0.2.7\r\n"
    "X-Forwarded-Proto: http\r\n"
    "X-Forwarded-Host: example.com\r\n"
    "Via: 1.1 gearbox\r\n";

TEST(ProxyRewriteRequest, PlainGetIsForwardedWithForwardingFields) {
  auto req = request("GET", "/a?b=1", {{"Host", "example.com"}, {"Accept", "*/*"}});
  EXPECT_EQ(upstream_head(req, rewrite(), "/a?b=1"),
            "GET /a?b=1 HTTP/1.1\r\n"
            "Host: example.com\r\n"
            "Accept: */*\r\n" +
                std::string(kForwarded) + "\r\n");
}

TEST(ProxyRewriteRequest, HopByHopFieldsRemoved) {
  auto req = request("GET", "/",
                     {{"Host", "example.com"},
                      {"Connection", "keep-alive"},
                      {"Keep-Alive", "timeout=5"},
                      {"Proxy-Connection", "keep-alive"},
                      {"Upgrade", "h2c"},
                      {"X-Kept", "1"}});
  EXPECT_EQ(upstream_head(req, rewrite()), "GET / HTTP/1.1\r\nHost: example.com\r\nX-Kept: 1\r\n" +
                                               std::string(kForwarded) + "\r\n");
}

TEST(ProxyRewriteRequest, ProxyCredentialsNeverReachTheUpstream) {
  auto req = request("GET", "/",
                     {{"Host", "example.com"},
                      {"Proxy-Authorization", "Basic c2VjcmV0"},
                      {"Authorization", "Bearer app-token"}});
  EXPECT_EQ(upstream_head(req, rewrite()),
            "GET / HTTP/1.1\r\nHost: example.com\r\nAuthorization: Bearer app-token\r\n" +
                std::string(kForwarded) + "\r\n");
}

TEST(ProxyRewriteRequest, TeAndTrailerRemoved) {
  auto req = request("POST", "/",
                     {{"Host", "example.com"},
                      {"TE", "trailers"},
                      {"Trailer", "X-Checksum"},
                      {"Transfer-Encoding", "chunked"}});
  RequestRewrite rw = rewrite();
  rw.framing = http::Framing::kChunked;
  EXPECT_EQ(upstream_head(req, rw), "POST / HTTP/1.1\r\nHost: example.com\r\n" +
                                        std::string(kForwarded) +
                                        "Transfer-Encoding: chunked\r\n\r\n");
}

TEST(ProxyRewriteRequest, ConnectionTokenRemovesNamedHeader) {
  auto req = request("GET", "/",
                     {{"Host", "example.com"},
                      {"Connection", "X-Secret, close"},
                      {"x-secret", "hidden"},
                      {"X-Public", "shown"}});
  EXPECT_EQ(upstream_head(req, rewrite()),
            "GET / HTTP/1.1\r\nHost: example.com\r\nX-Public: shown\r\n" + std::string(kForwarded) +
                "\r\n");
}

TEST(ProxyRewriteRequest, ConnectionTokensFromEveryConnectionFieldCount) {
  auto req = request("GET", "/",
                     {{"Host", "example.com"},
                      {"Connection", "X-A"},
                      {"X-A", "1"},
                      {"X-B", "2"},
                      {"Connection", " x-b ,"}});
  EXPECT_EQ(upstream_head(req, rewrite()),
            "GET / HTTP/1.1\r\nHost: example.com\r\n" + std::string(kForwarded) + "\r\n");
}

// The options are gathered once per head, the first eight inline and the rest beyond them:
// a field named by the twelfth option goes as surely as one named by the first.
TEST(ProxyRewriteRequest, EveryConnectionTokenCountsPastTheFirstEight) {
  auto req = request("GET", "/", {{"Host", "example.com"}});
  std::string options;
  for (int i = 1; i <= 12; ++i) {
    options += (i > 1 ? ", X-" : "X-") + std::to_string(i);
    req.headers.add("X-" + std::to_string(i), "hidden");
  }
  req.headers.add("Connection", options);
  req.headers.add("X-13", "shown");
  EXPECT_EQ(
      upstream_head(req, rewrite()),
      "GET / HTTP/1.1\r\nHost: example.com\r\nX-13: shown\r\n" + std::string(kForwarded) + "\r\n");
}

TEST(ProxyRewriteRequest, ConnectionTokenIsNotSubstringMatch) {
  auto req = request("GET", "/",
                     {{"Host", "example.com"},
                      {"Connection", "X-Foo-Bar"},
                      {"X-Foo", "kept"},
                      {"X-Foo-Bar-Baz", "kept too"}});
  EXPECT_EQ(upstream_head(req, rewrite()),
            "GET / HTTP/1.1\r\nHost: example.com\r\nX-Foo: kept\r\nX-Foo-Bar-Baz: kept too\r\n" +
                std::string(kForwarded) + "\r\n");
}

TEST(ProxyRewriteRequest, UntrustedClientCannotSpoofForwardedFor) {
  auto req = request("GET", "/",
                     {{"Host", "example.com"},
                      {"X-Forwarded-For", "1.2.3.4"},
                      {"X-Forwarded-Proto", "https"},
                      {"X-Forwarded-Host", "bank.example"}});
  EXPECT_EQ(upstream_head(req, rewrite(false)),
            "GET / HTTP/1.1\r\nHost: example.com\r\n" + std::string(kForwarded) + "\r\n");
}

TEST(ProxyRewriteRequest, TrustedProxyChainIsAppended) {
  auto req = request("GET", "/",
                     {{"Host", "example.com"},
                      {"X-Forwarded-For", "203.0.113.1, 10.0.0.1"},
                      {"X-Forwarded-For", "10.0.0.2"},
                      {"X-Forwarded-Proto", "https"},
                      {"X-Forwarded-Host", "public.example"}});
  EXPECT_EQ(upstream_head(req, rewrite(true)),
            "GET / HTTP/1.1\r\nHost: example.com\r\n"
            "X-Forwarded-For: 203.0.113.1, 10.0.0.1, 10.0.0.2, 192.0.2.7\r\n"
            "X-Forwarded-Proto: https\r\n"
            "X-Forwarded-Host: public.example\r\n"
            "Via: 1.1 gearbox\r\n\r\n");
}

TEST(ProxyRewriteRequest, TrustedProxyWithoutForwardingFieldsGetsOurs) {
  auto req = request("GET", "/", {{"Host", "example.com"}});
  EXPECT_EQ(upstream_head(req, rewrite(true)),
            "GET / HTTP/1.1\r\nHost: example.com\r\n" + std::string(kForwarded) + "\r\n");
}

TEST(ProxyRewriteRequest, ConnectionCannotStripOurForwardedFor) {
  auto req = request("GET", "/",
                     {{"Host", "example.com"},
                      {"Connection", "X-Forwarded-For, Via"},
                      {"X-Forwarded-For", "10.9.9.9"},
                      {"Via", "1.1 front"}});
  EXPECT_EQ(upstream_head(req, rewrite(true)),
            "GET / HTTP/1.1\r\nHost: example.com\r\n" + std::string(kForwarded) + "\r\n");
}

TEST(ProxyRewriteRequest, ViaAppended) {
  auto req = request("GET", "/", {{"Host", "example.com"}, {"Via", "1.0 fred, 1.1 p.example"}});
  EXPECT_EQ(upstream_head(req, rewrite()),
            "GET / HTTP/1.1\r\nHost: example.com\r\n"
            "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
            "X-Forwarded-Host: example.com\r\n"
            "Via: 1.0 fred, 1.1 p.example, 1.1 gearbox\r\n\r\n");
}

TEST(ProxyRewriteRequest, ViaNamesHttp10ClientVersion) {
  auto req = request("GET", "/", {{"Host", "example.com"}}, 0);
  EXPECT_EQ(upstream_head(req, rewrite()),
            "GET / HTTP/1.1\r\nHost: example.com\r\n"
            "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
            "X-Forwarded-Host: example.com\r\nVia: 1.0 gearbox\r\n\r\n");
}

TEST(ProxyRewriteRequest, HostRewrittenPerGroup) {
  auto req = request("GET", "/", {{"Accept", "a"}, {"Host", "client.example"}});
  RequestRewrite rw = rewrite();
  rw.host = "backend.internal";
  EXPECT_EQ(upstream_head(req, rw),
            "GET / HTTP/1.1\r\nHost: backend.internal\r\nAccept: a\r\n"
            "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\n"
            "X-Forwarded-Host: client.example\r\nVia: 1.1 gearbox\r\n\r\n");
}

TEST(ProxyRewriteRequest, MissingHostSendsEmptyHostAndNoForwardedHost) {
  auto req = request("GET", "/", {}, 0);
  RequestRewrite rw = rewrite();
  rw.host = "";
  EXPECT_EQ(upstream_head(req, rw),
            "GET / HTTP/1.1\r\nHost: \r\n"
            "X-Forwarded-For: 192.0.2.7\r\nX-Forwarded-Proto: http\r\nVia: 1.0 gearbox\r\n\r\n");
}

TEST(ProxyRewriteRequest, ContentLengthResetFromFraming) {
  auto req = request("PUT", "/x", {{"Host", "example.com"}, {"Content-Length", "999"}});
  RequestRewrite rw = rewrite();
  rw.framing = http::Framing::kLength;
  rw.content_length = 12;
  EXPECT_EQ(upstream_head(req, rw, "/x"), "PUT /x HTTP/1.1\r\nHost: example.com\r\n" +
                                              std::string(kForwarded) +
                                              "Content-Length: 12\r\n\r\n");
}

TEST(ProxyRewriteRequest, NoConnectionCloseUpstreamEvenWhenClientCloses) {
  auto req = request("GET", "/", {{"Host", "example.com"}, {"Connection", "close"}});
  std::string out = upstream_head(req, rewrite());
  EXPECT_EQ(out, "GET / HTTP/1.1\r\nHost: example.com\r\n" + std::string(kForwarded) + "\r\n");
}

TEST(ProxyRewriteRequest, UpgradeKeepsConnectionUpgradeAndUpgrade) {
  auto req = request("GET", "/ws",
                     {{"Host", "example.com"},
                      {"Connection", "keep-alive, Upgrade"},
                      {"Upgrade", "websocket"},
                      {"Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="},
                      {"Sec-WebSocket-Version", "13"}});
  RequestRewrite rw = rewrite();
  rw.upgrade = true;
  EXPECT_EQ(upstream_head(req, rw, "/ws"),
            "GET /ws HTTP/1.1\r\nHost: example.com\r\n"
            "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" +
                std::string(kForwarded) + "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
}

TEST(ProxyRewriteRequest, ExpectStrippedWhenCoreAnswersContinue) {
  auto req = request("POST", "/", {{"Host", "example.com"}, {"Expect", "100-continue"}});
  RequestRewrite rw = rewrite();
  rw.framing = http::Framing::kLength;
  rw.content_length = 0;
  EXPECT_EQ(upstream_head(req, rw),
            "POST / HTTP/1.1\r\nHost: example.com\r\nExpect: 100-continue\r\n" +
                std::string(kForwarded) + "Content-Length: 0\r\n\r\n");
  rw.strip_expect = true;
  EXPECT_EQ(upstream_head(req, rw), "POST / HTTP/1.1\r\nHost: example.com\r\n" +
                                        std::string(kForwarded) + "Content-Length: 0\r\n\r\n");
}

TEST(ProxyRewriteRequest, AppendsWithoutClearingAndReusesCapacity) {
  auto req = request("GET", "/", {{"Host", "example.com"}});
  std::string out = "prefix";
  out.reserve(4096);
  const char* data = out.data();
  write_upstream_request_head(out, req, "/", rewrite());
  EXPECT_EQ(out.substr(0, 6), "prefix");
  EXPECT_EQ(out.data(), data);
}

TEST(ProxyRewriteResponse, StatusLineKeepsUpstreamReason) {
  auto resp = response(404, "Nope", {{"Content-Type", "text/plain"}});
  ResponseRewrite rw;
  rw.framing = http::Framing::kLength;
  rw.content_length = 3;
  EXPECT_EQ(client_head(resp, rw),
            "HTTP/1.1 404 Nope\r\nContent-Type: text/plain\r\nVia: 1.1 gearbox\r\n"
            "Content-Length: 3\r\n\r\n");
}

TEST(ProxyRewriteResponse, EmptyReasonGetsOurs) {
  auto resp = response(503, "", {});
  ResponseRewrite rw;
  rw.framing = http::Framing::kLength;
  EXPECT_EQ(client_head(resp, rw),
            "HTTP/1.1 503 Service Unavailable\r\nVia: 1.1 gearbox\r\nContent-Length: 0\r\n\r\n");
}

TEST(ProxyRewriteResponse, HopByHopAndConnectionNamedFieldsRemoved) {
  auto resp = response(200, "OK",
                       {{"Connection", "keep-alive, X-Internal"},
                        {"Keep-Alive", "timeout=5"},
                        {"X-Internal", "secret"},
                        {"X-Internals", "kept"},
                        {"Trailer", "X-Sum"},
                        {"Content-Length", "5"}});
  ResponseRewrite rw;
  rw.framing = http::Framing::kLength;
  rw.content_length = 5;
  EXPECT_EQ(client_head(resp, rw),
            "HTTP/1.1 200 OK\r\nX-Internals: kept\r\nVia: 1.1 gearbox\r\nContent-Length: 5\r\n"
            "\r\n");
}

TEST(ProxyRewriteResponse, ViaAppendedWithUpstreamVersion) {
  auto resp = response(200, "OK", {{"Via", "1.1 inner"}}, 0);
  ResponseRewrite rw;
  rw.framing = http::Framing::kUntilClose;
  rw.close = true;
  EXPECT_EQ(client_head(resp, rw),
            "HTTP/1.1 200 OK\r\nVia: 1.1 inner, 1.0 gearbox\r\nConnection: close\r\n\r\n");
}

TEST(ProxyRewriteResponse, ChunkedReframedForHttp11Client) {
  auto resp = response(200, "OK", {{"Transfer-Encoding", "gzip, chunked"}, {"X-A", "1"}});
  ResponseRewrite rw;
  rw.framing = http::Framing::kChunked;
  EXPECT_EQ(client_head(resp, rw),
            "HTTP/1.1 200 OK\r\nX-A: 1\r\nVia: 1.1 gearbox\r\nTransfer-Encoding: chunked\r\n\r\n");
}

TEST(ProxyRewriteResponse, UntilCloseBodyChunkedToKeepAliveClient) {
  auto resp = response(200, "OK", {{"Connection", "close"}}, 0);
  ResponseRewrite rw;
  rw.framing = http::Framing::kChunked;
  EXPECT_EQ(client_head(resp, rw),
            "HTTP/1.1 200 OK\r\nVia: 1.0 gearbox\r\nTransfer-Encoding: chunked\r\n\r\n");
}

TEST(ProxyRewriteResponse, HeadResponseKeepsContentLength) {
  auto resp = response(200, "OK", {{"Content-Length", "1234"}, {"ETag", "\"x\""}});
  ResponseRewrite rw;
  rw.framing = http::Framing::kNone;
  EXPECT_EQ(client_head(resp, rw),
            "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nETag: \"x\"\r\nVia: 1.1 gearbox\r\n\r\n");
}

TEST(ProxyRewriteResponse, NoContentDropsContentLength) {
  auto resp = response(204, "No Content", {{"Content-Length", "0"}});
  ResponseRewrite rw;
  EXPECT_EQ(client_head(resp, rw), "HTTP/1.1 204 No Content\r\nVia: 1.1 gearbox\r\n\r\n");
}

TEST(ProxyRewriteResponse, ConnectionCloseWhenClientConnectionCloses) {
  auto resp = response(200, "OK", {});
  ResponseRewrite rw;
  rw.framing = http::Framing::kLength;
  rw.content_length = 2;
  rw.close = true;
  EXPECT_EQ(
      client_head(resp, rw),
      "HTTP/1.1 200 OK\r\nVia: 1.1 gearbox\r\nContent-Length: 2\r\nConnection: close\r\n\r\n");
}

TEST(ProxyRewriteResponse, Http10ClientKeptAliveIsTold) {
  auto resp = response(200, "OK", {});
  ResponseRewrite rw;
  rw.framing = http::Framing::kLength;
  rw.content_length = 2;
  rw.client_http10 = true;
  EXPECT_EQ(client_head(resp, rw),
            "HTTP/1.1 200 OK\r\nVia: 1.1 gearbox\r\nContent-Length: 2\r\n"
            "Connection: keep-alive\r\n\r\n");
}

TEST(ProxyRewriteResponse, SwitchingProtocolsKeepsUpgrade) {
  auto resp = response(101, "Switching Protocols",
                       {{"Upgrade", "websocket"},
                        {"Connection", "Upgrade"},
                        {"Sec-WebSocket-Accept", "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="}});
  ResponseRewrite rw;
  rw.upgrade = true;
  EXPECT_EQ(client_head(resp, rw),
            "HTTP/1.1 101 Switching Protocols\r\n"
            "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\nVia: 1.1 gearbox\r\n"
            "Connection: upgrade\r\nUpgrade: websocket\r\n\r\n");
}

sockaddr_storage v4(const char* text) {
  sockaddr_storage ss{};
  auto* a = reinterpret_cast<sockaddr_in*>(&ss);
  a->sin_family = AF_INET;
  inet_pton(AF_INET, text, &a->sin_addr);
  return ss;
}

sockaddr_storage v6(const char* text) {
  sockaddr_storage ss{};
  auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
  a->sin6_family = AF_INET6;
  inet_pton(AF_INET6, text, &a->sin6_addr);
  return ss;
}

Cidr cidr(sockaddr_storage base, int bits) {
  return Cidr{base, bits};
}

TEST(IsTrusted, Ipv4BlockMatchesInsideOnly) {
  std::vector<Cidr> t = {cidr(v4("10.1.0.0"), 16)};
  EXPECT_TRUE(is_trusted(v4("10.1.255.3"), t));
  EXPECT_FALSE(is_trusted(v4("10.2.0.1"), t));
}

TEST(IsTrusted, OddPrefixLengthMasksPartialByte) {
  std::vector<Cidr> t = {cidr(v4("192.168.0.128"), 25)};
  EXPECT_TRUE(is_trusted(v4("192.168.0.200"), t));
  EXPECT_FALSE(is_trusted(v4("192.168.0.127"), t));
}

TEST(IsTrusted, Ipv6BlockAndExactHost) {
  std::vector<Cidr> t = {cidr(v6("2001:db8::"), 32), cidr(v6("::1"), 128)};
  EXPECT_TRUE(is_trusted(v6("2001:db8:ffff::1"), t));
  EXPECT_TRUE(is_trusted(v6("::1"), t));
  EXPECT_FALSE(is_trusted(v6("::2"), t));
  EXPECT_FALSE(is_trusted(v6("2001:db9::1"), t));
}

TEST(IsTrusted, V4MappedAddressMatchesIpv4Block) {
  std::vector<Cidr> t = {cidr(v4("127.0.0.0"), 8)};
  EXPECT_TRUE(is_trusted(v6("::ffff:127.0.0.1"), t));
  EXPECT_FALSE(is_trusted(v6("::ffff:128.0.0.1"), t));
}

TEST(IsTrusted, FamiliesDoNotCrossOtherwise) {
  std::vector<Cidr> t = {cidr(v6("::"), 0)};
  EXPECT_FALSE(is_trusted(v4("1.2.3.4"), t));
  EXPECT_TRUE(is_trusted(v6("2001:db8::5"), t));
  EXPECT_FALSE(is_trusted(v4("1.2.3.4"), {}));
}

}  // namespace
}  // namespace gearbox::core
