// The invariant the parser fuzz targets and the corpus replay test check: any input, fed whole,
// in two pieces or a byte at a time, never crashes, breaks no step contract, and yields the
// same trace. The trace is the whole message as the parser reported it: each head (method or
// status and reason, target, version, every field name and value, framing, Content-Length,
// keep-alive, Expect, upgrade), the body bytes, each end with its trailer fields, the error
// status, and the bytes left after an upgrade.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/parser.hpp"

namespace gearbox::fuzz {

// A trace of what a parser reported for `input` delivered in pieces of `piece` bytes (0 = whole).
// Broken step contracts are appended to `violations`.
// Length-prefixed, so that no two different heads describe alike.
inline void put(std::string& out, std::string_view text) {
  out += std::to_string(text.size());
  out += ':';
  out += text;
  out += ' ';
}

inline void put_fields(std::string& out, const http::Headers& fields) {
  out += std::to_string(fields.size()) + " fields\n";
  for (http::Field f : fields) {
    out += "  ";
    put(out, f.name);
    put(out, f.value);
    out += '\n';
  }
}

inline void put_framing(std::string& out, http::Framing framing, std::uint64_t length,
                        bool keep_alive) {
  out += "framing " + std::to_string(static_cast<int>(framing)) + " length " +
         std::to_string(length) + (keep_alive ? " keep-alive" : " close");
}

inline std::string describe(const http::RequestHead& h) {
  std::string out = "head ";
  put(out, h.method);
  out += std::to_string(static_cast<int>(h.method_kind)) + " ";
  put(out, h.target);
  out += "1." + std::to_string(h.version_minor) + " ";
  put_framing(out, h.framing, h.content_length, h.keep_alive);
  out += h.expect_continue ? " expect" : "";
  out += h.upgrade ? " upgrade" : "";
  out += '\n';
  put_fields(out, h.headers);
  return out;
}

inline std::string describe(const http::ResponseHead& h) {
  std::string out = "head " + std::to_string(h.status) + " ";
  put(out, h.reason);
  out += "1." + std::to_string(h.version_minor) + " ";
  put_framing(out, h.framing, h.content_length, h.keep_alive);
  out += '\n';
  put_fields(out, h.headers);
  return out;
}

template <typename Parser>
std::string trace(Parser& parser, std::string_view input, std::size_t piece, bool eof,
                  std::string& violations) {
  using Kind = http::ParseStep::Kind;
  std::string out;
  std::string buffer;
  std::string body;
  std::size_t budget = 4 * input.size() + 64;
  std::size_t fed = 0;
  auto flush = [&] {
    if (!body.empty()) {
      out += "body " + std::to_string(body.size()) + ":" + body + "\n";
      body.clear();
    }
  };
  for (;;) {
    std::size_t n = piece == 0 ? input.size() - fed : std::min(piece, input.size() - fed);
    buffer.append(input.substr(fed, n));
    fed += n;
    for (;;) {
      if (budget-- == 0) {
        violations += "no progress\n";
        return out;
      }
      http::ParseStep s = parser.feed(buffer);
      if (s.consumed > buffer.size()) {
        violations += "consumed past the input\n";
        return out;
      }
      if (s.kind == Kind::kNeedMore && s.consumed != buffer.size()) {
        violations += "kNeedMore left input\n";
      }
      if (s.kind == Kind::kData && s.consumed >= buffer.size()) {
        violations += "kData with no input left\n";
      }
      if (!s.body.empty() && (s.body.data() < buffer.data() ||
                              s.body.data() + s.body.size() > buffer.data() + buffer.size())) {
        violations += "body outside the input\n";
        return out;
      }
      body.append(s.body);
      buffer.erase(0, s.consumed);
      switch (s.kind) {
        case Kind::kNeedMore:
        case Kind::kData:
          break;
        case Kind::kHead:
          out += describe(parser.head());
          break;
        case Kind::kEnd:
          flush();
          out += "end, trailers: ";
          put_fields(out, parser.trailers());
          break;
        case Kind::kUpgrade: {
          // The rest of the stream is not HTTP: what is left of it must be the same bytes.
          flush();
          out += "upgrade, then ";
          std::string rest = buffer;
          rest.append(input.substr(fed));
          put(out, rest);
          return out + "\n";
        }
        case Kind::kError:
          flush();
          return out + "error " + std::to_string(http::status_of(s.error)) + "\n";
      }
      if (s.kind == Kind::kNeedMore) {
        break;
      }
    }
    if (fed == input.size()) {
      break;
    }
  }
  if constexpr (requires { parser.feed_eof(); }) {
    if (eof) {
      http::ParseStep s = parser.feed_eof();
      body.append(s.body);
      flush();
      out += s.kind == Kind::kEnd ? "eof end\n" : "eof error\n";
    }
  }
  flush();
  return out;
}

inline std::string request_trace(std::string_view input, std::size_t piece,
                                 std::string& violations) {
  http::Limits limits;
  limits.max_header = 2048;
  limits.max_headers = 32;
  limits.max_body = 4096;
  http::RequestParser parser(limits);
  return trace(parser, input, piece, false, violations);
}

// The first byte picks the request method (GET, HEAD, CONNECT); the rest is the stream, then EOF.
inline std::string response_trace(std::string_view input, std::size_t piece,
                                  std::string& violations) {
  http::Limits limits;
  limits.max_header = 2048;
  limits.max_headers = 32;
  http::ResponseParser parser(limits);
  http::Method m = http::Method::kGet;
  if (!input.empty()) {
    auto c = static_cast<unsigned char>(input[0]);
    m = c % 3 == 0 ? http::Method::kGet
                   : (c % 3 == 1 ? http::Method::kHead : http::Method::kConnect);
    input.remove_prefix(1);
  }
  parser.expect(m);
  return trace(parser, input, piece, true, violations);
}

// Empty when the invariant holds, otherwise a description of the failure.
template <typename TraceFn>
std::string check(std::string_view input, TraceFn fn) {
  std::string violations;
  std::string whole = fn(input, 0, violations);
  std::string bytewise = fn(input, 1, violations);
  std::string halves = fn(input, input.size() / 2 + 1, violations);
  if (!violations.empty()) {
    return "contract broken: " + violations;
  }
  if (bytewise != whole) {
    return "whole:\n" + whole + "byte at a time:\n" + bytewise;
  }
  if (halves != whole) {
    return "whole:\n" + whole + "in two pieces:\n" + halves;
  }
  return {};
}

}  // namespace gearbox::fuzz
