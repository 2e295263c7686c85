// Fault tolerance of the prefork backend through real sockets and /proc: a worker killed (idle
// or mid-request) is replaced while the server keeps answering, SIGTERM and SIGKILL to the
// master leave no worker behind, workers are forked on demand, and --reuseport listens per worker.
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "tests/conformance/conformance.hpp"
#include "tests/fault/drain.hpp"

namespace gearbox::test {
namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// Field 3 (state) and field 4 (ppid) of /proc/<pid>/stat; false when the process is gone.
bool read_stat(pid_t pid, char* state, pid_t* ppid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::size_t paren = text.rfind(')');
  if (paren == std::string::npos) {
    return false;
  }
  std::istringstream rest(text.substr(paren + 1));
  long parent = 0;
  rest >> *state >> parent;
  *ppid = static_cast<pid_t>(parent);
  return !rest.fail();
}

// Live (not zombie) children of `parent`, from a scan of /proc.
std::set<pid_t> children_of(pid_t parent) {
  std::set<pid_t> kids;
  DIR* dir = ::opendir("/proc");
  if (dir == nullptr) {
    return kids;
  }
  while (dirent* e = ::readdir(dir)) {
    pid_t pid = static_cast<pid_t>(std::atol(e->d_name));
    char state = 0;
    pid_t ppid = 0;
    if (pid > 0 && read_stat(pid, &state, &ppid) && ppid == parent && state != 'Z') {
      kids.insert(pid);
    }
  }
  ::closedir(dir);
  return kids;
}

// Exited: no /proc entry, or a zombie nobody has reaped yet.
bool exited(pid_t pid) {
  char state = 0;
  pid_t ppid = 0;
  return !read_stat(pid, &state, &ppid) || state == 'Z';
}

template <class Pred>
bool wait_until(Pred pred, Millis timeout) {
  auto deadline = Clock::now() + timeout;
  while (!pred()) {
    if (Clock::now() >= deadline) {
      return false;
    }
    std::this_thread::sleep_for(10ms);
  }
  return true;
}

// Inode of the IPv4 TCP socket 127.0.0.1:local_port <-> 127.0.0.1:remote_port in
// /proc/net/tcp, or empty.
std::string socket_inode(int local_port, int remote_port, int want_state = 0) {
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);
  while (std::getline(in, line)) {
    std::istringstream fields(line);
    std::string slot, local, remote, state, queues, timer, retr, uid, timeout, inode;
    fields >> slot >> local >> remote >> state >> queues >> timer >> retr >> uid >> timeout >>
        inode;
    int lport = std::stoi(local.substr(local.find(':') + 1), nullptr, 16);
    int rport = std::stoi(remote.substr(remote.find(':') + 1), nullptr, 16);
    if (lport == local_port && rport == remote_port &&
        (want_state == 0 || std::stoi(state, nullptr, 16) == want_state)) {
      return inode;
    }
  }
  return {};
}

// Socket inodes held open by `pid`.
std::set<std::string> socket_inodes_of(pid_t pid) {
  std::set<std::string> inodes;
  std::string dir_path = "/proc/" + std::to_string(pid) + "/fd";
  DIR* dir = ::opendir(dir_path.c_str());
  if (dir == nullptr) {
    return inodes;
  }
  while (dirent* e = ::readdir(dir)) {
    char target[128];
    ssize_t n = ::readlink((dir_path + "/" + e->d_name).c_str(), target, sizeof target - 1);
    if (n > 0) {
      std::string link(target, static_cast<std::size_t>(n));
      if (link.rfind("socket:[", 0) == 0) {
        inodes.insert(link.substr(8, link.size() - 9));
      }
    }
  }
  ::closedir(dir);
  return inodes;
}

