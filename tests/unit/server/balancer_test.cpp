// Balancing and passive/active health of upstream servers, on a fake clock
// (server/balancer.cpp).
#include "server/balancer.hpp"

#include <gtest/gtest.h>

#include <array>
#include <string>
#include <thread>

namespace gearbox::core {
namespace {

using std::chrono::milliseconds;

const TimePoint kT0 = TimePoint{} + std::chrono::hours(1);

std::vector<UpstreamGroup> one_group(std::initializer_list<int> weights,
                                     Balance balance = Balance::kRoundRobin, int max_fails = 1,
                                     Duration fail_timeout = Duration{10'000}) {
  UpstreamGroup g;
  g.name = "g";
  g.balance = balance;
  g.max_fails = max_fails;
  g.fail_timeout = fail_timeout;
  char name = 'a';
  for (int w : weights) {
    UpstreamServer s;
    s.endpoint.text = std::string(1, name++);
    s.weight = w;
    g.servers.push_back(s);
  }
  return {g};
}

// The names of the next n servers picked.
std::string picks(Upstreams& u, int n, TimePoint now = kT0, std::uint64_t exclude = 0) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    std::size_t s = u.pick(0, now, exclude);
    out += s == Upstreams::kNone ? "-" : u.endpoint(0, s).text;
  }
  return out;
}

TEST(Balancer, RoundRobinCyclesEqualWeights) {
  auto gs = one_group({1, 1, 1});
  Upstreams u(gs, {});
  EXPECT_EQ(picks(u, 7), "abcabca");
}

TEST(Balancer, SmoothWeightedRoundRobinMatchesNginx) {
  auto gs = one_group({5, 1, 1});
  Upstreams u(gs, {});
  EXPECT_EQ(picks(u, 14), "aabacaaaabacaa");
}

TEST(Balancer, ExcludedServersAreSkipped) {
  auto gs = one_group({1, 1, 1});
  Upstreams u(gs, {});
  EXPECT_EQ(picks(u, 4, kT0, 0b001), "bcbc");
  EXPECT_EQ(picks(u, 1, kT0, 0b111), "-");
}

TEST(Balancer, MaxFailsMarksServerDownForFailTimeout) {
  auto gs = one_group({1, 1}, Balance::kRoundRobin, 2, Duration{1000});
  Upstreams u(gs, {});
  u.on_failure(0, 0, kT0);
  EXPECT_TRUE(u.available(0, 0, kT0));
  u.on_failure(0, 0, kT0 + milliseconds(10));
  EXPECT_FALSE(u.available(0, 0, kT0 + milliseconds(10)));
  EXPECT_EQ(picks(u, 3, kT0 + milliseconds(500)), "bbb");
  EXPECT_TRUE(u.available(0, 0, kT0 + milliseconds(1010)));
}

TEST(Balancer, DownServerFailingItsRetryIsDownAgainAtOnce) {
  auto gs = one_group({1, 1}, Balance::kRoundRobin, 3, Duration{1000});
  Upstreams u(gs, {});
  for (int i = 0; i < 3; ++i) {
    u.on_failure(0, 0, kT0);
  }
  TimePoint later = kT0 + milliseconds(5000);
  EXPECT_TRUE(u.available(0, 0, later));
  u.on_failure(0, 0, later);
  EXPECT_FALSE(u.available(0, 0, later));
}

TEST(Balancer, SuccessResetsFailureCount) {
  auto gs = one_group({1, 1}, Balance::kRoundRobin, 2);
  Upstreams u(gs, {});
  u.on_failure(0, 0, kT0);
  u.on_success(0, 0);
  u.on_failure(0, 0, kT0);
  EXPECT_TRUE(u.available(0, 0, kT0));
}

TEST(Balancer, FailuresFarApartDoNotAccumulate) {
  auto gs = one_group({1, 1}, Balance::kRoundRobin, 2, Duration{1000});
  Upstreams u(gs, {});
  u.on_failure(0, 0, kT0);
  u.on_failure(0, 0, kT0 + milliseconds(1500));
  EXPECT_TRUE(u.available(0, 0, kT0 + milliseconds(1500)));
}

TEST(Balancer, SingleServerGroupIsNeverPassivelyDown) {
  auto gs = one_group({1});
  Upstreams u(gs, {});
  u.on_failure(0, 0, kT0);
  u.on_failure(0, 0, kT0);
  EXPECT_EQ(picks(u, 2), "aa");
}

TEST(Balancer, MaxFailsZeroDisablesPassiveHealth) {
  auto gs = one_group({1, 1}, Balance::kRoundRobin, 0);
  Upstreams u(gs, {});
  for (int i = 0; i < 10; ++i) {
    u.on_failure(0, 0, kT0);
  }
  EXPECT_TRUE(u.available(0, 0, kT0));
}

TEST(Balancer, AllDownReturnsNone) {
  auto gs = one_group({1, 1});
  Upstreams u(gs, {});
  u.on_failure(0, 0, kT0);
  u.on_failure(0, 1, kT0);
  EXPECT_EQ(picks(u, 1), "-");
}

TEST(Balancer, UnhealthyServerSkippedUntilHealthy) {
  auto gs = one_group({1, 1});
  Upstreams u(gs, {});
  u.set_health(0, 1, false);
  EXPECT_EQ(picks(u, 3), "aaa");
  u.set_health(0, 1, true);
  EXPECT_EQ(picks(u, 4), "abab");
}

TEST(Balancer, UnhealthySingleServerGivesNone) {
  auto gs = one_group({1});
  Upstreams u(gs, {});
  u.set_health(0, 0, false);
  EXPECT_EQ(picks(u, 1), "-");
  EXPECT_FALSE(u.healthy(0, 0));
}

TEST(Balancer, LeastConnectionsPrefersLeastLoaded) {
  auto gs = one_group({1, 1, 1}, Balance::kLeastConnections);
  Upstreams u(gs, {});
  u.on_request_start(0, 0);
  u.on_request_start(0, 2);
  EXPECT_EQ(picks(u, 2), "bb");
  u.on_request_start(0, 1);
  u.on_request_start(0, 1);
  u.on_request_end(0, 2);
  EXPECT_EQ(picks(u, 1), "c");
  EXPECT_EQ(u.active_requests(0, 1), 2);
}

TEST(Balancer, LeastConnectionsCountsPerWeight) {
  auto gs = one_group({3, 1}, Balance::kLeastConnections);
  Upstreams u(gs, {});
  u.on_request_start(0, 0);
  u.on_request_start(0, 0);
  u.on_request_start(0, 1);
  EXPECT_EQ(picks(u, 1), "a");  // 2/3 < 1/1
  u.on_request_start(0, 0);
  u.on_request_start(0, 0);
  EXPECT_EQ(picks(u, 1), "b");  // 4/3 > 1/1
}

TEST(Balancer, LeastConnectionsTiesUseWeightedRoundRobin) {
  auto gs = one_group({2, 1}, Balance::kLeastConnections);
  Upstreams u(gs, {});
  EXPECT_EQ(picks(u, 6), "abaaba");
}

TEST(Balancer, LeastConnectionsSkipsDownServers) {
  auto gs = one_group({1, 1}, Balance::kLeastConnections);
  Upstreams u(gs, {});
  u.on_request_start(0, 1);
  u.set_health(0, 0, false);
  EXPECT_EQ(picks(u, 2), "bb");
}

TEST(Balancer, RoutesAndGroupsAreExposed) {
  auto gs = one_group({1, 1});
  gs.push_back(gs[0]);
  gs[1].name = "second";
  Upstreams u(gs, {{"/two", "second", true}});
  ASSERT_EQ(u.group_count(), 2u);
  const RouteMatch* m = u.router().match("/two/x");
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(u.group(m->group).name, "second");
  EXPECT_EQ(u.server_count(1), 2u);
}

TEST(Balancer, ConcurrentPicksStayFairAndBalanced) {
  auto gs = one_group({1, 1});
  Upstreams u(gs, {});
  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::vector<std::array<int, 2>> counts(kThreads, {0, 0});
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        std::size_t s = u.pick(0, kT0);
        u.on_request_start(0, s);
        ++counts[t][s];
        u.on_request_end(0, s);
      }
    });
  }
  for (auto& th : threads) {
    th.join();
  }
  int a = 0;
  int b = 0;
  for (auto& c : counts) {
    a += c[0];
    b += c[1];
  }
  EXPECT_EQ(a, kThreads * kPerThread / 2);
  EXPECT_EQ(b, kThreads * kPerThread / 2);
  EXPECT_EQ(u.active_requests(0, 0), 0);
  EXPECT_EQ(u.active_requests(0, 1), 0);
}

}  // namespace
}  // namespace gearbox::core
