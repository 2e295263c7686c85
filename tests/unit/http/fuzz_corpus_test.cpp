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

}  // namespace
}  // namespace gearbox::fuzz
