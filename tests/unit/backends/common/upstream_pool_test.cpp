// UpstreamPool: LIFO reuse per endpoint, idle timeout, the per-endpoint cap, and connections
// the upstream closed while idle dropped on take. Socketpairs stand in for upstream sockets.
#include "backends/common/upstream_pool.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <vector>

#include "backends/common/socket.hpp"

namespace gearbox::backends {
namespace {

using namespace std::chrono_literals;

core::Endpoint endpoint(const char* text) {
  core::Endpoint ep;
  std::string error;
  EXPECT_TRUE(parse_endpoint(text, &ep, &error)) << error;
  return ep;
}

// One end goes to the pool, the other plays the upstream.
struct Pair {
  Pair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    pooled = fds[0];
    upstream = fds[1];
  }
  ~Pair() { ::close(upstream); }
  int pooled;
  int upstream;
};

bool is_open(int fd) {
  return ::fcntl(fd, F_GETFD) != -1;
}

const core::TimePoint kT0 = core::TimePoint{} + 100s;

TEST(UpstreamPool, TakesMostRecentlyReleasedFirstPerEndpoint) {
  UpstreamPool pool(4, 60s);
  auto a = endpoint("127.0.0.1:1001");
  auto b = endpoint("127.0.0.1:1002");
  Pair p1, p2, p3;
  EXPECT_EQ(pool.take(a, kT0), -1);
  EXPECT_TRUE(pool.put(a, p1.pooled, kT0));
  EXPECT_TRUE(pool.put(a, p2.pooled, kT0 + 1s));
  EXPECT_TRUE(pool.put(b, p3.pooled, kT0));
  EXPECT_EQ(pool.take(a, kT0 + 2s), p2.pooled);
  EXPECT_EQ(pool.take(a, kT0 + 2s), p1.pooled);
  EXPECT_EQ(pool.take(a, kT0 + 2s), -1);
  EXPECT_EQ(pool.idle_count(b), 1u);
  ::close(p1.pooled);
  ::close(p2.pooled);
}

TEST(UpstreamPool, IdleLongerThanTimeoutIsClosedNotReturned) {
  UpstreamPool pool(4, 5s);
  auto a = endpoint("127.0.0.1:1001");
  Pair p;
  pool.put(a, p.pooled, kT0);
  EXPECT_EQ(pool.take(a, kT0 + 5s), -1);
  EXPECT_FALSE(is_open(p.pooled));
}

TEST(UpstreamPool, SweepClosesExpiredOnly) {
  UpstreamPool pool(4, 5s);
  auto a = endpoint("127.0.0.1:1001");
  Pair old_one, fresh;
  pool.put(a, old_one.pooled, kT0);
  pool.put(a, fresh.pooled, kT0 + 4s);
  pool.sweep(kT0 + 6s);
  EXPECT_FALSE(is_open(old_one.pooled));
  EXPECT_EQ(pool.idle_count(a), 1u);
  EXPECT_EQ(pool.take(a, kT0 + 6s), fresh.pooled);
  ::close(fresh.pooled);
}

TEST(UpstreamPool, SweepClosesConnectionsTheUpstreamClosedBeforeTheirTimeout) {
  // The upstream's own keep-alive timeout ran out first: the idle descriptor is freed at the
  // next sweep rather than held until ours does.
  UpstreamPool pool(4, 60s);
  auto a = endpoint("127.0.0.1:1001");
  Pair closed, open;
  pool.put(a, closed.pooled, kT0);
  pool.put(a, open.pooled, kT0);
  ::shutdown(closed.upstream, SHUT_WR);
  pool.sweep(kT0 + 1s);
  EXPECT_FALSE(is_open(closed.pooled));
  EXPECT_EQ(pool.idle_count(a), 1u);
  EXPECT_EQ(pool.take(a, kT0 + 1s), open.pooled);
  ::close(open.pooled);
}

TEST(UpstreamPool, FullSetClosesTheOldestToKeepTheFreshOne) {
  UpstreamPool pool(2, 60s);
  auto a = endpoint("127.0.0.1:1001");
  Pair p1, p2, p3;
  pool.put(a, p1.pooled, kT0);
  pool.put(a, p2.pooled, kT0 + 1s);
  pool.put(a, p3.pooled, kT0 + 2s);
  EXPECT_FALSE(is_open(p1.pooled));
  EXPECT_EQ(pool.idle_count(a), 2u);
}

TEST(UpstreamPool, ZeroKeepaliveClosesOnPut) {
  UpstreamPool pool(0, 60s);
  auto a = endpoint("127.0.0.1:1001");
  Pair p;
  EXPECT_FALSE(pool.put(a, p.pooled, kT0));
  EXPECT_FALSE(is_open(p.pooled));
}

TEST(UpstreamPool, ClosedByUpstreamWhileIdleIsDroppedOnTake) {
  UpstreamPool pool(4, 60s);
  auto a = endpoint("127.0.0.1:1001");
  Pair alive;
  Pair closed;
  Pair chatty;
  pool.put(a, alive.pooled, kT0);
  pool.put(a, closed.pooled, kT0);
  pool.put(a, chatty.pooled, kT0);
  ::shutdown(closed.upstream, SHUT_WR);
  ASSERT_EQ(::write(chatty.upstream, "HTTP/1.1 408", 12), 12);
  EXPECT_EQ(pool.take(a, kT0), alive.pooled);
  EXPECT_FALSE(is_open(closed.pooled));
  EXPECT_FALSE(is_open(chatty.pooled));
  ::close(alive.pooled);
}

// An owner that watches its idle connections (the uring loop) answers for them: take() and
// sweep() ask it, never the socket (a pending byte here would fail a peek), and every
// connection the pool lets go is handed to it to close, never closed behind its back.
struct FakeWatch final : UpstreamPool::IdleWatch {
  std::vector<int> watched, discarded;
  std::vector<int> dead;
  void watch(int fd) override { watched.push_back(fd); }
  bool alive(int fd) override { return std::find(dead.begin(), dead.end(), fd) == dead.end(); }
  void discard(int fd) override { discarded.push_back(fd); }
};

TEST(UpstreamPool, AWatchingOwnerIsAskedInsteadOfTheSocket) {
  FakeWatch watch;
  UpstreamPool pool(2, 5s);
  pool.set_watch(&watch);
  auto a = endpoint("127.0.0.1:1001");
  Pair chatty, dead, old_one, p4;
  ASSERT_EQ(::write(chatty.upstream, "x", 1), 1);  // a peek would call it dead
  pool.put(a, chatty.pooled, kT0);
  EXPECT_EQ(watch.watched, std::vector<int>{chatty.pooled});
  EXPECT_EQ(pool.take(a, kT0), chatty.pooled);
  pool.put(a, dead.pooled, kT0);
  watch.dead.push_back(dead.pooled);
  EXPECT_EQ(pool.take(a, kT0), -1);
  pool.put(a, old_one.pooled, kT0);
  pool.sweep(kT0 + 6s);  // expired
  pool.put(a, p4.pooled, kT0 + 6s);
  pool.clear();
  EXPECT_EQ(watch.discarded, (std::vector<int>{dead.pooled, old_one.pooled, p4.pooled}));
  for (int fd : {chatty.pooled, dead.pooled, old_one.pooled, p4.pooled}) {
    EXPECT_TRUE(is_open(fd)) << "the pool closed a watched connection itself";
    ::close(fd);
  }
}

TEST(UpstreamPool, LimitsComeFromTheConfiguredGroup) {
  core::Config config;
  core::UpstreamGroup group;
  group.keepalive = 1;
  group.keepalive_timeout = 2s;
  group.servers.push_back(core::UpstreamServer{endpoint("127.0.0.1:1001")});
  config.groups.push_back(group);
  UpstreamPool pool(config);
  auto a = endpoint("127.0.0.1:1001");
  Pair p1, p2;
  pool.put(a, p1.pooled, kT0);
  pool.put(a, p2.pooled, kT0);
  EXPECT_EQ(pool.idle_count(a), 1u);
  EXPECT_EQ(pool.take(a, kT0 + 2s), -1);
}

}  // namespace
}  // namespace gearbox::backends
