// The invariant the parser fuzz targets and the corpus replay test check: any input, fed whole
// or a byte at a time, never crashes, breaks no step contract, and yields the same trace.
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
          out += "head " + std::to_string(parser.head().headers.size()) + "\n";
          break;
        case Kind::kEnd:
          flush();
          out += "end " + std::to_string(parser.trailers().size()) + "\n";
          break;
        case Kind::kUpgrade:
          flush();
          return out + "upgrade\n";
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
  if (!violations.empty()) {
    return "contract broken: " + violations;
  }
  if (bytewise != whole) {
    return "whole:\n" + whole + "byte at a time:\n" + bytewise;
  }
  return {};
}

}  // namespace gearbox::fuzz
