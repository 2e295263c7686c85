// Conformance of the program around the core, over every backend: the listening line, graceful
// drain on SIGTERM/SIGINT, --check, and bad flag values (one line naming the flag, status 2).
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/conformance/conformance.hpp"

namespace gearbox::test {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

class LifecycleTest : public ConformanceTest {};
GEARBOX_CONFORMANCE_SUITE(LifecycleTest);

TEST_P(LifecycleTest, ReportsItsPortAndServesOnIt) {
  ASSERT_TRUE(start_server());
  EXPECT_EQ(server_.first_line(), "gearbox: listening on 127.0.0.1:" + std::to_string(port()) +
                                      " (backend " + GetParam() + ", mode echo)");
  HttpResponse r = exchange(port(), "GET /health HTTP/1.1\r\nHost: test\r\n\r\n");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
}

void expect_drain(ServerProcess& server, int sig) {
  Socket s = Socket::connect(server.port());
  ASSERT_TRUE(s.valid()) << s.error();
  auto start = Clock::now();
  ASSERT_TRUE(s.send_all("GET /delay/500 HTTP/1.1\r\nHost: test\r\n\r\n"));
  std::this_thread::sleep_for(100ms);
  server.send_signal(sig);
  HttpResponse r = s.read_response(3s);
  ASSERT_TRUE(r.ok()) << "in-flight request not finished during drain: " << r.error << "\nlog:\n"
                      << server.log_text();
  EXPECT_EQ(r.status, 200);
  EXPECT_GE(Clock::now() - start, 500ms);
  auto status = server.wait_exit(5s);
  ASSERT_TRUE(status.has_value()) << "server still running 5 s after the signal; log:\n"
                                  << server.log_text();
  EXPECT_EQ(*status, 0) << server.log_text();
}

TEST_P(LifecycleTest, SigtermDrainsInFlightRequest) {
  ASSERT_TRUE(start_server({"--drain-timeout", "3s"}));
  expect_drain(server_, SIGTERM);
}

TEST_P(LifecycleTest, SigintDrainsInFlightRequest) {
  ASSERT_TRUE(start_server({"--drain-timeout", "3s"}));
  expect_drain(server_, SIGINT);
}

// The signal masks of every thread of `pid`, by thread name ("gearbox-reload", ...).
std::vector<std::pair<std::string, unsigned long long>> blocked_signals(pid_t pid) {
  std::vector<std::pair<std::string, unsigned long long>> out;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    std::ifstream comm(e.path() / "comm");
    std::string name;
    std::getline(comm, name);
    std::ifstream status(e.path() / "status");
    for (std::string line; std::getline(status, line);) {
      if (line.starts_with("SigBlk:")) {
        out.emplace_back(name, std::stoull(line.substr(7), nullptr, 16));
      }
    }
  }
  return out;
}

// One thread takes the signals that steer the server (the reloader's, while it waits): none of
// the serving threads, which then never see a system call interrupted, nor a thread that is
// about to exit (under ThreadSanitizer a SIGTERM delivered there was lost: no drain).
TEST_P(LifecycleTest, OnlyTheReloadThreadTakesTheControlSignals) {
  ASSERT_TRUE(start_server({"--drain-timeout", "3s"}));
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid()) << s.error();
  ASSERT_TRUE(
      s.send_all("GET /delay/400 HTTP/1.1\r\nHost: test\r\n\r\n"));  // a connection's thread
  std::this_thread::sleep_for(150ms);
  auto bit = [](int sig) { return 1ULL << (sig - 1); };
  const unsigned long long control = bit(SIGTERM) | bit(SIGINT) | bit(SIGHUP) | bit(SIGUSR1);
  int reloaders = 0;
  const auto threads = blocked_signals(server_.pid());  // prefork: the master's (workers: theirs)
  for (const auto& [name, mask] : threads) {
    if (name == "gearbox-reload") {
      ++reloaders;
      EXPECT_EQ(mask & control, 0U) << "the reload thread, waiting, blocks some of them";
    } else {
      EXPECT_EQ(mask & control, control) << "thread " << name << " may take a control signal";
    }
  }
  EXPECT_EQ(reloaders, 1);
  EXPECT_GE(threads.size(), 2U);
  HttpResponse r = s.read_response(3s);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
}

TEST_P(LifecycleTest, StopsAcceptingAfterSigterm) {
  ASSERT_TRUE(start_server({"--drain-timeout", "3s"}));
  Socket busy = Socket::connect(port());
  ASSERT_TRUE(busy.valid()) << busy.error();
  ASSERT_TRUE(busy.send_all("GET /delay/800 HTTP/1.1\r\nHost: test\r\n\r\n"));
  std::this_thread::sleep_for(100ms);
  server_.send_signal(SIGTERM);
  std::this_thread::sleep_for(200ms);
  // The server is still draining `busy`; a new connection must not be served.
  Socket late = Socket::connect(port(), 1s);
  if (late.valid()) {
    late.send_all("GET /plaintext HTTP/1.1\r\nHost: test\r\n\r\n");
    HttpResponse r = late.read_response(3s);
    EXPECT_FALSE(r.ok() && r.status == 200) << "a connection made after SIGTERM was served";
  }
  HttpResponse r = busy.read_response(3s);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  auto status = server_.wait_exit(5s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, 0);
}

