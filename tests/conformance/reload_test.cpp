// SIGHUP over every backend (echo mode): the file is read again and new connections get it; a
// connection opened before finishes its next exchange with Connection: close; a bad file, or
// one that moves the listen address, changes nothing and says so in one line.
#include <signal.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>

#include "tests/conformance/conformance.hpp"
#include "tests/support/files.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;

class ReloadTest : public ConformanceTest {
 protected:
  void SetUp() override {
    ASSERT_FALSE(dir_.path().empty());
    file_ = dir_.path() + "/gearbox.toml";
  }

  void write_config(const std::string& toml) {
    std::ofstream out(file_, std::ios::trunc);
    out << toml;
  }

  // Lines of the server's log containing `needle`.
  int count_log(std::string_view needle) const {
    int n = 0;
    for (const std::string& line : server_.log_lines()) {
      n += line.find(needle) != std::string::npos ? 1 : 0;
    }
    return n;
  }

  // SIGHUP, then waits until the log holds `n` lines containing `needle`.
  bool reload_and_wait(std::string_view needle, int n) {
    server_.send_signal(SIGHUP);
    auto until = std::chrono::steady_clock::now() + 5s;
    while (count_log(needle) < n && std::chrono::steady_clock::now() < until) {
      std::this_thread::sleep_for(10ms);
    }
    return count_log(needle) >= n;
  }

  static std::string post(std::size_t size) {
    return "POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(size) +
           "\r\n\r\n" + std::string(size, 'x');
  }

  TempDir dir_;
  std::string file_;
};

constexpr std::string_view kGet = "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n";

TEST_P(ReloadTest, NewConnectionsGetTheNewLimitsAndAnOldOneClosesAfterItsNextResponse) {
  write_config("mode = \"echo\"\nmax_body = \"1k\"\n");
  ASSERT_TRUE(start_server({"--config", file_}));
  Socket old = Socket::connect(port());
  ASSERT_TRUE(old.send_all(kGet));
  HttpResponse first = old.read_response();
  ASSERT_TRUE(first.ok()) << first.error;
  EXPECT_FALSE(first.has_connection_token("close"));
  EXPECT_EQ(exchange(port(), post(2000)).status, 413);

  write_config("mode = \"echo\"\nmax_body = \"4k\"\n");
  // prefork: the master logs once it forked the new workers and told the older ones to retire.
  ASSERT_TRUE(reload_and_wait(GetParam() == "prefork" ? "in force" : "read again", 1))
      << server_.log_text();
  HttpResponse bigger = exchange(port(), post(2000));
  ASSERT_TRUE(bigger.ok()) << bigger.error;
  EXPECT_EQ(bigger.status, 200);
  EXPECT_EQ(bigger.body, std::string(2000, 'x'));

  // The connection from before finishes its next exchange and closes: the client knows to
  // reconnect (to the new configuration), and no request of its is lost to a close.
  ASSERT_TRUE(old.send_all(kGet));
  HttpResponse last = old.read_response();
  ASSERT_TRUE(last.ok()) << last.error;
  EXPECT_EQ(last.status, 200);
  EXPECT_TRUE(last.has_connection_token("close"));
  EXPECT_TRUE(old.wait_for_close().closed);
}

TEST_P(ReloadTest, BadFileChangesNothingAndSaysWhereInOneLine) {
  allow_error("reload:");
  write_config("mode = \"echo\"\nmax_body = \"1k\"\n");
  ASSERT_TRUE(start_server({"--config", file_}));
  write_config("mode = \"echo\"\nmax_body = \"12q\"\n");
  ASSERT_TRUE(reload_and_wait("the running configuration stays", 1)) << server_.log_text();
  std::this_thread::sleep_for(200ms);
  int lines = 0;
  for (const std::string& line : server_.log_lines()) {
    if (line.find("reload") != std::string::npos) {
      ++lines;
      EXPECT_NE(line.find("error: reload: "), std::string::npos) << line;
      EXPECT_NE(line.find(file_), std::string::npos) << "names the file: " << line;
      EXPECT_NE(line.find("max_body"), std::string::npos) << "names the key: " << line;
    }
  }
  EXPECT_EQ(lines, 1) << server_.log_text();
  EXPECT_EQ(exchange(port(), post(2000)).status, 413) << "the old limit still holds";
  EXPECT_EQ(exchange(port(), std::string(kGet)).status, 200);
  EXPECT_TRUE(server_.running());
}

TEST_P(ReloadTest, ListenAddressCannotChangeByReload) {
  allow_error("reload:");
  write_config("mode = \"echo\"\nlisten = \"127.0.0.1:0\"\n");
  ASSERT_TRUE(server_.start(gearbox_binary(), {"--backend", GetParam(), "--config", file_}));
  write_config("mode = \"echo\"\nlisten = \"127.0.0.1:1\"\n");
  ASSERT_TRUE(reload_and_wait("the running configuration stays", 1)) << server_.log_text();
  EXPECT_EQ(count_log("listen: cannot change by reload"), 1) << server_.log_text();
  EXPECT_EQ(count_log(file_ + ": listen"), 1) << server_.log_text();
  EXPECT_EQ(exchange(port(), std::string(kGet)).status, 200);
}

TEST_P(ReloadTest, WithoutAConfigFileSighupChangesNothing) {
  allow_error("reload:");
  ASSERT_TRUE(start_server());
  ASSERT_TRUE(reload_and_wait("no configuration file", 1)) << server_.log_text();
  EXPECT_EQ(exchange(port(), std::string(kGet)).status, 200);
  EXPECT_TRUE(server_.running());
}

GEARBOX_CONFORMANCE_SUITE(ReloadTest);

}  // namespace
}  // namespace gearbox::test
