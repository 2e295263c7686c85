// Strict HTTP/1.1 request and response parsers (RFC 9112) over llhttp 8.1. llhttp is paused at
// head end, chunk header and message end so that each feed() yields one step; the framing
// and field rules llhttp leaves lenient are checked here, in its callbacks.
#include "http/parser.hpp"

#include <llhttp.h>

#include <algorithm>
#include <cassert>
#include <cctype>
#include <cstring>

namespace gearbox::http {

namespace {

enum class Event : std::uint8_t { kNone, kHead, kChunk, kEnd };
enum class Phase : std::uint8_t { kIdle, kHead, kBody, kUpgrade, kClosed, kDead };

// The non-null pointer handed to llhttp_execute for empty input.
constexpr char kEmpty[1] = {0};
// What llhttp is given in place of a trailer section parsed by Engine::parse_trailers.
constexpr char kEmptyLine[2] = {'\r', '\n'};

// Field values and reason phrases: VCHAR, obs-text, SP, HTAB (RFC 9110 §5.5). Rejects the other
// controls, among them a bare CR or LF and an obs-fold (RFC 9112 §5.2).
bool valid_field_text(std::string_view s) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && u != '\t') || u == 0x7f) {
      return false;
    }
  }
  return true;
}

// Request-target: no controls, no whitespace (RFC 9112 §3.2).
bool valid_target_text(std::string_view s) {
  for (char c : s) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) {
      return false;
    }
  }
  return true;
}

