// Replays the parser fuzz corpus (tests/fuzz/corpus) through the fuzz targets' invariant, so
// that every seed and every crash found and added there is checked by the ordinary unit tests.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "tests/fuzz/parser_invariant.hpp"

namespace gearbox::fuzz {
namespace {

template <typename TraceFn>
void replay(const char* dir, TraceFn fn) {
  std::filesystem::path root =
      std::filesystem::path(GEARBOX_SOURCE_DIR) / "tests/fuzz/corpus" / dir;
  ASSERT_TRUE(std::filesystem::is_directory(root)) << root;
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(root)) {
    if (!entry.is_regular_file()) {
      continue;
    }
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    EXPECT_EQ(check(ss.str(), fn), "") << entry.path();
    ++files;
  }
  EXPECT_GT(files, 5u);
}

TEST(FuzzCorpus, RequestParser) {
  replay("request", request_trace);
}

TEST(FuzzCorpus, ResponseParser) {
  replay("response", response_trace);
}

// The invariant itself can fail: a trace that differs when split is reported.
TEST(FuzzCorpus, CheckReportsADifference) {
  auto unstable = [](std::string_view in, std::size_t piece, std::string&) {
    return std::string(in) + std::to_string(piece);
  };
  EXPECT_NE(check("x", unstable), "");
  auto broken = [](std::string_view, std::size_t, std::string& violations) {
    violations += "kData with no input left\n";
    return std::string();
  };
  EXPECT_NE(check("x", broken), "");
}

// Issue 8 point 11: the trace is the whole message, so a parser that got any part of it wrong
// only when the input is split would be caught. Inputs that differ in one part only must give
// different traces.
TEST(FuzzCorpus, TraceDescribesTheWholeMessage) {
  auto t = [](std::string_view in) {
    std::string violations;
    std::string out = request_trace(in, 0, violations);
    EXPECT_EQ(violations, "");
    return out;
  };
  const std::string base =
      "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: "
      "1\r\n\r\n";
  const std::string variants[] = {
      "PUT /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: "
      "1\r\n\r\n",
      "POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: "
      "1\r\n\r\n",
      "POST /a HTTP/1.0\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
      "POST /a HTTP/1.1\r\nHost: y\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: "
      "1\r\n\r\n",
      "POST /a HTTP/1.1\r\nHosu: x\r\nHost: x\r\nTransfer-Encoding: "
      "chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
      "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabd\r\n0\r\nT: "
      "1\r\n\r\n",
      "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: "
      "2\r\n\r\n",
      "POST /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: "
      "chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\n",
  };
  for (const std::string& v : variants) {
    EXPECT_NE(t(v), t(base)) << v;
  }
  const std::string upgrade =
      "GET / HTTP/1.1\r\nHost: x\r\nConnection: upgrade\r\nUpgrade: ws\r\n\r\n";
  EXPECT_NE(t(upgrade + "rest-1"), t(upgrade + "rest-2"));
  std::string violations;
  EXPECT_NE(response_trace("0HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", 0, violations),
            response_trace("0HTTP/1.1 200 Fine\r\nContent-Length: 0\r\n\r\n", 0, violations));
}

}  // namespace
}  // namespace gearbox::fuzz
