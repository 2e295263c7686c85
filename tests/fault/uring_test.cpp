// The uring backend's own cases: a host that forbids io_uring (seccomp) gets a one-line refusal
// with exit status 2 and a --help that says so; --max-connections holds with the ring; N loops
// (--workers) serve together and drain together; idle keep-alive connections sleep and wake.
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "tests/conformance/conformance.hpp"
#include "tests/support/http_client.hpp"
#include "tests/support/server_process.hpp"

namespace gearbox::test {
namespace {

using namespace std::chrono_literals;

bool uring_here() {
  ProcessResult r = run_process({gearbox_binary(), "--backend", "uring", "--check"});
  return r.status == 0;
}

TEST(UringBackend, ForbiddenIoUringIsOneLineAndExit2) {
  ProcessResult r = run_process(
      {GEARBOX_NO_URING_EXEC, gearbox_binary(), "--backend", "uring", "--listen", "127.0.0.1:0"});
  EXPECT_EQ(r.status, 2) << r.err_text();
  ASSERT_EQ(r.err_lines.size(), 1u) << r.err_text();
  EXPECT_NE(r.err_lines[0].find("--backend: backend \"uring\" is not available here"),
            std::string::npos)
      << r.err_lines[0];
  EXPECT_NE(r.err_lines[0].find("io_uring_setup"), std::string::npos) << r.err_lines[0];

  ProcessResult help = run_process({GEARBOX_NO_URING_EXEC, gearbox_binary(), "--help"});
  EXPECT_EQ(help.status, 0);
  EXPECT_NE(help.out.find("(unavailable here: io_uring_setup"), std::string::npos) << help.out;
}

TEST(UringBackend, IsTheDefaultWhereTheHostAllowsElsePool) {
  ServerProcess fallback;
  ASSERT_TRUE(fallback.start(GEARBOX_NO_URING_EXEC, {gearbox_binary(), "--listen", "127.0.0.1:0"}));
  EXPECT_EQ(fallback.backend(), "pool") << fallback.first_line();
  EXPECT_TRUE(fallback.wait_for_log(
      "info: backend pool by default: uring is not available here: io_uring_setup", 2s))
      << fallback.log_text();
  EXPECT_EQ(fallback.stop(), 0) << fallback.log_text();
  if (!uring_here()) {
    GTEST_SKIP() << "io_uring unavailable here";
  }
  ServerProcess server;
  ASSERT_TRUE(server.start(gearbox_binary(), {"--listen", "127.0.0.1:0"}));
  EXPECT_EQ(server.backend(), "uring") << server.first_line();
  EXPECT_TRUE(server.wait_for_log("info: backend uring by default", 2s)) << server.log_text();
  HttpResponse r = exchange(server.port(), "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n");
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(server.stop(), 0) << server.log_text();
}

TEST(UringBackend, WorkersServeTogetherAndDrainTogether) {
  if (!uring_here()) {
    GTEST_SKIP() << "io_uring unavailable here";
  }
  ServerProcess server;
  ASSERT_TRUE(server.start(gearbox_binary(),
                           {"--backend", "uring", "--listen", "127.0.0.1:0", "--workers", "3"}));
  ASSERT_TRUE(server.wait_for_log("uring backend: 3 loops", 2s)) << server.log_text();
  std::vector<Socket> clients;
  for (int i = 0; i < 60; ++i) {
    clients.push_back(Socket::connect(server.port()));
    ASSERT_TRUE(clients.back().send_all("GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"));
  }
  for (Socket& s : clients) {
    HttpResponse r = s.read_response(5s);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.status, 200);
  }
  // Idle keep-alive connections on every loop do not hold the drain up.
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(server.stop(), 0) << server.log_text();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
  for (const std::string& line : server.log_lines()) {
    EXPECT_EQ(line.find("shares the first listener"), std::string::npos) << line;
  }
}

// A uring server with its admin endpoint (and `more` flags): the admin port (0: it did not
// start).
int start_with_admin(ServerProcess& server, std::vector<std::string> more = {}) {
  std::vector<std::string> args{"--backend",   "uring",          "--listen",
                                "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"};
  args.insert(args.end(), more.begin(), more.end());
  if (!server.start(gearbox_binary(), args)) {
    return 0;
  }
  return admin_port(server);
}

// The admin /status page (JSON), and a figure of its (first) loop (-1: not found).
std::string loop_status(int admin) {
  return exchange(admin, "GET /status?format=json HTTP/1.1\r\nHost: a\r\n\r\n").body;
}
long figure(const std::string& status, const std::string& name) {
  const std::string key = "\"" + name + "\":";
  const std::size_t at = status.find(key);
  return at == std::string::npos ? -1 : std::stol(status.substr(at + key.size()));
}
// The loop's count of sleeping connections.
long asleep_count(int admin) {
  return figure(loop_status(admin), "asleep");
}

// An idle keep-alive connection frees its core state (it sleeps) and is woken by its next
// request, which it answers like any other; /status counts the sleepers.
TEST(UringBackend, IdleKeepAliveConnectionsSleepAndWakeToServe) {
  if (!uring_here()) {
    GTEST_SKIP() << "io_uring unavailable here";
  }
  ServerProcess server;
  const int admin = start_with_admin(server);
  ASSERT_GT(admin, 0) << server.log_text();
  constexpr int kClients = 100;
  std::vector<Socket> clients;
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < kClients; ++i) {
      if (round == 0) {
        clients.push_back(Socket::connect(server.port()));
      }
      const std::string body = "round " + std::to_string(round) + " client " + std::to_string(i);
      ASSERT_TRUE(clients[i].send_all("POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: " +
                                      std::to_string(body.size()) + "\r\n\r\n" + body));
      HttpResponse r = clients[i].read_response(5s);
      ASSERT_TRUE(r.ok()) << r.error;
      EXPECT_EQ(r.status, 200);
      EXPECT_EQ(r.body, body);
    }
    // All of them idle now: each is asleep, counted by its loop.
    long asleep = -1;
    for (auto until = std::chrono::steady_clock::now() + 5s;
         asleep != kClients && std::chrono::steady_clock::now() < until;
         std::this_thread::sleep_for(50ms)) {
      asleep = asleep_count(admin);
    }
    EXPECT_EQ(asleep, kClients) << "round " << round;
  }
  // Woken by a request, a sleeper is counted awake again.
  ASSERT_TRUE(clients[0].send_all("GET /delay/300 HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(asleep_count(admin), kClients - 1);
  HttpResponse r = clients[0].read_response(5s);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(server.stop(), 0) << server.log_text();
}

// Under load an idle connection dozes first (its core awake, nothing freed): at most 128 doze at
// once, the one that dozed longest is put to sleep as another joins, and once nobody dozed for
// 50 ms they all sleep. Each is then woken by its next request, whichever way it went to sleep.
TEST(UringBackend, IdleConnectionsDozeAtMost128AtOnceThenSleep) {
  if (!uring_here()) {
    GTEST_SKIP() << "io_uring unavailable here";
  }
  ServerProcess server;
  const int admin = start_with_admin(server);
  ASSERT_GT(admin, 0) << server.log_text();
  constexpr int kClients = 300;
  std::vector<Socket> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Socket::connect(server.port()));
  }
  // One more client keeps asking every 10 ms, so that the loop never goes quiet for 50 ms: only
  // the set's bound puts dozers to sleep meanwhile.
  std::atomic<bool> stop{false};
  std::atomic<int> busy_failures{0};
  std::thread busy([&] {
    Socket s = Socket::connect(server.port());
    while (!stop.load()) {
      if (!s.send_all("GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n")) {
        ++busy_failures;
        return;
      }
      HttpResponse r = s.read_response(5s);
      busy_failures += r.ok() && r.status == 200 ? 0 : 1;
      std::this_thread::sleep_for(10ms);
    }
  });
  // Round 0 is each connection's first request (a connection idle for the first or second time
  // sleeps at once); from round 1 on they doze. Both figures come from one /status answer: 301
  // connections, at most 128 dozing and the busy one perhaps awake.
  bool saw_dozing = false;
  for (int round = 0; round < 3; ++round) {
    for (int i = 0; i < kClients; ++i) {
      ASSERT_TRUE(clients[i].send_all("GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"));
      HttpResponse r = clients[i].read_response(5s);
      ASSERT_TRUE(r.ok()) << r.error;
      EXPECT_EQ(r.body, "Hello, World!");
    }
    const std::string status = loop_status(admin);
    const long dozing = figure(status, "dozing");
    const long asleep = figure(status, "asleep");
    EXPECT_LE(dozing, 128) << "round " << round << ": " << status;
    EXPECT_GE(asleep, kClients - 128) << "round " << round << ": " << status;
    saw_dozing = saw_dozing || (round > 0 && dozing >= 1);
  }
  EXPECT_TRUE(saw_dozing) << "no connection dozed while the loop was busy";
  stop = true;
  busy.join();
  EXPECT_EQ(busy_failures.load(), 0);
  // Quiet now (the busy client is gone): every idle connection sleeps.
  long asleep = -1;
  long dozing = -1;
  for (auto until = std::chrono::steady_clock::now() + 5s;
       (asleep != kClients || dozing != 0) && std::chrono::steady_clock::now() < until;
       std::this_thread::sleep_for(50ms)) {
    const std::string status = loop_status(admin);
    dozing = figure(status, "dozing");
    asleep = figure(status, "asleep");
  }
  EXPECT_EQ(dozing, 0);
  EXPECT_EQ(asleep, kClients);
  for (int i = 0; i < kClients; ++i) {
    ASSERT_TRUE(clients[i].send_all("GET /health HTTP/1.1\r\nHost: t\r\n\r\n"));
    HttpResponse r = clients[i].read_response(5s);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.body, "ok");
  }
  EXPECT_EQ(server.stop(), 0) << server.log_text();
}

