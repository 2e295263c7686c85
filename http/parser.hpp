// Strict HTTP/1.1 parsers over llhttp (RFC 9112), pull-style: feed bytes, get one step back.
// llhttp.h is included only in parser.cpp. No lenient flags.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "http/error.hpp"
#include "http/message.hpp"

namespace gearbox::http {

struct Limits {
  std::size_t max_header = 16 * 1024;    // request/status line + header section, bytes -> 414/431
  std::size_t max_headers = 100;         // field count -> 431
  std::uint64_t max_body = 1024 * 1024;  // body bytes (0 = unlimited) -> 413
};

// What one call to feed() found. `consumed` bytes of the input were used; `body`, when not
// empty, is a piece of body (chunk framing removed) pointing into the caller's input, so it
// lives as long as the caller keeps that input. Any step may carry a body piece (kNeedMore,
// kData, kEnd, and kError for the bytes before the fault): handle `body` first, then `kind`.
// kNeedMore always consumes the whole input; other kinds may consume 0 bytes (e.g. kEnd right
// after the kHead of a message without a body), so keep calling feed() until kNeedMore.
struct ParseStep {
  enum class Kind : std::uint8_t {
    kNeedMore,  // all input consumed, message not finished (body may still be non-empty)
    kHead,      // head complete: head() is ready; body bytes come with later steps
    kData,      // a body piece was found and more input remains to feed
    kEnd,       // message complete (trailers, if any, in trailers()); next feed starts a new one
    kUpgrade,   // head complete and the rest of the stream is not HTTP (CONNECT, Upgrade)
    kError,     // `error` says which status; the parser is dead, close after answering
  };
  Kind kind = Kind::kNeedMore;
  std::size_t consumed = 0;
  std::string_view body;
  Error error = Error::kNone;
};

// Parses requests on one connection, one after another (pipelining). Contract: feed() the
// unconsumed rest of the stream; at most one body piece and one event come back per call.
// Strict (RFC 9112): errors as listed in error.hpp; trailing whitespace of field values is
// trimmed; trailers of a chunked body are in trailers() at kEnd.
// Upgrade (head().upgrade: CONNECT, or "Connection: upgrade" with an Upgrade field and no
// body): kHead as usual, then every later feed() returns kUpgrade with consumed == 0; the
// bytes after the head are not HTTP and the parser is done. An Upgrade on a request with a
// body is ignored (RFC 9110 §7.8): upgrade == false and the body is parsed.
// After a kEnd whose head is not keep_alive, later input is consumed and ignored (kNeedMore).
class RequestParser {
 public:
  explicit RequestParser(const Limits& limits);
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  ParseStep feed(std::string_view input);
  // The head of the message being parsed; valid from kHead until the next message begins.
  const RequestHead& head() const { return head_; }
  const Headers& trailers() const { return trailers_; }
  // True between the first byte of a message and its kHead step.
  bool in_head() const;
  // Bytes of the current head received so far (request line + fields).
  std::size_t head_bytes() const { return head_bytes_; }

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  RequestHead head_;
  Headers trailers_;
  std::size_t head_bytes_ = 0;
  friend struct Impl;
};

// Parses responses from one upstream connection. Call expect() with the request's method before
// each response so that HEAD and CONNECT are framed right (RFC 9112 §6.3). Any malformation is
// Error::kBadGateway. 1xx interim responses (other than 101) come as kHead followed by kEnd
// with head().status < 200; the caller then feeds on for the final response (the method given
// to expect() stays in force until the next expect(), so calling it again is not needed).
// No body (framing kNone) after HEAD, 1xx, 204, 304 and a 2xx to CONNECT, whatever the fields
// say (content_length still holds a Content-Length value). 101, and a 2xx to CONNECT, give
// kHead then kUpgrade (consumed == 0) on every later feed(): the rest is a tunnel.
// Neither Content-Length nor chunked: framing kUntilClose, keep_alive false, ended by
// feed_eof(). Transfer-Encoding other than chunked is refused (kBadGateway). max_header and
// max_headers apply as for requests (reported as kBadGateway); max_body does not (bodies are
// streamed). feed_eof() while idle() is kError too: the upstream closed without answering.
class ResponseParser {
 public:
  explicit ResponseParser(const Limits& limits);
  ~ResponseParser();
  ResponseParser(const ResponseParser&) = delete;
  ResponseParser& operator=(const ResponseParser&) = delete;

  void expect(Method request_method);
  // Forgets everything of the stream so far (a new upstream connection); expect() stays.
  void reset();
  ParseStep feed(std::string_view input);
  // The upstream closed the connection: kEnd when the body was read-until-close, otherwise
  // kError (a truncated message).
  ParseStep feed_eof();
  const ResponseHead& head() const { return head_; }
  const Headers& trailers() const { return trailers_; }
  // True when no byte of a response has been received yet (for the keep-alive retry rule).
  bool idle() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  ResponseHead head_;
  Headers trailers_;
  friend struct Impl;
};

}  // namespace gearbox::http