int local_port_of(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

// The worker holding the server side of the client socket `client_fd`; -1 when none does.
pid_t worker_serving(const std::set<pid_t>& workers, int server_port, int client_fd) {
  std::string inode = socket_inode(server_port, local_port_of(client_fd));
  if (inode.empty()) {
    return -1;
  }
  for (pid_t pid : workers) {
    if (socket_inodes_of(pid).count(inode) != 0) {
      return pid;
    }
  }
  return -1;
}

class PreforkFaultTest : public ConformanceTest {
 protected:
  // Waits until the master has had exactly `n` live workers for 300 ms (a tick or two, so that
  // no fork is still due); returns them (empty on timeout).
  std::set<pid_t> settle_at(std::size_t n, Millis timeout = 3s) {
    std::set<pid_t> kids;
    auto since = Clock::now();
    bool ok = wait_until(
        [&] {
          std::set<pid_t> now = children_of(server_.pid());
          if (now != kids || now.size() != n) {
            kids = now;
            since = Clock::now();
            return false;
          }
          return Clock::now() - since >= 300ms;
        },
        timeout);
    EXPECT_TRUE(ok) << "expected " << n << " workers, have " << kids.size() << "; log:\n"
                    << server_.log_text();
    return ok ? kids : std::set<pid_t>{};
  }

  void expect_serving(int count) {
    for (int i = 0; i < count; ++i) {
      HttpResponse r = exchange(port(), "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n", 3s);
      ASSERT_TRUE(r.ok()) << r.error << "\nlog:\n" << server_.log_text();
      EXPECT_EQ(r.status, 200);
      EXPECT_EQ(r.body, "Hello, World!");
    }
  }
};

INSTANTIATE_TEST_SUITE_P(Prefork, PreforkFaultTest, ::testing::Values(std::string("prefork")),
                         backend_test_name);

// Default spares: 5 idle workers at rest; one busy connection makes the master fork a sixth.
constexpr std::size_t kIdleAtRest = 5;

TEST_P(PreforkFaultTest, KilledIdleWorkerIsReplacedWhileAnotherServes) {
  ASSERT_TRUE(start_server());
  settle_at(kIdleAtRest);
  Socket busy = Socket::connect(port());
  ASSERT_TRUE(busy.valid()) << busy.error();
  auto sent = Clock::now();
  ASSERT_TRUE(busy.send_all("GET /delay/2000 HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::set<pid_t> before = settle_at(kIdleAtRest + 1);
  ASSERT_FALSE(before.empty());
  pid_t serving = worker_serving(before, port(), busy.fd());
  ASSERT_GT(serving, 0) << "no worker holds the busy connection";
  pid_t victim = *std::find_if(before.begin(), before.end(), [&](pid_t p) { return p != serving; });

  ASSERT_EQ(::kill(victim, SIGKILL), 0);
  auto killed = Clock::now();
  std::set<pid_t> after;
  bool replaced = wait_until(
      [&] {
        after = children_of(server_.pid());
        return after.count(victim) == 0 && after.size() == before.size();
      },
      1500ms);
  EXPECT_TRUE(replaced) << "no replacement within 1.5 s; workers now " << after.size();
  std::cout << "[ info ] replacement after "
            << std::chrono::duration_cast<Millis>(Clock::now() - killed).count() << " ms\n";
  EXPECT_EQ(after.count(serving), 1u);
  expect_serving(5);

  HttpResponse r = busy.read_response(4s);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  EXPECT_GE(Clock::now() - sent, 2000ms);
  EXPECT_TRUE(server_.wait_for_log("worker " + std::to_string(victim) + " killed by signal 9", 1s))
      << server_.log_text();
}

TEST_P(PreforkFaultTest, WorkerKilledMidRequestDoesNotTakeTheServerDown) {
  ASSERT_TRUE(start_server());
  settle_at(kIdleAtRest);
  Socket busy = Socket::connect(port());
  ASSERT_TRUE(busy.valid()) << busy.error();
  ASSERT_TRUE(busy.send_all("GET /delay/2000 HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::set<pid_t> before = settle_at(kIdleAtRest + 1);
  pid_t serving = worker_serving(before, port(), busy.fd());
  ASSERT_GT(serving, 0);
  ASSERT_EQ(::kill(serving, SIGKILL), 0);
  CloseResult closed = busy.wait_for_close(2s);
  EXPECT_TRUE(closed.closed) << "the killed worker's connection stayed open";
  EXPECT_TRUE(closed.extra.empty());
  expect_serving(5);
  EXPECT_TRUE(wait_until([&] { return children_of(server_.pid()).size() == kIdleAtRest; }, 1500ms));
}

TEST_P(PreforkFaultTest, SigtermToMasterLeavesNoWorker) {
  ASSERT_TRUE(start_server({"--drain-timeout", "3s"}));
  settle_at(kIdleAtRest);
  Socket busy = Socket::connect(port());
  ASSERT_TRUE(busy.valid()) << busy.error();
  ASSERT_TRUE(busy.send_all("GET /delay/500 HTTP/1.1\r\nHost: t\r\n\r\n"));
  std::set<pid_t> workers = settle_at(kIdleAtRest + 1);
  ASSERT_FALSE(workers.empty());
  server_.send_signal(SIGTERM);
  HttpResponse r = busy.read_response(3s);
  ASSERT_TRUE(r.ok()) << r.error;
  EXPECT_EQ(r.status, 200);
  auto status = server_.wait_exit(5s);
  ASSERT_TRUE(status.has_value()) << server_.log_text();
  EXPECT_EQ(*status, 0);
  for (pid_t pid : workers) {
    EXPECT_TRUE(exited(pid)) << "worker " << pid << " outlived the master";
  }
}

TEST_P(PreforkFaultTest, SigkillToMasterWorkersExitByThemselves) {
  ASSERT_TRUE(start_server());
  std::set<pid_t> workers = settle_at(kIdleAtRest);
  ASSERT_FALSE(workers.empty());
  server_.send_signal(SIGKILL);
  auto status = server_.wait_exit(2s);
  ASSERT_TRUE(status.has_value());
  EXPECT_EQ(*status, -SIGKILL);
  bool all_gone =
      wait_until([&] { return std::all_of(workers.begin(), workers.end(), exited); }, 2s);
  EXPECT_TRUE(all_gone) << "workers still running 2 s after the master was killed";
}

TEST_P(PreforkFaultTest, ConcurrentDelaysForkWorkersOnDemand) {
  ASSERT_TRUE(start_server());
  settle_at(kIdleAtRest);
  constexpr int kClients = 50;
  std::atomic<int> ok{0};
  std::atomic<bool> running{true};
  std::size_t peak = 0;
  std::thread watcher([&] {
    while (running.load()) {
      peak = std::max(peak, children_of(server_.pid()).size());
      std::this_thread::sleep_for(20ms);
    }
  });
  auto start = Clock::now();
  std::vector<std::thread> clients;
  for (int i = 0; i < kClients; ++i) {
    clients.emplace_back([&] {
      HttpResponse r = exchange(port(), "GET /delay/200 HTTP/1.1\r\nHost: t\r\n\r\n", 10s);
      if (r.ok() && r.status == 200) {
        ok.fetch_add(1);
      }
    });
  }
  for (auto& t : clients) {
    t.join();
  }
  auto wall = std::chrono::duration_cast<Millis>(Clock::now() - start);
  running.store(false);
  watcher.join();
  std::cout << "[ info ] " << kClients << " x /delay/200 in " << wall.count()
            << " ms, peak workers " << peak << "\n";
  EXPECT_EQ(ok.load(), kClients);
  // With only the 5 spare workers this would take 10 rounds of 200 ms.
  EXPECT_GE(peak, 15u) << "the master did not fork workers for the load";
  EXPECT_LT(wall, 2000ms);
}

TEST_P(PreforkFaultTest, ReuseportGivesEachWorkerItsOwnListener) {
  ASSERT_TRUE(start_server({"--reuseport"}));
  std::set<pid_t> workers = settle_at(kIdleAtRest);
  ASSERT_FALSE(workers.empty());
  expect_serving(20);
  std::set<std::string> all_listening;
  {
    std::ifstream in("/proc/net/tcp");
    std::string line;
    std::getline(in, line);
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string slot, local, remote, state, q, t, r, uid, to, inode;
      f >> slot >> local >> remote >> state >> q >> t >> r >> uid >> to >> inode;
      if (std::stoi(local.substr(local.find(':') + 1), nullptr, 16) == port() && state == "0A") {
        all_listening.insert(inode);
      }
    }
  }
  EXPECT_EQ(all_listening.size(), workers.size()) << "one SO_REUSEPORT listener per worker";
  for (pid_t pid : workers) {
    std::set<std::string> mine = socket_inodes_of(pid);
    std::size_t held = 0;
    for (const std::string& inode : all_listening) {
      held += mine.count(inode);
    }
    EXPECT_EQ(held, 1u) << "worker " << pid << " should hold exactly its own listener";
  }
  EXPECT_EQ(socket_inodes_of(server_.pid()).size(), 0u) << "the master keeps no listener";
}

// With --reuseport a client the kernel queued on a worker's own listener can be taken by that
// worker only. A worker holding a keep-alive connection must not leave it there: the next
// response on its connection says Connection: close, and the worker then serves the queued one.
TEST_P(PreforkFaultTest, ReuseportWorkerClosesItsKeepAliveConnectionForAQueuedClient) {
  ASSERT_TRUE(start_server({"--reuseport", "--workers", "1"}));
  const std::string get = "GET /plaintext HTTP/1.1\r\nHost: t\r\n\r\n";
  Socket held = Socket::connect(port());
  ASSERT_TRUE(held.send_all(get));
  HttpResponse first = held.read_response(3s);
  ASSERT_TRUE(first.ok()) << first.error;
  EXPECT_FALSE(first.has_connection_token("close")) << "nobody waits yet: kept alive";
  Socket queued = Socket::connect(port());  // completes in the one worker's own accept queue
  ASSERT_TRUE(queued.valid()) << queued.error();
  ASSERT_TRUE(queued.send_all(get));
  EXPECT_FALSE(queued.read_response(300ms).ok()) << "one worker, busy: the client waits";
  ASSERT_TRUE(held.send_all(get));
  HttpResponse second = held.read_response(3s);
  ASSERT_TRUE(second.ok()) << second.error;
  EXPECT_TRUE(second.has_connection_token("close")) << second.raw_head;
  EXPECT_TRUE(held.wait_for_close(3s).closed);
  HttpResponse served = queued.read_response(3s);
  ASSERT_TRUE(served.ok()) << "the queued client was never served: " << served.error;
  EXPECT_EQ(served.status, 200);
}

TEST_P(PreforkFaultTest, ReuseportListenersAreRefusedDuringDrain) {
  // Each worker owns its listener here: the busy one must stop it at once too.
  ASSERT_TRUE(start_server({"--reuseport", "--drain-timeout", "5s"}));
  settle_at(kIdleAtRest);
  expect_new_connections_refused_during_drain(server_);
}

TEST_P(PreforkFaultTest, SigtermToOneWorkerLeavesTheListenerServing) {
  // A worker drains alone: the listener it shares with the others must keep listening.
  ASSERT_TRUE(start_server());
  std::set<pid_t> workers = settle_at(kIdleAtRest);
  ASSERT_FALSE(workers.empty());
  pid_t one = *workers.begin();
  ASSERT_EQ(::kill(one, SIGTERM), 0);
  EXPECT_TRUE(wait_until([&] { return exited(one); }, 2s)) << "worker " << one << " did not exit";
  expect_serving(10);
}

}  // namespace
}  // namespace gearbox::test