// tchar (RFC 9110 §5.6.2): the characters of a field name.
bool is_tchar(char c) {
  auto u = static_cast<unsigned char>(c);
  if ((u >= '0' && u <= '9') || (u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z')) {
    return true;
  }
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

// Content-Length = 1*DIGIT (RFC 9110 §8.6), as a list whose members must all agree
// (RFC 9112 §6.3 point 5).
bool parse_content_length(std::string_view value, bool& seen, std::uint64_t& out) {
  bool ok = true;
  bool any = false;
  for_each_token(value, [&](std::string_view t) {
    any = true;
    std::uint64_t v = 0;
    for (char c : t) {
      if (c < '0' || c > '9' || v > (UINT64_MAX - 9) / 10) {
        ok = false;
        return;
      }
      v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (seen && v != out) {
      ok = false;
    }
    seen = true;
    out = v;
  });
  return ok && any;
}

// A Host field value (RFC 9110 §7.2: uri-host [ ":" port ], RFC 3986 §3.2.2). Empty is valid (a
// target without an authority). No userinfo, no spaces, nothing a URI authority cannot hold.
bool valid_host(std::string_view v) {
  auto sub_delim_or_unreserved = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 ||
           std::string_view("-._~!$&'()*+,;=%").find(c) != std::string_view::npos;
  };
  std::size_t i = 0;
  if (!v.empty() && v[0] == '[') {  // IP-literal: IPv6address or IPvFuture
    std::size_t close = v.find(']');
    if (close == std::string_view::npos || close == 1) {
      return false;
    }
    for (i = 1; i < close; ++i) {
      if (!sub_delim_or_unreserved(v[i]) && v[i] != ':') {
        return false;
      }
    }
    i = close + 1;
  } else {
    while (i < v.size() && v[i] != ':') {
      if (!sub_delim_or_unreserved(v[i])) {
        return false;
      }
      ++i;
    }
  }
  if (i == v.size()) {
    return true;
  }
  if (v[i] != ':') {
    return false;
  }
  for (++i; i < v.size(); ++i) {  // port = *DIGIT
    if (std::isdigit(static_cast<unsigned char>(v[i])) == 0) {
      return false;
    }
  }
  return true;
}

// What the framing fields of one head say (RFC 9112 §6, RFC 9110 §7.6.1, §7.8, §10.1.1).
struct FieldFacts {
  std::size_t host = 0;
  bool host_bad = false;  // a Host value that is no uri-host [":" port]
  bool cl_seen = false;
  bool cl_bad = false;
  std::uint64_t cl = 0;
  bool te_seen = false;
  bool te_chunked = false;  // chunked is a coding of the list
  bool te_final = false;    // chunked is the final coding
  bool te_bad = false;      // chunked twice, or an empty list
  bool te_unknown = false;  // a coding other than chunked
  bool conn_close = false;
  bool conn_keep_alive = false;
  bool conn_upgrade = false;
  bool upgrade_field = false;
  bool expect_continue = false;
};

FieldFacts scan_fields(const Headers& headers) {
  FieldFacts f;
  for (Field field : headers) {
    std::string_view n = field.name;
    std::string_view v = field.value;
    switch (n.size()) {
      case 4:
        if (iequals(n, "Host")) {
          ++f.host;
          f.host_bad = f.host_bad || !valid_host(v);
        }
        break;
      case 6:
        if (iequals(n, "Expect") && iequals(v, "100-continue")) {
          f.expect_continue = true;
        }
        break;
      case 7:
        if (iequals(n, "Upgrade")) {
          f.upgrade_field = true;
        }
        break;
      case 10:
        if (iequals(n, "Connection")) {
          for_each_token(v, [&](std::string_view t) {
            if (iequals(t, "close")) {
              f.conn_close = true;
            } else if (iequals(t, "keep-alive")) {
              f.conn_keep_alive = true;
            } else if (iequals(t, "upgrade")) {
              f.conn_upgrade = true;
            }
          });
        }
        break;
      case 14:
        if (iequals(n, "Content-Length") && !parse_content_length(v, f.cl_seen, f.cl)) {
          f.cl_bad = true;
        }
        break;
      case 17:
        if (iequals(n, "Transfer-Encoding")) {
          bool any = false;
          for_each_token(v, [&](std::string_view t) {
            any = true;
            if (iequals(t, "chunked")) {
              if (f.te_chunked) {
                f.te_bad = true;
              }
              f.te_chunked = true;
              f.te_final = true;
            } else {
              f.te_unknown = true;
              f.te_final = false;
            }
          });
          f.te_seen = true;
          if (!any) {
            f.te_bad = true;
          }
        }
        break;
      default:
        break;
    }
  }
  return f;
}

}  // namespace

// One llhttp instance and the state both parser types share. `request` picks the rules.
struct Engine {
  llhttp_t p{};
  bool request;
  Limits limits;
  Headers* headers;
  Headers* trailers;
  RequestHead* req = nullptr;
  ResponseHead* res = nullptr;

  Phase phase = Phase::kIdle;
  Event event = Event::kNone;
  Error error = Error::kNone;
  bool paused = false;
  bool line_done = false;
  bool field_open = false;
  bool in_trailers = false;  // the last chunk was seen: the trailer section is parsed here
  // llhttp knows a fixed list of methods. Where it stops inside the method, the rest of the
  // method token is read here: a token ending in SP is a method this server does not implement,
  // 501 (RFC 9110 §9.1: "FOO", "get"); anything else (a TLS hello, control characters) is 400.
  bool in_method_scan = false;
  std::size_t method_scan_len = 0;
  static constexpr std::size_t kMaxMethodToken = 64;
  // The trailer section (RFC 9112 §7.1.2) is parsed by parse_trailers(), not by llhttp, which
  // would read Content-Length, Transfer-Encoding and Connection in it as if they were header
  // fields; trailer fields are never framing (RFC 9110 §6.5.1).
  enum class Trail : std::uint8_t { kLineStart, kName, kValueStart, kValue, kCr, kEndCr };
  Trail trail = Trail::kLineStart;
  std::size_t trailer_bytes = 0;
  std::size_t head_bytes = 0;
  std::size_t head_base = 0;        // head_bytes when the current execute began
  const char* head_mark = nullptr;  // where the current execute began
  std::string_view body;
  std::uint64_t body_total = 0;
  // The bytes handed to the current llhttp_execute, to tell a value continued across two
  // executes from an obs-fold (llhttp strips the fold and reports a second span).
  const char* exec_begin = nullptr;
  const char* exec_end = nullptr;
  const char* value_end = nullptr;  // end of the last value span of the open field
  bool value_at_edge = false;       // that span ended where the previous execute's input did
  std::string pending_ows;
  // Request line positions, in head bytes, to hold it to single spaces (RFC 9112 §3).
  std::size_t method_start = 0;
  std::size_t target_end = 0;
  bool version_started = false;    // trailing SP/HTAB of a value, kept back until more text
  Method expected = Method::kGet;  // response parser: the request's method

  Engine(bool is_request, const Limits& l, Headers* h, Headers* t)
      : request(is_request), limits(l), headers(h), trailers(t) {}

  static Engine& of(llhttp_t* p) { return *static_cast<Engine*>(p->data); }

  Error bad() const { return request ? Error::kBadRequest : Error::kBadGateway; }
  Error as_response(Error e) const { return request ? e : Error::kBadGateway; }

  // Records the first error; returned from callbacks it stops llhttp.
  int fail(Error e) {
    if (error == Error::kNone) {
      error = e;
    }
    return HPE_USER;
  }

  std::size_t head_pos(const char* end) const {
    return head_base + static_cast<std::size_t>(end - head_mark);
  }
  void begin_message() {
    phase = Phase::kHead;
    line_done = false;
    version_started = false;
    field_open = false;
    in_trailers = false;
    trail = Trail::kLineStart;
    trailer_bytes = 0;
    body_total = 0;
    trailers->clear();
    if (request) {
      req->clear();
    } else {
      res->clear();
    }
  }

  bool version_ok() const { return p.http_major == 1 && p.http_minor <= 1; }

  int headers_complete();
  int request_head();
  int response_head();

  ParseStep feed(std::string_view input);
  ParseStep error_step(llhttp_errno_t err);
  // Parses trailer bytes from `in`; returns how many were used and sets `ended` at the blank
  // line that closes the section. Errors are recorded with fail().
  std::size_t parse_trailers(std::string_view in, bool& ended);
};

namespace {

int on_message_begin(llhttp_t* p) {
  Engine& e = Engine::of(p);
  e.begin_message();
  return 0;
}

int on_method(llhttp_t* p, const char* at, std::size_t n) {
  Engine& e = Engine::of(p);
  if (e.req->method.empty()) {
    e.method_start = e.head_pos(at);
  }
  e.req->method.append(at, n);
  return 0;
}

int on_url(llhttp_t* p, const char* at, std::size_t n) {
  Engine& e = Engine::of(p);
  if (!valid_target_text({at, n})) {
    return e.fail(Error::kBadRequest);
  }
  // request-line = method SP request-target SP HTTP-version; llhttp skips extra spaces.
  if (e.req->target.empty() && e.head_pos(at) != e.method_start + e.req->method.size() + 1) {
    return e.fail(Error::kBadRequest);
  }
  // A target ended by CR or LF is the HTTP/0.9 form "GET /", which llhttp accepts.
  if (at + n < e.exec_end && at[n] != ' ') {
    return e.fail(Error::kBadRequest);
  }
  e.req->target.append(at, n);
  e.target_end = e.head_pos(at + n);
  return 0;
}

int on_status(llhttp_t* p, const char* at, std::size_t n) {
  Engine& e = Engine::of(p);
  if (!valid_field_text({at, n})) {
    return e.fail(Error::kBadGateway);
  }
  e.res->reason.append(at, n);
  return 0;
}

int on_version(llhttp_t* p, const char* at, std::size_t /*n*/) {
  Engine& e = Engine::of(p);
  constexpr std::size_t kSpaceAndName = 6;  // " HTTP/"
  if (e.request && !e.version_started && e.head_pos(at) != e.target_end + kSpaceAndName) {
    return e.fail(Error::kBadRequest);
  }
  e.version_started = true;
  return 0;
}

int on_version_complete(llhttp_t* p) {
  Engine& e = Engine::of(p);
  if (!e.version_ok()) {
    e.fail(e.as_response(Error::kVersionNotSupported));
    return -1;
  }
  if (e.request) {
    e.line_done = true;
  }
  return 0;
}

int on_status_complete(llhttp_t* p) {
  Engine::of(p).line_done = true;
  return 0;
}

int on_header_field(llhttp_t* p, const char* at, std::size_t n) {
  Engine& e = Engine::of(p);
  Headers& h = *e.headers;
  if (!e.field_open) {
    e.value_end = nullptr;
    e.pending_ows.clear();
    h.begin_field();
    e.field_open = true;
  }
  h.append_name({at, n});
  return 0;
}

// Limits are checked where every way of cutting the input arrives alike: a name is complete
// here whatever the buffers were, while on_header_field is also called for a partial name at
// the end of each buffer (a limit checked there would depend on how the bytes arrived).
int on_header_field_complete(llhttp_t* p) {
  Engine& e = Engine::of(p);
  e.field_open = false;
  const Headers& h = *e.headers;
  if (h.empty() || h[h.size() - 1].name.empty()) {
    // field-name = token, never empty (RFC 9110 §5.1).
    return e.fail(e.bad());
  }
  if (h.size() > e.limits.max_headers) {
    return e.fail(e.as_response(Error::kHeaderTooLarge));
  }
  return 0;
}

int on_header_value(llhttp_t* p, const char* at, std::size_t n) {
  Engine& e = Engine::of(p);
  std::string_view v(at, n);
  if (!valid_field_text(v)) {
    return e.fail(e.bad());
  }
  if (e.value_end != nullptr && !(e.value_at_edge && at == e.exec_begin)) {
    // RFC 9112 §5.2: obs-fold is rejected with 400 (llhttp accepts it).
    return e.fail(e.bad());
  }
  e.value_end = at + n;
  e.value_at_edge = false;
  Headers& h = *e.headers;
  // RFC 9110 §5.5: trailing whitespace is not part of the value; it may arrive in pieces.
  std::size_t keep = v.find_last_not_of(" \t");
  if (keep == std::string_view::npos) {
    e.pending_ows.append(v);
  } else {
    if (!e.pending_ows.empty()) {
      h.append_value(e.pending_ows);
      e.pending_ows.clear();
    }
    h.append_value(v.substr(0, keep + 1));
    e.pending_ows.append(v.substr(keep + 1));
  }
  return 0;
}

int on_headers_complete(llhttp_t* p) {
  Engine& e = Engine::of(p);
  if (e.headers_complete() != 0) {
    return -1;
  }
  e.event = Event::kHead;
  return HPE_PAUSED;
}

int on_body(llhttp_t* p, const char* at, std::size_t n) {
  Engine& e = Engine::of(p);
  if (e.body.empty()) {
    e.body = {at, n};
  } else {
    // One body span per execute: the parser pauses at every chunk header.
    assert(e.body.data() + e.body.size() == at);
    e.body = {e.body.data(), e.body.size() + n};
  }
  return 0;
}

int on_chunk_header(llhttp_t* p) {
  Engine& e = Engine::of(p);
  e.body_total += p->content_length;
  if (e.request && e.limits.max_body != 0 &&
      (p->content_length > e.limits.max_body || e.body_total > e.limits.max_body)) {
    e.fail(Error::kBodyTooLarge);
    return -1;
  }
  if (p->content_length == 0) {
    e.in_trailers = true;  // feed() parses the trailer section itself from here
    e.trail = Engine::Trail::kLineStart;
    e.trailer_bytes = 0;
  }
  e.event = Event::kChunk;
  return HPE_PAUSED;
}

int on_message_complete(llhttp_t* p) {
  Engine& e = Engine::of(p);
  bool keep_alive = e.request ? e.req->keep_alive : e.res->keep_alive;
  e.phase = keep_alive ? Phase::kIdle : Phase::kClosed;
  e.event = Event::kEnd;
  return HPE_PAUSED;
}

const llhttp_settings_t* settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t t;
    llhttp_settings_init(&t);
    t.on_message_begin = on_message_begin;
    t.on_method = on_method;
    t.on_url = on_url;
    t.on_status = on_status;
    t.on_version = on_version;
    t.on_version_complete = on_version_complete;
    t.on_status_complete = on_status_complete;
    t.on_header_field = on_header_field;
    t.on_header_field_complete = on_header_field_complete;
    t.on_header_value = on_header_value;
    t.on_headers_complete = on_headers_complete;
    t.on_body = on_body;
    t.on_chunk_header = on_chunk_header;
    t.on_message_complete = on_message_complete;
    return t;
  }();
  return &s;
}

}  // namespace