TEST_P(LifecycleTest, IdleKeepAliveDoesNotHoldUpShutdown) {
  ASSERT_TRUE(start_server({"--drain-timeout", "5s", "--idle-timeout", "30s"}));
  Socket idle = Socket::connect(port());
  ASSERT_TRUE(idle.valid());
  ASSERT_TRUE(idle.send_all("GET /health HTTP/1.1\r\nHost: test\r\n\r\n"));
  ASSERT_TRUE(idle.read_response().ok());
  auto start = Clock::now();
  server_.send_signal(SIGTERM);
  auto status = server_.wait_exit(5s);
  ASSERT_TRUE(status.has_value()) << server_.log_text();
  EXPECT_EQ(*status, 0);
  EXPECT_LT(Clock::now() - start, 2s) << "an idle keep-alive connection delayed the exit";
  EXPECT_TRUE(idle.wait_for_close(1s).closed);
}

TEST_P(LifecycleTest, DrainTimeoutBoundsShutdown) {
  ASSERT_TRUE(start_server({"--drain-timeout", "500ms"}));
  Socket s = Socket::connect(port());
  ASSERT_TRUE(s.valid());
  ASSERT_TRUE(s.send_all("GET /delay/10000 HTTP/1.1\r\nHost: test\r\n\r\n"));
  std::this_thread::sleep_for(100ms);
  auto start = Clock::now();
  server_.send_signal(SIGTERM);
  auto status = server_.wait_exit(4s);
  ASSERT_TRUE(status.has_value()) << "not out within 4 s with --drain-timeout 500ms; log:\n"
                                  << server_.log_text();
  EXPECT_LT(Clock::now() - start, 2500ms);
  // Cutting what is left at the deadline is the plan, not a failure: a crash there is one.
  EXPECT_EQ(*status, 0) << server_.log_text();
  // Abandoning a request at the drain deadline may be logged; it is not an error of the test.
  allow_error("drain");
}

TEST_P(LifecycleTest, MaxConnectionsHoldsTheNextConnectionInTheBacklog) {
  ASSERT_TRUE(start_server({"--max-connections", "2"}));
  const std::string get = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n";
  Socket a = Socket::connect(port());
  Socket b = Socket::connect(port());
  for (Socket* s : {&a, &b}) {
    ASSERT_TRUE(s->valid()) << s->error();
    ASSERT_TRUE(s->send_all(get));
    HttpResponse r = s->read_response(3s);
    ASSERT_TRUE(r.ok()) << r.error;
    ASSERT_EQ(r.status, 200);
  }
  // Both are kept alive: a third connection completes in the kernel's backlog but is not
  // served until one of them leaves.
  Socket c = Socket::connect(port());
  ASSERT_TRUE(c.valid()) << c.error();
  ASSERT_TRUE(c.send_all(get));
  HttpResponse early = c.read_response(800ms);
  EXPECT_FALSE(early.ok()) << "a third connection was served with --max-connections 2";
  EXPECT_FALSE(c.has_buffered());
  a.close();
  HttpResponse late = c.read_response(3s);
  ASSERT_TRUE(late.ok()) << "still not served once a slot was free: " << late.error;
  EXPECT_EQ(late.status, 200);
  // The one kept alive still works.
  ASSERT_TRUE(b.send_all(get));
  EXPECT_EQ(b.read_response(3s).status, 200);
}

// A bad flag must fail at once, so a server that starts anyway is cut after 3 s.
ProcessResult run_gearbox(const std::vector<std::string>& args, Millis timeout = 3s) {
  std::vector<std::string> argv{gearbox_binary()};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv, timeout);
}

TEST_P(LifecycleTest, CheckValidatesAndExits) {
  ProcessResult r = run_gearbox(
      {"--backend", GetParam(), "--mode", "echo", "--listen", "127.0.0.1:0", "--check"});
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, 0) << r.err_text();
  for (const auto& line : r.err_lines) {
    EXPECT_FALSE(line.starts_with("gearbox: listening")) << "--check must not serve";
    EXPECT_FALSE(is_error_line(line)) << line;
  }
}

struct BadFlag {
  std::string flag;
  std::string value;
};

TEST_P(LifecycleTest, BadFlagValuesExit2WithOneLineNamingTheFlag) {
  const std::vector<BadFlag> cases = {
      {"--header-timeout", "soon"},   {"--idle-timeout", "5parsecs"},   {"--body-timeout", "fast"},
      {"--send-timeout", "ms"},       {"--drain-timeout", "1x"},        {"--max-body", "lots"},
      {"--max-header", "12q"},        {"--max-headers", "many"},        {"--max-connections", "x1"},
      {"--listen", "not-an-address"}, {"--backend", "no-such-backend"}, {"--mode", "mirror"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.flag + " " + c.value);
    std::vector<std::string> args = {"--backend", GetParam(), "--mode",
                                     "echo",      "--listen", "127.0.0.1:0"};
    args.push_back(c.flag);
    args.push_back(c.value);
    ProcessResult r = run_gearbox(args);
    EXPECT_FALSE(r.timed_out) << "a bad flag value must not start the server";
    EXPECT_EQ(r.status, 2) << r.err_text();
    ASSERT_EQ(r.err_lines.size(), 1u) << r.err_text();
    std::string name = c.flag.substr(2);
    EXPECT_NE(r.err_lines[0].find(name), std::string::npos)
        << "the line does not name " << c.flag << ": " << r.err_lines[0];
    EXPECT_TRUE(r.err_lines[0].starts_with("gearbox: ")) << r.err_lines[0];
  }
}

TEST_P(LifecycleTest, UnknownFlagExits2) {
  ProcessResult r = run_gearbox({"--backend", GetParam(), "--no-such-flag", "1"});
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, 2) << r.err_text();
  EXPECT_NE(r.err_text().find("no-such-flag"), std::string::npos) << r.err_text();
}

}  // namespace
}  // namespace gearbox::test
