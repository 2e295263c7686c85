// The fixture shared by the conformance suites: one test = one gearbox process in echo mode on
// 127.0.0.1:0, over the backend named by the test parameter (tests/support/backends.hpp). At
// tear-down the server must stop on SIGTERM with status 0, every log line after the first must
// read `gearbox: <level>: ...`, and no error line may appear that the test did not allow.
#pragma once

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>
#include <vector>

#include "tests/support/backends.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/server_process.hpp"

namespace gearbox::test {

// The binary under test: this build's, or GEARBOX_TEST_BINARY when set (`make test` points it
// at the ThreadSanitizer build).
inline std::string gearbox_binary() {
  const char* other = std::getenv("GEARBOX_TEST_BINARY");
  return other != nullptr && *other != '\0' ? std::string(other) : std::string(GEARBOX_BINARY);
}

class ConformanceTest : public ::testing::TestWithParam<std::string> {
 protected:
  // Starts the server with `--backend <param> --mode echo --listen 127.0.0.1:0` plus `extra`.
  // Use as ASSERT_TRUE(start_server({...})).
  bool start_server(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--backend", GetParam(), "--mode",
                                     "echo",      "--listen", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    if (!server_.start(gearbox_binary(), args)) {
      return false;
    }
    EXPECT_EQ(server_.host(), "127.0.0.1") << server_.first_line();
    EXPECT_EQ(server_.backend(), GetParam()) << server_.first_line();
    EXPECT_EQ(server_.mode(), "echo") << server_.first_line();
    return true;
  }

  int port() const { return server_.port(); }
  std::string url(std::string_view path) const { return local_url(port(), path); }
  // Error-level log lines containing this substring are expected in this test.
  void allow_error(std::string substring) { allowed_errors_.push_back(std::move(substring)); }

  void TearDown() override {
    if (server_.pid() <= 0) {
      return;
    }
    if (!server_.exit_status().has_value()) {
      EXPECT_EQ(server_.stop(), 0) << "server did not exit cleanly on SIGTERM; log:\n"
                                   << server_.log_text();
    }
    auto untagged = server_.untagged_lines();
    EXPECT_TRUE(untagged.empty()) << "log lines not of the form `gearbox: <level>: ...`:\n"
                                  << ::testing::PrintToString(untagged);
    auto unexpected = server_.unexpected_errors(allowed_errors_);
    EXPECT_TRUE(unexpected.empty()) << "unexpected error lines in the server log:\n"
                                    << ::testing::PrintToString(unexpected) << "\nfull log:\n"
                                    << server_.log_text();
  }

  ServerProcess server_;
  std::vector<std::string> allowed_errors_;
};

inline std::string backend_test_name(const ::testing::TestParamInfo<std::string>& info) {
  return info.param;
}

}  // namespace gearbox::test

// Instantiates a ConformanceTest subclass over every backend in the list.
#define GEARBOX_CONFORMANCE_SUITE(Suite)                                                 \
  INSTANTIATE_TEST_SUITE_P(Backends, Suite,                                              \
                           ::testing::ValuesIn(::gearbox::test::conformance_backends()), \
                           ::gearbox::test::backend_test_name)
