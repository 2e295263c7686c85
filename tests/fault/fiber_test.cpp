// The `fiber` backend through real sockets: thousands of concurrent keep-alive connections, a
// fiber parked on a slow client never holds up the other fibers of its thread, and a long /cpu
// request on one scheduler thread leaves the other thread serving (fibers move between threads).
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/conformance/conformance.hpp"

namespace gearbox::test {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

class FiberTest : public ConformanceTest {};
INSTANTIATE_TEST_SUITE_P(Backends, FiberTest, ::testing::Values(std::string("fiber")),
                         backend_test_name);

std::string get(std::string_view path) {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: t\r\n\r\n";
}

long rss_kib(pid_t pid) {
  return proc_status(pid, "VmRSS:");
}

long elapsed_ms(Clock::time_point since) {
  return static_cast<long>(std::chrono::duration_cast<Millis>(Clock::now() - since).count());
}

// Opens `n` keep-alive connections, then runs `rounds` request rounds over all of them at once
// (every request sent before any answer is read). Every answer must be a 200.
void serve_many(int port, int n, int rounds) {
  std::vector<Socket> socks;
  socks.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    socks.push_back(Socket::connect(port, 5s));
    ASSERT_TRUE(socks.back().valid()) << "connection " << i << ": " << socks.back().error();
  }
  for (int round = 0; round < rounds; ++round) {
    for (int i = 0; i < n; ++i) {
      ASSERT_TRUE(socks[i].send_all(get("/plaintext"))) << i << ": " << socks[i].error();
    }
    for (int i = 0; i < n; ++i) {
      HttpResponse r = socks[i].read_response(10s);
      ASSERT_TRUE(r.ok()) << "round " << round << " connection " << i << ": " << r.error;
      ASSERT_EQ(r.status, 200);
      ASSERT_EQ(r.body, "Hello, World!");
    }
  }
}

TEST_P(FiberTest, TenThousandKeepAliveConnectionsGetNoErrors) {
  constexpr int kConns = 10'000;
  raise_fd_limit(kConns + 512);  // the server inherits it
  ASSERT_TRUE(start_server({"--threads", "2", "--backlog", "4096"}));
  auto start = Clock::now();
  serve_many(port(), kConns, 2);
  std::printf("fiber: %d keep-alive connections x 2 rounds in %ld ms, server RSS %ld KiB\n", kConns,
              elapsed_ms(start), rss_kib(server_.pid()));
}

// Fiber stacks of `size` bytes with a PROT_NONE page just below (/proc/<pid>/maps): how many.
int guarded_stacks(pid_t pid, unsigned long size) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  unsigned long guard_end = 0;
  int count = 0;
  while (std::getline(in, line)) {
    unsigned long start = 0;
    unsigned long end = 0;
    char perms[8] = {};
    if (std::sscanf(line.c_str(), "%lx-%lx %7s", &start, &end, perms) != 3) {
      continue;
    }
    if (std::string(perms) == "rw-p" && end - start == size && start == guard_end) {
      ++count;
    }
    guard_end = std::string(perms) == "---p" && end - start == 4096 ? end : 0;
  }
  return count;
}

TEST_P(FiberTest, IdleKeepAliveConnectionCostsLittleMemory) {
  constexpr int kConns = 1000;
  raise_fd_limit(kConns + 512);
  ASSERT_TRUE(start_server({"--threads", "2", "--fiber-stack", "96k"}));
  // One request first: the scheduler threads, the pools and the first stacks exist.
  serve_many(port(), 1, 1);
  long before = rss_kib(server_.pid());
  std::vector<Socket> socks;
  for (int i = 0; i < kConns; ++i) {
    socks.push_back(Socket::connect(port(), 5s));
    ASSERT_TRUE(socks.back().valid()) << socks.back().error();
    ASSERT_TRUE(socks.back().send_all(get("/plaintext")));
  }
  for (Socket& s : socks) {
    HttpResponse r = s.read_response(10s);
    ASSERT_TRUE(r.ok()) << r.error;
  }
  // Every connection is now idle between requests: its fiber parked, its stack touched once.
  long after = rss_kib(server_.pid());
  double per_conn = static_cast<double>(after - before) / kConns;
  std::printf("fiber: RSS %ld KiB -> %ld KiB with %d idle keep-alive connections: %.1f KiB each\n",
              before, after, kConns, per_conn);
  // A 96 KiB stack fully touched, or one allocated per request, would be far above this.
  EXPECT_LT(per_conn, 32.0);
  // One stack of --fiber-stack per connection, each with its guard page.
  EXPECT_GE(guarded_stacks(server_.pid(), 96 * 1024), kConns);
}