int Engine::headers_complete() {
  field_open = false;
  if (!version_ok()) {
    // Also catches the HTTP/0.9 form "GET /\r\n", which has no version at all.
    fail(as_response(Error::kVersionNotSupported));
    return -1;
  }
  return request ? request_head() : response_head();
}

int Engine::request_head() {
  RequestHead& h = *req;
  h.version_minor = p.http_minor;
  h.method_kind = method_from(h.method);
  FieldFacts f = scan_fields(h.headers);
  // RFC 9112 §3.2: exactly one Host in HTTP/1.1, at most one in HTTP/1.0, and a valid one
  // (RFC 9110 §7.2: 400 for an invalid field value).
  if (f.host > 1 || (f.host == 0 && h.version_minor == 1) || f.host_bad) {
    fail(Error::kBadRequest);
    return -1;
  }
  if (f.cl_bad || f.te_bad) {
    fail(Error::kBadRequest);
    return -1;
  }
  // RFC 9112 §3.2.4: the asterisk-form is only used for a server-wide OPTIONS request (nginx
  // answers "GET *" 400 too).
  if (h.target == "*" && h.method_kind != Method::kOptions) {
    fail(Error::kBadRequest);
    return -1;
  }
  if (f.te_seen) {
    // RFC 9112 §6.1: Transfer-Encoding in HTTP/1.0 means faulty framing; with Content-Length
    // it is a smuggling attempt (§6.3 point 3). Chunked not the final coding leaves the length
    // unknown: 400 (§6.3 point 4, a MUST). Codings other than chunked before it are not
    // implemented (501, RFC 9112 §6.1).
    if (h.version_minor == 0 || f.cl_seen || !f.te_final) {
      fail(Error::kBadRequest);
      return -1;
    }
    if (f.te_unknown) {
      fail(Error::kNotImplemented);
      return -1;
    }
    h.framing = Framing::kChunked;
  } else if (f.cl_seen) {
    h.framing = Framing::kLength;
    h.content_length = f.cl;
    if (limits.max_body != 0 && f.cl > limits.max_body) {
      fail(Error::kBodyTooLarge);
      return -1;
    }
  }
  h.keep_alive = h.version_minor == 1 ? !f.conn_close : (f.conn_keep_alive && !f.conn_close);
  h.expect_continue = f.expect_continue;
  if (h.method_kind == Method::kConnect) {
    // RFC 9110 §9.3.6: CONNECT has no content; a framed body would be ambiguous.
    if (h.framing != Framing::kNone) {
      fail(Error::kBadRequest);
      return -1;
    }
    h.upgrade = true;
  } else {
    // RFC 9110 §7.8: an Upgrade on a request with content is ignored (the server may).
    bool has_body = h.framing == Framing::kChunked || h.content_length > 0;
    h.upgrade = f.conn_upgrade && f.upgrade_field && !has_body;
  }
  p.upgrade = h.upgrade ? 1 : 0;
  phase = h.upgrade ? Phase::kUpgrade : Phase::kBody;
  return 0;
}

