// Split-everywhere helpers (Beast's parsegrind idea): drive a pull parser over input delivered
// in pieces, the way a connection does, and check that every way of cutting the input gives the
// same trace as feeding it whole.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "http/error.hpp"
#include "http/parser.hpp"

namespace gearbox::test {

// Drives `parser` over `pieces` like a connection: unconsumed bytes are kept and fed again with
// the next piece. Returns a trace of what came out: one line per head (describe(parser)), per
// message body + end (body pieces joined, trailers), error, upgrade (with the bytes left after
// it). `on_end(parser)` runs after each kEnd (to call expect() for the next response); when
// `eof` is set, ResponseParser::feed_eof() is called after the last piece.
template <typename Parser, typename Describe, typename OnEnd>
std::string drive(Parser& parser, const std::vector<std::string_view>& pieces, Describe describe,
                  OnEnd on_end, bool eof = false) {
  using Kind = http::ParseStep::Kind;
  std::string trace;
  std::string buffer;
  std::string body;
  std::size_t total = 0;
  for (std::string_view p : pieces) {
    total += p.size();
  }
  std::size_t budget = 4 * total + 64;
  auto flush_body = [&] {
    if (!body.empty()) {
      trace += "body[" + body + "]\n";
      body.clear();
    }
  };
  auto handle = [&](const http::ParseStep& s) -> bool {  // false: stop
    body.append(s.body);
    switch (s.kind) {
      case Kind::kNeedMore:
      case Kind::kData:
        return true;
      case Kind::kHead:
        trace += "head " + describe(parser) + "\n";
        return true;
      case Kind::kEnd: {
        flush_body();
        trace += "end";
        for (http::Field f : parser.trailers()) {
          trace += " [" + std::string(f.name) + ": " + std::string(f.value) + "]";
        }
        trace += "\n";
        on_end(parser);
        return true;
      }
      case Kind::kUpgrade:
        flush_body();
        return false;
      case Kind::kError:
        flush_body();
        trace += "error " + std::to_string(http::status_of(s.error)) + "\n";
        return false;
    }
    return false;
  };
  for (std::size_t i = 0; i < pieces.size(); ++i) {
    buffer.append(pieces[i]);
    for (;;) {
      if (budget-- == 0) {
        ADD_FAILURE() << "parser made no progress";
        return trace + "stuck\n";
      }
      http::ParseStep s = parser.feed(buffer);
      EXPECT_LE(s.consumed, buffer.size());
      if (s.kind == Kind::kNeedMore) {
        EXPECT_EQ(s.consumed, buffer.size()) << "kNeedMore must consume all input";
      }
      if (s.kind == Kind::kData) {
        EXPECT_LT(s.consumed, buffer.size()) << "kData means input remains";
      }
      if (!s.body.empty() && s.kind != Kind::kError) {
        EXPECT_GE(s.body.data(), buffer.data());
        EXPECT_LE(s.body.data() + s.body.size(), buffer.data() + s.consumed)
            << "a body piece lies inside the consumed bytes";
      }
      bool go_on = handle(s);
      std::size_t consumed = s.consumed < buffer.size() ? s.consumed : buffer.size();
      buffer.erase(0, consumed);
      if (!go_on) {
        if (s.kind == Kind::kUpgrade) {
          std::string rest = buffer;
          for (std::size_t j = i + 1; j < pieces.size(); ++j) {
            rest.append(pieces[j]);
          }
          trace += "upgrade rest[" + rest + "]\n";
        }
        return trace;
      }
      if (s.kind == Kind::kNeedMore) {
        break;
      }
    }
  }
  if (eof) {
    if constexpr (requires { parser.feed_eof(); }) {
      http::ParseStep s = parser.feed_eof();
      handle(s);
    }
  }
  flush_body();
  if (!buffer.empty()) {
    trace += "unconsumed " + std::to_string(buffer.size()) + "\n";
  }
  return trace;
}

// Runs `run(pieces)` (a fresh parser each time, returning a trace) on the input whole, cut in
// two at every point, and one byte at a time; all traces must equal the whole one, which is
// returned.
template <typename Run>
std::string expect_same_split(std::string_view input, Run run) {
  const std::string whole = run(std::vector<std::string_view>{input});
  for (std::size_t cut = 1; cut < input.size(); ++cut) {
    std::string t = run(std::vector<std::string_view>{input.substr(0, cut), input.substr(cut)});
    EXPECT_EQ(t, whole) << "cut at byte " << cut;
    if (t != whole) {
      break;
    }
  }
  std::vector<std::string_view> bytes;
  for (std::size_t i = 0; i < input.size(); ++i) {
    bytes.push_back(input.substr(i, 1));
  }
  EXPECT_EQ(run(bytes), whole) << "fed one byte at a time";
  return whole;
}

}  // namespace gearbox::test
