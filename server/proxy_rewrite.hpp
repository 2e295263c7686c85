// Proxy header hygiene as pure functions: the request head sent upstream and the response head
// sent back to the client, rewritten per RFC 9110 §7.6 (Go's httputil.ReverseProxy, nginx).
// No I/O; heads are appended to caller-owned strings whose capacity is reused.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "http/message.hpp"
#include "server/config.hpp"

namespace gearbox::core {

// The pseudonym in the Via fields we add: "1.<minor> gearbox" (RFC 9110 §7.6.3).
inline constexpr std::string_view kViaPseudonym = "gearbox";

// What the core knows about one proxied request besides its head.
struct RequestRewrite {
  std::string_view client_address;  // peer address without port, e.g. "10.0.0.7" or "::1"
  bool client_trusted = false;      // is_trusted(peer, config.trusted_proxies)
  std::string_view proto = "http";  // scheme the client used: X-Forwarded-Proto
  // Host sent upstream: the group's host override, else client_host, else the client's Host.
  // Empty = an empty Host field (RFC 9112 §3.2: a request without authority still carries Host).
  std::string_view host;
  // The authority of an absolute-form target (Router::authority), which replaces the received
  // Host field (RFC 9112 §3.2.2), in X-Forwarded-Host too; empty = the Host field stands.
  std::string_view client_host;
  std::string_view via_pseudonym = kViaPseudonym;
  // Body framing upstream: kNone, kLength (content_length) or kChunked; never kUntilClose.
  http::Framing framing = http::Framing::kNone;
  std::uint64_t content_length = 0;
  // Forward as an upgrade (WebSocket): keeps "Connection: upgrade" and the client's Upgrade.
  bool upgrade = false;
  // Drop Expect (when the core answers 100-continue to the client itself).
  bool strip_expect = false;
};

// Appends the request head to send upstream, ending with the blank line. `target` is the
// origin-form target after routing (Router::write_target). Rules, each guarded by a test:
// - request line "<METHOD> <target> HTTP/1.1", then "Host: <rw.host>" first (RFC 9112 §3.2);
// - hop-by-hop fields (http::is_hop_by_hop) and every field a Connection token names are
//   removed (RFC 9110 §7.6.1), tokens compared whole, never as substrings;
// - Content-Length / Transfer-Encoding are re-set from rw.framing (RFC 9112 §6);
// - X-Forwarded-For: trusted client: incoming values comma-joined, then the client address;
//   untrusted: only the client address. X-Forwarded-Proto / X-Forwarded-Host: trusted and
//   present: kept; otherwise rw.proto and rw.client_host (or the client's Host);
// - Via: incoming values, then "1.<client minor> <pseudonym>" (RFC 9110 §7.6.3);
// - no "Connection: close": HTTP/1.1 upstream connections are persistent (RFC 9112 §9.3)
//   unless upgrading, then "Connection: upgrade" and "Upgrade: <client's value>".
// A Connection token naming X-Forwarded-*, Via or Host removes the incoming field (it is
// hop-by-hop by the sender's word); ours are added regardless.
void write_upstream_request_head(std::string& out, const http::RequestHead& req,
                                 std::string_view target, const RequestRewrite& rw);

// How the response body travels to the client.
struct ResponseRewrite {
  std::string_view via_pseudonym = kViaPseudonym;
  // kNone: no body follows (HEAD, 1xx, 204, 304): the upstream's Content-Length is passed
  //        through unchanged (it describes the representation, RFC 9110 §8.6) except on 1xx
  //        and 204, where it is dropped;
  // kLength: "Content-Length: <content_length>";
  // kChunked: "Transfer-Encoding: chunked" (HTTP/1.1 clients only; the core re-frames);
  // kUntilClose: no framing field, the body ends when the client connection closes (the
  //              core must also set close).
  http::Framing framing = http::Framing::kNone;
  std::uint64_t content_length = 0;
  bool close = false;          // the client connection closes after this: "Connection: close"
  bool client_http10 = false;  // an HTTP/1.0 client kept alive gets "Connection: keep-alive"
  bool upgrade = false;        // a 101 being tunnelled: "Connection: upgrade" + Upgrade
};

// Appends the response head to send to the client, ending with the blank line: status line
// "HTTP/1.1 <status> <reason>" (the upstream's reason, or ours when it sent none), hop-by-hop
// and Connection-named fields removed, Via appended with the upstream's version, framing and
// Connection set from rw.
void write_client_response_head(std::string& out, const http::ResponseHead& resp,
                                const ResponseRewrite& rw);

// True when addr (AF_INET or AF_INET6; v4-mapped IPv6 matches IPv4 blocks) lies inside one of
// the blocks.
bool is_trusted(const sockaddr_storage& addr, const std::vector<Cidr>& trusted);

}  // namespace gearbox::core