int Engine::response_head() {
  ResponseHead& h = *res;
  h.version_minor = p.http_minor;
  h.status = p.status_code;
  if (h.status < 100 || h.status > 599) {
    fail(Error::kBadGateway);
    return -1;
  }
  FieldFacts f = scan_fields(h.headers);
  if (f.cl_bad || f.te_bad || (f.te_seen && (f.cl_seen || h.version_minor == 0)) ||
      (f.te_seen && (f.te_unknown || !f.te_chunked))) {
    fail(Error::kBadGateway);
    return -1;
  }
  if (f.cl_seen) {
    h.content_length = f.cl;
  }
  // RFC 9112 §6.3 points 1-2: no content after HEAD, 1xx, 204, 304, or a 2xx to CONNECT.
  bool connect_ok = expected == Method::kConnect && h.status / 100 == 2;
  bool upgrade = h.status == 101 || connect_ok;
  if (expected == Method::kHead || h.status < 200 || h.status == 204 || h.status == 304 ||
      connect_ok) {
    h.framing = Framing::kNone;
    p.flags |= F_SKIPBODY;
  } else if (f.te_seen) {
    h.framing = Framing::kChunked;
  } else if (f.cl_seen) {
    h.framing = Framing::kLength;
  } else {
    h.framing = Framing::kUntilClose;
  }
  h.keep_alive = (h.version_minor == 1 ? !f.conn_close : (f.conn_keep_alive && !f.conn_close)) &&
                 h.framing != Framing::kUntilClose && !upgrade;
  p.upgrade = 0;
  phase = upgrade ? Phase::kUpgrade : Phase::kBody;
  return 0;
}

