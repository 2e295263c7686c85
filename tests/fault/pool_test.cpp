// The `pool` backend under load through real sockets: thousands of idle keep-alive connections
// cost no threads, /cpu spreads over a fixed pool, and a full dispatch queue stops accepting
// (new clients wait in the listen backlog) instead of failing requests.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/conformance/conformance.hpp"

namespace gearbox::test {
namespace {

using Clock = std::chrono::steady_clock;

class PoolTest : public ConformanceTest {};
INSTANTIATE_TEST_SUITE_P(Backends, PoolTest, ::testing::Values(std::string("pool")),
                         backend_test_name);

int thread_count(pid_t pid) {
  return static_cast<int>(proc_status(pid, "Threads:"));
}

// The reactor (main thread), main's reload thread (SIGHUP) and `workers`, once the backend has
// started them.
constexpr int kMainThreads = 2;
int settled_thread_count(pid_t pid, int workers) {
  int n = thread_count(pid);
  for (int i = 0; i < 200 && n != kMainThreads + workers; ++i) {
    std::this_thread::sleep_for(Millis{10});
    n = thread_count(pid);
  }
  return n;
}

std::string get(std::string_view path) {
  return "GET " + std::string(path) + " HTTP/1.1\r\nHost: t\r\n\r\n";
}

TEST_P(PoolTest, TwoThousandKeepAliveConnectionsAreAllServedByAFixedPool) {
  constexpr int kConns = 2000;
  raise_fd_limit(2 * kConns + 256);  // the server inherits it
  ASSERT_TRUE(start_server({"--threads", "2"}));
  const int idle_threads = settled_thread_count(server_.pid(), 2);
  ASSERT_EQ(idle_threads, kMainThreads + 2);

  std::vector<Socket> socks;
  socks.reserve(kConns);
  for (int i = 0; i < kConns; ++i) {
    socks.push_back(Socket::connect(port(), Millis{5000}));
    ASSERT_TRUE(socks.back().valid()) << "connection " << i << ": " << socks.back().error();
  }
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < kConns; ++i) {
      ASSERT_TRUE(socks[i].send_all(get("/plaintext"))) << i << ": " << socks[i].error();
    }
    for (int i = 0; i < kConns; ++i) {
      HttpResponse r = socks[i].read_response(Millis{10'000});
      ASSERT_TRUE(r.ok()) << "round " << round << " connection " << i << ": " << r.error;
      ASSERT_EQ(r.status, 200);
      ASSERT_EQ(r.body, "Hello, World!");
    }
    // Every connection is now idle and kept alive: none of them holds a thread.
    EXPECT_EQ(thread_count(server_.pid()), idle_threads) << "round " << round;
  }
}

// Nanoseconds each thread of `pid` but the main one (and main's reload thread) has spent on a CPU
// and waiting for one (fields 1 and 2 of /proc/PID/task/TID/schedstat), by thread id.
struct ThreadTimes {
  double on_cpu_ms = 0;
  double runnable_ms = 0;  // on a CPU or waiting in the run queue
};
std::map<pid_t, ThreadTimes> worker_times(pid_t pid) {
  std::map<pid_t, ThreadTimes> out;
  for (const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    pid_t tid = static_cast<pid_t>(std::stol(e.path().filename().string()));
    std::ifstream in(e.path() / "schedstat");
    std::ifstream comm(e.path() / "comm");
    std::string name;
    std::getline(comm, name);
    double run_ns = 0;
    double wait_ns = 0;
    if (tid != pid && name != "gearbox-reload" && in >> run_ns >> wait_ns) {
      out[tid] = ThreadTimes{run_ns / 1e6, (run_ns + wait_ns) / 1e6};
    }
  }
  return out;
}

TEST_P(PoolTest, CpuRequestsSpreadOverTwoWorkers) {
  constexpr int kRequests = 20;
  ASSERT_TRUE(start_server({"--threads", "2"}));
  const int idle_threads = settled_thread_count(server_.pid(), 2);
  ASSERT_EQ(idle_threads, kMainThreads + 2);
  const std::map<pid_t, ThreadTimes> before = worker_times(server_.pid());
  ASSERT_EQ(before.size(), 2u);
  std::atomic<int> ok{0};
  std::atomic<int> max_threads{0};
  std::atomic<bool> running{true};
  std::thread sampler([&] {
    while (running.load()) {
      max_threads = std::max(max_threads.load(), thread_count(server_.pid()));
      std::this_thread::sleep_for(Millis{5});
    }
  });
  auto start = Clock::now();
  std::vector<std::thread> clients;
  for (int i = 0; i < kRequests; ++i) {
    clients.emplace_back([&] {
      HttpResponse r = exchange(port(), get("/cpu/50"), Millis{20'000});
      if (r.ok() && r.status == 200) {
        ++ok;
      }
    });
  }
  for (std::thread& t : clients) {
    t.join();
  }
  const double wall = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  running = false;
  sampler.join();
  const std::map<pid_t, ThreadTimes> after = worker_times(server_.pid());
  EXPECT_EQ(ok.load(), kRequests);
  EXPECT_EQ(max_threads.load(), idle_threads) << "the pool must not grow under load";
  // 20 x 50 ms of CPU over 2 workers: at least ~500 ms whatever the cores.
  EXPECT_GE(wall, kRequests * 50 / 2 - 50);

  // Both workers burnt a fair share of the CPU time...
  double on_cpu[2] = {0, 0};
  double runnable_sum = 0;
  int i = 0;
  for (const auto& [tid, t] : after) {
    ASSERT_EQ(before.count(tid), 1u) << "a worker thread was replaced";
    on_cpu[i++] = t.on_cpu_ms - before.at(tid).on_cpu_ms;
    runnable_sum += t.runnable_ms - before.at(tid).runnable_ms;
  }
  const double total = on_cpu[0] + on_cpu[1];
  std::printf(
      "pool: %d concurrent /cpu/50 with --threads 2: %.0f ms wall, workers on CPU %.0f + %.0f "
      "ms, runnable %.0f ms in all\n",
      kRequests, wall, on_cpu[0], on_cpu[1], runnable_sum);
  EXPECT_GT(std::min(on_cpu[0], on_cpu[1]), 0.3 * total) << "one worker did most of the work";
  // ...and at the same time: upper bound on the wall time. Were the workers ever runnable one
  // at a time (one doing everything, or a lock serialising them), the wall time would be the
  // sum of their runnable times; run side by side it is about half of it. Time spent waiting
  // for a CPU counts as runnable, so a loaded machine (or one CPU) does not move the ratio.
  EXPECT_LT(wall, 0.75 * runnable_sum) << "the two workers did not run side by side";
}

TEST_P(PoolTest, FullQueueStopsAcceptingAndServesEveryoneInTurn) {
  // One worker and a queue of kQueuePerThread (4): one /cpu request running, four queued, the
  // rest ready but unqueued, so the reactor stops watching the listener.
  constexpr int kBusy = 8;
  constexpr int kLate = 3;
  ASSERT_TRUE(start_server({"--threads", "1"}));
  std::vector<Socket> socks;
  for (int i = 0; i < kBusy; ++i) {
    socks.push_back(Socket::connect(port()));
    ASSERT_TRUE(socks.back().valid()) << socks.back().error();
    ASSERT_TRUE(socks.back().send_all(get("/cpu/150")));
  }
  std::this_thread::sleep_for(Millis{50});
  for (int i = 0; i < kLate; ++i) {
    socks.push_back(Socket::connect(port()));  // completes in the kernel's listen backlog
    ASSERT_TRUE(socks.back().valid()) << socks.back().error();
    ASSERT_TRUE(socks.back().send_all(get("/plaintext")));
  }
  int backlog = -1;
  for (int i = 0; i < 20 && backlog < kLate; ++i) {
    std::this_thread::sleep_for(Millis{10});
    backlog = listen_queue(port());
  }
  EXPECT_GE(backlog, kLate) << "late connections should wait unaccepted while the queue is full";

  for (std::size_t i = 0; i < socks.size(); ++i) {
    HttpResponse r = socks[i].read_response(Millis{10'000});
    ASSERT_TRUE(r.ok()) << "connection " << i << ": " << r.error;
    EXPECT_EQ(r.status, 200) << "connection " << i;
  }
  EXPECT_EQ(listen_queue(port()), 0) << "accepting again once the queue drained";
  HttpResponse r = exchange(port(), get("/plaintext"));
  EXPECT_EQ(r.status, 200) << r.error;
}

}  // namespace
}  // namespace gearbox::test