// A storm of connections that then idle leaves little memory behind. Each client sends its
// request as it connects, so thousands reach the loop within a few turns and empty its buffer
// ring at once: those receives share a bounded number of spare buffers (one each put 9,000 in
// the heap at once at 10,000 connections), and once the loop went quiet it gives the heap's free
// pages (the states the connections woke with, freed between the frames that stay) and the
// pages of the receive buffers no receive holds back to the system. The same storm left 5 KiB
// of RSS per idle connection at 3,000 connections before, 3.6-4.1 KiB at 10,000 (nginx: 0.5).
TEST(UringBackend, AStormOfConnectionsThatThenIdleLeavesLittleMemoryHeld) {
  if (!uring_here()) {
    GTEST_SKIP() << "io_uring unavailable here";
  }
  constexpr int kClients = 3000;
  raise_fd_limit(kClients + 512);  // the server inherits it
  ServerProcess server;
  const int admin = start_with_admin(server, {"--max-connections", "20000", "--backlog", "4096"});
  ASSERT_GT(admin, 0) << server.log_text();
  // The idle server's RSS, once its first request touched what any request touches.
  {
    Socket s = Socket::connect(server.port());
    ASSERT_TRUE(s.send_all("GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"));
    ASSERT_TRUE(s.read_response(5s).ok());
  }
  std::this_thread::sleep_for(200ms);
  const long before_kib = proc_status(server.pid(), "VmRSS:");
  ASSERT_GT(before_kib, 0);
  std::vector<Socket> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.push_back(Socket::connect(server.port()));
    ASSERT_TRUE(clients.back().send_all("GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n"));
  }
  for (Socket& s : clients) {
    HttpResponse r = s.read_response(10s);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.body, "Hello, World!");
  }
  // All idle now; the loop gives memory back 50 ms after the last one went to sleep.
  long per_connection = -1;
  for (auto until = std::chrono::steady_clock::now() + 5s;
       (per_connection < 0 || per_connection > 1024) && std::chrono::steady_clock::now() < until;
       std::this_thread::sleep_for(100ms)) {
    per_connection = (proc_status(server.pid(), "VmRSS:") - before_kib) * 1024 / kClients;
  }
  EXPECT_LE(per_connection, 1024) << "bytes of RSS per idle connection";
  const std::string status = loop_status(admin);  // the loop says so too
  EXPECT_GE(figure(status, "memory_releases"), 1) << status;
  EXPECT_EQ(figure(status, "receive_waits"), 0) << status;
  // Nor did the storm itself take much more: its high-water mark (5 KiB per connection at 3,000
  // when every receive that found the ring empty took a spare buffer of its own).
  const long peak_per_connection =
      (proc_status(server.pid(), "VmHWM:") - before_kib) * 1024 / kClients;
  EXPECT_LE(peak_per_connection, 3072) << "bytes of peak RSS per connection";
  for (int i = 0; i < kClients; i += 100) {  // they still serve
    ASSERT_TRUE(clients[i].send_all("GET /health HTTP/1.1\r\nHost: t\r\n\r\n"));
    HttpResponse r = clients[i].read_response(5s);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_EQ(r.body, "ok");
  }
  EXPECT_EQ(server.stop(), 0) << server.log_text();
}

}  // namespace
}  // namespace gearbox::test