ParseStep Engine::error_step(llhttp_errno_t err) {
  if (error == Error::kNone) {
    if (!request) {
      error = Error::kBadGateway;
    } else {
      switch (err) {
        case HPE_INVALID_VERSION:
          // Well-formed but not 1.0/1.1 is 505; broken syntax is 400.
          error = std::strcmp(llhttp_get_error_reason(&p), "Invalid HTTP version") == 0
                      ? Error::kVersionNotSupported
                      : Error::kBadRequest;
          break;
        case HPE_INVALID_TRANSFER_ENCODING:
          // llhttp: chunked is not the final coding of a request (RFC 9112 §6.3 point 4).
          error = Error::kBadRequest;
          break;
        default:
          error = Error::kBadRequest;
          break;
      }
    }
  }
  phase = Phase::kDead;
  ParseStep s;
  s.kind = ParseStep::Kind::kError;
  s.error = error;
  s.body = body;
  return s;
}

std::size_t Engine::parse_trailers(std::string_view in, bool& ended) {
  Headers& h = *trailers;
  for (std::size_t i = 0; i < in.size(); ++i) {
    // One byte at a time, so that every limit and error falls on the same byte however the
    // input was cut. The section, blank line included, obeys max_header like a head.
    if (++trailer_bytes > limits.max_header) {
      fail(as_response(Error::kHeaderTooLarge));
      return i;
    }
    const char c = in[i];
    switch (trail) {
      case Trail::kLineStart:
        if (c == '\r') {
          trail = Trail::kEndCr;
        } else if (c == '\n') {
          ended = true;  // a bare LF ends a line, as llhttp allows in heads (RFC 9112 §2.2)
          return i + 1;
        } else if (is_tchar(c)) {
          h.begin_field();
          h.append_name({&c, 1});
          trail = Trail::kName;
        } else {
          // Whitespace here is an obs-fold or precedes a name: 400 (RFC 9112 §5.1, §5.2).
          fail(bad());
          return i;
        }
        break;
      case Trail::kName:
        if (is_tchar(c)) {
          h.append_name({&c, 1});
        } else if (c == ':') {
          if (h.size() > limits.max_headers) {
            fail(as_response(Error::kHeaderTooLarge));
            return i;
          }
          pending_ows.clear();
          trail = Trail::kValueStart;
        } else {
          fail(bad());  // no whitespace between a field name and the colon (RFC 9112 §5.1)
          return i;
        }
        break;
      case Trail::kValueStart:
      case Trail::kValue:
        if (c == '\r') {
          trail = Trail::kCr;
        } else if (c == '\n') {
          trail = Trail::kLineStart;
        } else if (c == ' ' || c == '\t') {
          if (trail == Trail::kValue) {
            pending_ows.push_back(c);  // kept only if more value text follows (RFC 9110 §5.5)
          }
        } else if (!valid_field_text({&c, 1})) {
          fail(bad());
          return i;
        } else {
          if (!pending_ows.empty()) {
            h.append_value(pending_ows);
            pending_ows.clear();
          }
          h.append_value({&c, 1});
          trail = Trail::kValue;
        }
        break;
      case Trail::kCr:
      case Trail::kEndCr:
        if (c != '\n') {
          fail(bad());  // a bare CR (RFC 9112 §2.2)
          return i;
        }
        if (trail == Trail::kEndCr) {
          ended = true;
          return i + 1;
        }
        trail = Trail::kLineStart;
        break;
    }
  }
  return in.size();
}

