// A short, bounded wrk run per backend (2 s, 16 connections, 127.0.0.1 only): every request must
// be answered 2xx with no socket error. Skipped when wrk is not installed.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <regex>
#include <string>

#include "tests/conformance/conformance.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;

class LoadTest : public ConformanceTest {};
GEARBOX_CONFORMANCE_SUITE(LoadTest);

std::string find_in_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
  std::size_t start = 0;
  while (start <= dirs.size()) {
    std::size_t end = dirs.find(':', start);
    std::string dir =
        dirs.substr(start, end == std::string::npos ? std::string::npos : end - start);
    std::string candidate = (dir.empty() ? "." : dir) + "/" + program;
    if (::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    if (end == std::string::npos) {
      break;
    }
    start = end + 1;
  }
  return {};
}

long match_number(const std::string& text, const std::regex& re, long fallback) {
  std::smatch m;
  return std::regex_search(text, m, re) ? std::stol(m[1]) : fallback;
}

TEST_P(LoadTest, WrkPlaintextHasNoErrors) {
  std::string wrk = find_in_path("wrk");
  if (wrk.empty()) {
    GTEST_SKIP() << "wrk is not installed (Debian package 'wrk'); load smoke test skipped";
  }
  ASSERT_TRUE(start_server());
  ProcessResult r =
      run_process({wrk, "-t1", "-c16", "-d2s", "--timeout", "2s", url("/plaintext")}, 15s);
  ASSERT_FALSE(r.timed_out) << r.out;
  ASSERT_EQ(r.status, 0) << r.out << r.err_text();
  long requests = match_number(r.out, std::regex(R"(([0-9]+) requests in)"), -1);
  EXPECT_GT(requests, 0) << r.out;
  std::smatch m;
  if (std::regex_search(r.out, m,
                        std::regex(R"(Socket errors: connect ([0-9]+), read ([0-9]+), write )"
                                   R"(([0-9]+), timeout ([0-9]+))"))) {
    ADD_FAILURE() << "wrk saw socket errors: " << m[0] << "\n" << r.out;
  }
  long non_2xx = match_number(r.out, std::regex(R"(Non-2xx or 3xx responses: ([0-9]+))"), 0);
  EXPECT_EQ(non_2xx, 0) << r.out;
  // The server is still healthy afterwards.
  HttpResponse after = exchange(port(), "GET /health HTTP/1.1\r\nHost: test\r\n\r\n");
  ASSERT_TRUE(after.ok()) << after.error;
  EXPECT_EQ(after.status, 200);
  std::cout << "[ wrk      ] " << GetParam() << ": " << requests << " requests in 2 s\n";
}

}  // namespace
}  // namespace gearbox::test