// One client pipelines thousands of requests and never reads: its fiber fills the socket and
// parks on the write. With one scheduler thread, every other connection is still answered
// promptly; and the slow client's own answers are all there once it reads.
TEST_P(FiberTest, FiberBlockedOnSlowClientNeverDelaysAnotherOnTheSameThread) {
  ASSERT_TRUE(start_server({"--threads", "1"}));
  Socket slow = Socket::connect(port());
  ASSERT_TRUE(slow.valid());
  int small = 4096;  // the answers must not all fit in the socket buffers
  ::setsockopt(slow.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  std::string pipeline;
  constexpr int kPipelined = 40'000;  // ~5 MB of answers: more than both socket buffers hold
  for (int i = 0; i < kPipelined; ++i) {
    pipeline += get("/plaintext");
  }
  // The server stops reading once its writes block, so this send stalls too: bounded.
  slow.send_all(pipeline, 2s);

  constexpr int kFast = 20;
  constexpr int kEach = 10;
  long worst = 0;
  std::vector<Socket> fast;
  for (int i = 0; i < kFast; ++i) {
    fast.push_back(Socket::connect(port()));
    ASSERT_TRUE(fast.back().valid());
  }
  for (int round = 0; round < kEach; ++round) {
    for (Socket& s : fast) {
      auto start = Clock::now();
      ASSERT_TRUE(s.send_all(get("/plaintext")));
      HttpResponse r = s.read_response(5s);
      ASSERT_TRUE(r.ok()) << "a fast client waited behind the slow one: " << r.error;
      ASSERT_EQ(r.status, 200);
      worst = std::max(worst, elapsed_ms(start));
    }
  }
  // Blocking the thread would stall them until --send-timeout (60 s); the bound leaves room for
  // a loaded machine.
  EXPECT_LT(worst, 2500) << "worst fast answer took " << worst << " ms";
  // The slow client's connection was parked, not dropped: its answers start arriving.
  HttpResponse first = slow.read_response(3s);
  ASSERT_TRUE(first.ok()) << first.error;
  EXPECT_EQ(first.status, 200);
  std::printf("fiber: worst of %d answers beside a blocked writer: %ld ms\n", kFast * kEach, worst);
}

// True when bytes (or EOF) wait on `s`, without consuming them.
bool readable(const Socket& s) {
  pollfd p{s.fd(), POLLIN, 0};
  return ::poll(&p, 1, 0) > 0;
}

// A /cpu request occupies one of two scheduler threads for 1.5 s of CPU time (longer on a busy
// machine). Meanwhile a connection kept alive from before, a new connection and a /delay timer
// are all served by the other thread.
TEST_P(FiberTest, CpuOnOneThreadDoesNotStopTheOther) {
  ASSERT_TRUE(start_server({"--threads", "2"}));
  Socket kept = Socket::connect(port());
  ASSERT_TRUE(kept.valid());
  ASSERT_TRUE(kept.send_all(get("/plaintext")));
  ASSERT_TRUE(kept.read_response().ok());

  Socket busy = Socket::connect(port());
  ASSERT_TRUE(busy.valid());
  ASSERT_TRUE(busy.send_all(get("/cpu/1500")));
  std::this_thread::sleep_for(200ms);  // the /cpu fiber is burning its thread now

  for (int i = 0; i < 5; ++i) {
    auto start = Clock::now();
    ASSERT_TRUE(kept.send_all(get("/plaintext")));
    HttpResponse r = kept.read_response(5s);
    ASSERT_TRUE(r.ok()) << r.error;
    EXPECT_LT(elapsed_ms(start), 500) << "kept-alive connection waited for the /cpu thread";

    start = Clock::now();
    HttpResponse n = exchange(port(), get("/plaintext"), 5s);
    ASSERT_TRUE(n.ok()) << n.error;
    EXPECT_LT(elapsed_ms(start), 500) << "new connection waited for the /cpu thread";

    start = Clock::now();
    HttpResponse d = exchange(port(), get("/delay/20"), 5s);
    ASSERT_TRUE(d.ok()) << d.error;
    EXPECT_LT(elapsed_ms(start), 500) << "/delay/20 waited for the /cpu thread";
  }
  EXPECT_FALSE(readable(busy)) << "/cpu ended before the checks did: they prove nothing";
  // /cpu counts thread CPU time: under a loaded machine its wall time stretches.
  HttpResponse r = busy.read_response(60s);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
}

}  // namespace
}  // namespace gearbox::test