ParseStep Engine::feed(std::string_view input) {
  using Kind = ParseStep::Kind;
  switch (phase) {
    case Phase::kDead:
      return {Kind::kError, 0, {}, error};
    case Phase::kUpgrade:
      return {Kind::kUpgrade, 0, {}, Error::kNone};
    case Phase::kClosed:
      // After a message that ends the connection the rest is not read (RFC 9112 §9.6).
      return {Kind::kNeedMore, input.size(), {}, Error::kNone};
    default:
      break;
  }
  if (input.empty() && !paused) {
    return {Kind::kNeedMore, 0, {}, Error::kNone};
  }
  const char* base = input.empty() ? kEmpty : input.data();
  std::size_t off = 0;
  for (;;) {
    if (in_method_scan) {
      for (; off < input.size(); ++off) {
        const char c = input[off];
        if (c == ' ' || !is_tchar(c) || ++method_scan_len > kMaxMethodToken) {
          fail(c == ' ' ? Error::kNotImplemented : Error::kBadRequest);
          return error_step(HPE_USER);
        }
      }
      return {Kind::kNeedMore, input.size(), {}, Error::kNone};
    }
    if (in_trailers) {
      body = {};  // a kError step carries no stale body piece from an earlier feed
      bool ended = false;
      off += parse_trailers(input.substr(off), ended);
      if (error != Error::kNone) {
        return error_step(HPE_USER);
      }
      if (!ended) {
        return {Kind::kNeedMore, input.size(), {}, Error::kNone};
      }
      // llhttp, still paused at the last chunk, ends the message on an empty section.
      in_trailers = false;
      llhttp_resume(&p);
      paused = false;
      event = Event::kNone;
      body = {};
      llhttp_errno_t err = llhttp_execute(&p, kEmptyLine, sizeof kEmptyLine);
      if (err != HPE_PAUSED || event != Event::kEnd) {
        assert(false && "llhttp did not end the message after the trailer section");
        return error_step(err == HPE_OK ? HPE_INTERNAL : err);
      }
      paused = true;
      return {Kind::kEnd, off, {}, Error::kNone};
    }
    if (paused) {
      llhttp_resume(&p);
      paused = false;
    }
    if (phase == Phase::kIdle) {
      // Empty lines before a message are skipped here (RFC 9112 §2.2), so that a head's byte
      // count starts at its first byte however the input was cut.
      while (off < input.size() && (base[off] == '\r' || base[off] == '\n')) {
        ++off;
      }
      if (off == input.size()) {
        return {Kind::kNeedMore, input.size(), {}, Error::kNone};
      }
    }
    const char* data = base + off;
    std::size_t len = input.size() - off;
    const bool heading = phase == Phase::kIdle || phase == Phase::kHead;
    if (heading) {
      head_base = head_bytes = phase == Phase::kIdle ? 0 : head_bytes;
      head_mark = data;
      // A head is parsed no further than one byte past max_header: a head over the limit is
      // refused at that byte, whatever follows it and however the bytes arrived.
      len = std::min(len, limits.max_header + 1 - head_base);
    }
    event = Event::kNone;
    body = {};
    value_at_edge = value_end != nullptr && value_end == exec_end;
    exec_begin = data;
    exec_end = data + len;
    llhttp_errno_t err = llhttp_execute(&p, data, len);
    if (err == HPE_OK) {
      if (phase == Phase::kHead) {
        head_bytes = head_base + len;
        if (head_bytes > limits.max_header) {
          fail(as_response(line_done ? Error::kHeaderTooLarge : Error::kUriTooLong));
          return error_step(err);
        }
      }
      assert(off + len == input.size());
      return {Kind::kNeedMore, input.size(), body, Error::kNone};
    }
    if (err == HPE_INVALID_METHOD && request && error == Error::kNone) {
      const char* at = llhttp_get_error_pos(&p);
      if (at >= data && at < data + len && is_tchar(*at)) {
        in_method_scan = true;
        method_scan_len = head_pos(at);  // the token's bytes before the one llhttp refused
        off += static_cast<std::size_t>(at - data);
        continue;
      }
    }
    if (err != HPE_PAUSED) {
      return error_step(err);
    }
    paused = true;
    const std::size_t pos = off + static_cast<std::size_t>(llhttp_get_error_pos(&p) - data);
    switch (event) {
      case Event::kHead:
        head_bytes = head_pos(llhttp_get_error_pos(&p));
        if (head_bytes > limits.max_header) {
          fail(as_response(Error::kHeaderTooLarge));
          return error_step(err);
        }
        return {Kind::kHead, pos, {}, Error::kNone};
      case Event::kEnd:
        return {Kind::kEnd, pos, body, Error::kNone};
      case Event::kChunk:
        if (!body.empty()) {
          return {pos < input.size() ? Kind::kData : Kind::kNeedMore, pos, body, Error::kNone};
        }
        off = pos;
        continue;
      case Event::kNone:
        break;
    }
    assert(false && "llhttp paused without an event");
    return error_step(HPE_INTERNAL);
  }
}

