// Replays the whole-connection fuzz corpus (tests/fuzz/corpus/connection) through the fuzz
// target's invariant, so every seed and every crash found and added there runs in `make test`.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/fuzz/connection_invariant.hpp"

namespace gearbox::fuzz {
namespace {

TEST(ConnectionFuzzCorpus, EveryInputEndsAfterClientEof) {
  std::filesystem::path root =
      std::filesystem::path(GEARBOX_SOURCE_DIR) / "tests/fuzz/corpus/connection";
  ASSERT_TRUE(std::filesystem::is_directory(root)) << root;
  std::size_t files = 0;
  for (const auto& entry : std::filesystem::directory_iterator(root)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    EXPECT_EQ(check_connection(ss.str()), "") << entry.path();
    ++files;
  }
  EXPECT_GE(files, 10u);
}

}  // namespace
}  // namespace gearbox::fuzz
