// Running out of file descriptors, over every backend: accept(2) fails with EMFILE while
// connections wait in the backlog. The process that accepts (the server; prefork's worker) must
// not spin on the ready listener (nginx pauses accepting), and must serve the waiting
// connections once descriptors are free again.
#include <gtest/gtest.h>
#include <sys/resource.h>

#include <chrono>
#include <filesystem>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "tests/conformance/conformance.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/server_process.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;

// The lowest descriptor number `pid` does not use: the one its next accept(2) would get.
int lowest_free_fd(pid_t pid) {
  std::set<int> used;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/fd")) {
    used.insert(std::stoi(e.path().filename().string()));
  }
  int fd = 0;
  while (used.count(fd) != 0) {
    ++fd;
  }
  return fd;
}

// Waits while out of descriptors: the server must log the accept failure and then burn
// (almost) no CPU.
void expect_no_spin(const ServerProcess& server) {
  ASSERT_TRUE(server.wait_for_log("accept", 3s)) << server.log_text();
  const Millis cpu_before = server.cpu_time();
  std::this_thread::sleep_for(1500ms);
  const Millis burnt = server.cpu_time() - cpu_before;
  EXPECT_LT(burnt.count(), 300) << "the server spun while out of descriptors";
}

// One warning per streak of failures, not one per retry (a retry every pause would log a dozen
// or more here). Freeing descriptors can end a streak and start another while the backlog
// drains: up to three streaks, depending on how the closes and accepts interleave.
void expect_one_warning(const ServerProcess& server) {
  int warnings = 0;
  for (const std::string& line : server.log_lines()) {
    warnings += line.find("accept") != std::string::npos ? 1 : 0;
  }
  EXPECT_LE(warnings, 3) << server.log_text();
}

// One process holds every connection (thread, pool, uring): under a low limit from the start,
// the clients' connections take the descriptors left.
void exhaust_by_clients(const std::string& backend) {
  ServerProcess server;
  // prlimit sets the limit, then execs gearbox in the same process. (Lowering it later would
  // not do: io_uring reads the limit when an accept is armed.)
  ASSERT_TRUE(
      server.start("/usr/bin/prlimit", {"--nofile=40:40", gearbox_binary(), "--backend", backend,
                                        "--listen", "127.0.0.1:0", "--log-level", "warn"}));
  // More connections than descriptors: some are accepted, the rest wait in the backlog.
  std::vector<Socket> clients;
  for (int i = 0; i < 60; ++i) {
    Socket s = Socket::connect(server.port());
    ASSERT_TRUE(s.valid()) << s.error();
    ASSERT_TRUE(s.send_all("GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"));
    clients.push_back(std::move(s));
  }
  expect_no_spin(server);
  // Free descriptors: the first 45 clients (every accepted one among them: the server's own
  // descriptors leave it fewer than 40 for clients) read their answer if any and leave.
  int answered = 0;
  for (int i = 0; i < 45; ++i) {
    HttpResponse r = clients[i].read_response(200ms);
    answered += r.ok() && r.status == 200 ? 1 : 0;
    clients[i].close();
  }
  EXPECT_GT(answered, 0);
  // Every remaining connection is served now.
  for (int i = 45; i < 60; ++i) {
    HttpResponse r = clients[i].read_response(5s);
    ASSERT_TRUE(r.ok()) << "client " << i << ": " << r.error;
    EXPECT_EQ(r.status, 200);
  }
  expect_one_warning(server);
  EXPECT_EQ(server.stop(), 0) << server.log_text();
}

// A prefork worker holds one connection at a time, so clients cannot exhaust its descriptors:
// its limit is lowered instead, to its next free descriptor, and every accept(2) gets EMFILE.
void exhaust_prefork_worker() {
  ServerProcess server;
  ASSERT_TRUE(server.start(
      gearbox_binary(), {"--backend", "prefork", "--listen", "127.0.0.1:0", "--log-level", "warn",
                         "--workers", "1", "--min-spare", "1", "--max-spare", "1"}));
  ASSERT_EQ(exchange(server.port(), "GET /health HTTP/1.1\r\nHost: t\r\n\r\n").status, 200);
  std::vector<pid_t> workers = server.children();
  ASSERT_EQ(workers.size(), 1u);
  const pid_t worker = workers[0];
  // Once the worker has closed the served connection too.
  int next_fd = -1;
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(20ms);
    int now = lowest_free_fd(worker);
    if (now == next_fd) {
      break;
    }
    next_fd = now;
  }
  rlimit old{};
  ASSERT_EQ(::prlimit(worker, RLIMIT_NOFILE, nullptr, &old), 0);
  rlimit tight{static_cast<rlim_t>(next_fd), old.rlim_max};
  ASSERT_EQ(::prlimit(worker, RLIMIT_NOFILE, &tight, nullptr), 0);

  std::vector<Socket> clients;
  for (int i = 0; i < 8; ++i) {
    Socket s = Socket::connect(server.port());  // completes in the listen backlog
    ASSERT_TRUE(s.valid()) << s.error();
    // Connection: close, so that the one worker serves them one after the other.
    ASSERT_TRUE(s.send_all("GET /plaintext HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"));
    clients.push_back(std::move(s));
  }
  expect_no_spin(server);
  EXPECT_FALSE(clients[0].has_buffered());

  ASSERT_EQ(::prlimit(worker, RLIMIT_NOFILE, &old, nullptr), 0);
  for (std::size_t i = 0; i < clients.size(); ++i) {
    HttpResponse r = clients[i].read_response(5s);
    ASSERT_TRUE(r.ok()) << "client " << i << ": " << r.error << "\nlog:\n" << server.log_text();
    EXPECT_EQ(r.status, 200);
    clients[i].close();  // ends the lingering close that keeps the one worker
  }
  expect_one_warning(server);
  EXPECT_EQ(server.stop(), 0) << server.log_text();
}

class AcceptLimitTest : public ::testing::TestWithParam<std::string> {};

TEST_P(AcceptLimitTest, OutOfDescriptorsDoesNotSpinAndRecovers) {
  if (GetParam() == "prefork") {
    exhaust_prefork_worker();
  } else {
    exhaust_by_clients(GetParam());
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, AcceptLimitTest, ::testing::ValuesIn(conformance_backends()),
                         backend_test_name);

}  // namespace
}  // namespace gearbox::test