struct RequestParser::Impl : Engine {
  Impl(const Limits& l, RequestParser* owner)
      : Engine(true, l, &owner->head_.headers, &owner->trailers_) {
    req = &owner->head_;
    llhttp_init(&p, HTTP_REQUEST, settings());
    p.data = static_cast<Engine*>(this);
  }
};

RequestParser::RequestParser(const Limits& limits) : impl_(std::make_unique<Impl>(limits, this)) {}

RequestParser::~RequestParser() = default;

ParseStep RequestParser::feed(std::string_view input) {
  ParseStep s = impl_->feed(input);
  head_bytes_ = impl_->head_bytes;
  return s;
}

bool RequestParser::in_head() const {
  return impl_->phase == Phase::kHead;
}

struct ResponseParser::Impl : Engine {
  Impl(const Limits& l, ResponseParser* owner)
      : Engine(false, l, &owner->head_.headers, &owner->trailers_) {
    res = &owner->head_;
    llhttp_init(&p, HTTP_RESPONSE, settings());
    p.data = static_cast<Engine*>(this);
  }
};

ResponseParser::ResponseParser(const Limits& limits)
    : impl_(std::make_unique<Impl>(limits, this)) {}

ResponseParser::~ResponseParser() = default;

void ResponseParser::expect(Method request_method) {
  impl_->expected = request_method;
}

void ResponseParser::reset() {
  Engine& e = *impl_;
  Engine fresh(false, e.limits, &head_.headers, &trailers_);
  fresh.res = &head_;
  fresh.expected = e.expected;
  e = fresh;
  llhttp_init(&e.p, HTTP_RESPONSE, settings());
  e.p.data = &e;
  head_.clear();
  trailers_.clear();
}

ParseStep ResponseParser::feed(std::string_view input) {
  return impl_->feed(input);
}

ParseStep ResponseParser::feed_eof() {
  Engine& e = *impl_;
  if (e.phase == Phase::kBody && head_.framing == Framing::kUntilClose) {
    // RFC 9112 §6.3 point 8: the close delimits the content.
    e.phase = Phase::kClosed;
    e.paused = false;
    return {ParseStep::Kind::kEnd, 0, {}, Error::kNone};
  }
  if (e.phase == Phase::kDead) {
    return {ParseStep::Kind::kError, 0, {}, e.error};
  }
  e.error = Error::kBadGateway;
  e.phase = Phase::kDead;
  return {ParseStep::Kind::kError, 0, {}, e.error};
}

bool ResponseParser::idle() const {
  return impl_->phase == Phase::kIdle;
}

}  // namespace gearbox::http
