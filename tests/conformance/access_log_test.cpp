// The access log over every backend: one line per response in nginx's combined format (or JSON),
// errors included, written to a file within a second while serving, and reopened on SIGUSR1.
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/conformance/conformance.hpp"
#include "tests/support/files.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;

class AccessLogTest : public ConformanceTest {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    path_ = dir_.path() + "/access.log";
  }

  static std::vector<std::string> lines_of(const std::string& path) { return file_lines(path); }
  static std::vector<std::string> wait_lines(const std::string& path, std::size_t n,
                                             Millis timeout = 3s) {
    return wait_for_lines(path, n, timeout);
  }

  TempDir dir_;
  std::string path_;
};

// nginx's combined format with $request_time appended.
const std::regex kCombined(
    R"re(^127\.0\.0\.1 - - \[\d\d/[A-Z][a-z][a-z]/\d{4}:\d\d:\d\d:\d\d \+0000\] "([^"]*)" (\d{3}) (\d+) "([^"]*)" "([^"]*)" (\d+\.\d{3})$)re");

TEST_P(AccessLogTest, EveryResponseIsLoggedInCombinedFormatErrorsIncluded) {
  ASSERT_TRUE(start_server({"--access-log", path_, "--max-body", "64"}));
  CurlClient curl;
  EXPECT_EQ(curl.request("GET", url("/plaintext"), {},
                         {"User-Agent: probe \"1\"", "Referer: http://example.test/"})
                .status,
            200);
  EXPECT_EQ(curl.request("POST", url("/echo"), "hello").status, 200);
  EXPECT_EQ(curl.request("HEAD", url("/health")).status, 200);
  EXPECT_EQ(exchange(port(), "BROKEN\r\n\r\n").status, 400);
  EXPECT_EQ(exchange(port(), "POST /big HTTP/1.1\r\nHost: x\r\nContent-Length: 65\r\n\r\n").status,
            413);
  EXPECT_EQ(exchange(port(), "GET /delay/x HTTP/1.1\r\nHost: x\r\n\r\n").status, 400);

  std::vector<std::string> lines = wait_lines(path_, 6);
  ASSERT_EQ(lines.size(), 6u) << ::testing::PrintToString(lines);
  struct Want {
    std::string request;
    std::string status;
    std::string body_bytes;  // empty: any
    std::string referer;
    std::string agent;  // empty: any
  };
  const std::vector<Want> wants = {
      {"GET /plaintext HTTP/1.1", "200", "13", "http://example.test/", "probe \\x221\\x22"},
      {"POST /echo HTTP/1.1", "200", "5", "-", ""},
      {"HEAD /health HTTP/1.1", "200", "0", "-", ""},
      {"-", "400", "", "-", "-"},
      {"POST /big HTTP/1.1", "413", "", "-", "-"},
      {"GET /delay/x HTTP/1.1", "400", "", "-", "-"},
  };
  // Each worker (prefork) buffers its own lines: the file need not be in request order.
  std::vector<bool> matched(wants.size(), false);
  for (const std::string& line : lines) {
    SCOPED_TRACE(line);
    std::smatch m;
    ASSERT_TRUE(std::regex_match(line, m, kCombined));
    for (std::size_t i = 0; i < wants.size(); ++i) {
      const Want& w = wants[i];
      if (!matched[i] && m[1] == w.request && m[2] == w.status &&
          (w.body_bytes.empty() || m[3] == w.body_bytes) && m[4] == w.referer &&
          (w.agent.empty() || m[5] == w.agent)) {
        matched[i] = true;
        break;
      }
    }
  }
  for (std::size_t i = 0; i < wants.size(); ++i) {
    EXPECT_TRUE(matched[i]) << "no line for " << wants[i].request << " " << wants[i].status
                            << " in\n"
                            << ::testing::PrintToString(lines);
  }
}

TEST_P(AccessLogTest, JsonLinesCarryTheSameFields) {
  ASSERT_TRUE(start_server({"--access-log", path_, "--access-log-format", "json"}));
  EXPECT_EQ(CurlClient().get(url("/plaintext")).status, 200);
  std::vector<std::string> lines = wait_lines(path_, 1);
  ASSERT_EQ(lines.size(), 1u);
  const std::string& line = lines[0];
  EXPECT_TRUE(line.starts_with("{\"time\":\"")) << line;
  EXPECT_TRUE(line.ends_with("}")) << line;
  for (const char* field :
       {"\"remote_addr\":\"127.0.0.1\"", "\"request\":\"GET /plaintext HTTP/1.1\"",
        "\"method\":\"GET\"", "\"uri\":\"/plaintext\"", "\"status\":200", "\"body_bytes_sent\":13",
        "\"upstream_addr\":null", "\"request_time\":"}) {
    EXPECT_NE(line.find(field), std::string::npos) << field << " in " << line;
  }
  // A real JSON parser agrees (Debian's python3 is there wherever the tests run).
  std::string check =
      "/usr/bin/python3 -c 'import json,sys; [json.loads(l) for l in open(sys.argv[1])]' " + path_ +
      " 2>&1";
  EXPECT_EQ(std::system(check.c_str()), 0);
}

TEST_P(AccessLogTest, LinesReachTheFileWithinASecondWhileServing) {
  ASSERT_TRUE(start_server({"--access-log", path_}));
  EXPECT_EQ(CurlClient().get(url("/health")).status, 200);
  auto lines = wait_lines(path_, 1, 2s);
  EXPECT_EQ(lines.size(), 1u) << "the line should be written within a second, not at exit";
  EXPECT_TRUE(server_.running());
}

TEST_P(AccessLogTest, SigUsr1ReopensTheFileForLogrotate) {
  ASSERT_TRUE(start_server({"--access-log", path_}));
  CurlClient curl;
  EXPECT_EQ(curl.get(url("/plaintext")).status, 200);
  ASSERT_EQ(wait_lines(path_, 1).size(), 1u);
  const std::string rotated = path_ + ".1";
  std::filesystem::rename(path_, rotated);
  server_.send_signal(SIGUSR1);
  // Until the reopen, lines may still go to the rotated file (as with nginx): wait for the new
  // file to appear, then every later line must land in it.
  auto until = std::chrono::steady_clock::now() + 3s;
  while (!std::filesystem::exists(path_) && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(50ms);
  }
  ASSERT_TRUE(std::filesystem::exists(path_)) << "SIGUSR1 did not reopen " << path_;
  // prefork: each worker reopens on its own within a second; give them that second.
  std::this_thread::sleep_for(1200ms);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(CurlClient().get(url("/health")).status, 200);
  }
  std::vector<std::string> fresh = wait_lines(path_, 5);
  EXPECT_EQ(fresh.size(), 5u) << ::testing::PrintToString(fresh);
  EXPECT_EQ(lines_of(rotated).size(), 1u);
  EXPECT_EQ(server_.stop(), 0);
}

TEST_P(AccessLogTest, AnUnopenableFileIsAConfigurationError) {
  ProcessResult r =
      run_process({gearbox_binary(), "--backend", GetParam(), "--listen", "127.0.0.1:0",
                   "--access-log", dir_.path() + "/missing/dir/access.log"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err_text().find("--access-log: cannot open"), std::string::npos) << r.err_text();
}

GEARBOX_CONFORMANCE_SUITE(AccessLogTest);

}  // namespace
}  // namespace gearbox::test
