// Metric shards and their Prometheus text: counts summed over shards, cumulative buckets, labels.
#include "server/metrics.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "server/config.hpp"

namespace gearbox::core::metrics {
namespace {

using std::chrono::microseconds;
using std::chrono::milliseconds;

TEST(Metrics, HistogramBucketsAreCumulativeAndSumAcrossShards) {
  auto arena = std::make_unique<Arena>();
  arena->shards[0].duration.observe(microseconds(100));         // <= 0.0005
  arena->shards[1].duration.observe(milliseconds(3));           // <= 0.005
  arena->shards[1].duration.observe(std::chrono::seconds(20));  // +Inf
  arena->shards[2].requests[static_cast<int>(MethodClass::kGet)][1].store(7);
  arena->shards[3].requests[static_cast<int>(MethodClass::kGet)][1].store(5);
  Config config;
  std::string text = render(*arena, config, "pool", 0);
  EXPECT_NE(text.find("gearbox_http_requests_total{method=\"GET\",code=\"2xx\"} 12\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("gearbox_http_request_duration_seconds_bucket{le=\"0.0005\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("gearbox_http_request_duration_seconds_bucket{le=\"0.005\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("gearbox_http_request_duration_seconds_bucket{le=\"10\"} 2\n"),
            std::string::npos);
  EXPECT_NE(text.find("gearbox_http_request_duration_seconds_bucket{le=\"+Inf\"} 3\n"),
            std::string::npos);
  EXPECT_NE(text.find("gearbox_http_request_duration_seconds_count 3\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE gearbox_http_request_duration_seconds histogram\n"),
            std::string::npos);
  EXPECT_EQ(text.find("gearbox_upstream_"), std::string::npos) << "echo mode has no upstreams";
}

TEST(Metrics, UpstreamSeriesCarryGroupAndServerAndHealth) {
  auto arena = std::make_unique<Arena>();
  Config config;
  config.mode = Mode::kProxy;
  config.groups.resize(2);
  config.groups[0].name = "api";
  config.groups[0].servers.resize(1);
  config.groups[0].servers[0].endpoint.text = "10.0.0.1:80";
  config.groups[1].name = "web\"x";
  config.groups[1].servers.resize(2);
  config.groups[1].servers[0].endpoint.text = "10.0.0.2:80";
  config.groups[1].servers[1].endpoint.text = "10.0.0.3:80";
  EXPECT_EQ(server_index(config, 1, 1), 2u);
  arena->shards[5].upstream[2].requests.store(4);
  arena->down_until_ns[1].store(1'000);
  std::string text = render(*arena, config, "uring", 500);
  EXPECT_NE(
      text.find(
          "gearbox_upstream_requests_total{upstream=\"web\\\"x\",server=\"10.0.0.3:80\"} 4\n"),
      std::string::npos)
      << text;
  EXPECT_NE(text.find("gearbox_upstream_up{upstream=\"web\\\"x\",server=\"10.0.0.2:80\"} 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("gearbox_upstream_up{upstream=\"api\",server=\"10.0.0.1:80\"} 1\n"),
            std::string::npos);
  EXPECT_NE(render(*arena, config, "uring", 2'000)
                .find("gearbox_upstream_up{upstream=\"web\\\"x\",server=\"10.0.0.2:80\"} 1\n"),
            std::string::npos)
      << "up again once down_until has passed";
}

// A reload keeps each server's metric row: a kept server (same group and address) has the same
// row wherever it is listed now, and a new one takes a row nobody used.
TEST(Metrics, ReloadKeepsEachServersRowAndGivesNewOnesFreeRows) {
  auto group = [](std::string name, std::vector<std::string> servers) {
    UpstreamGroup g;
    g.name = std::move(name);
    for (std::string& text : servers) {
      UpstreamServer s;
      s.endpoint.text = std::move(text);
      g.servers.push_back(std::move(s));
    }
    return g;
  };
  Config prev;
  prev.groups = {group("api", {"10.0.0.1:80", "10.0.0.2:80"}), group("web", {"10.0.0.3:80"})};
  Config next;
  next.groups = {group("web", {"10.0.0.9:80", "10.0.0.3:80"}), group("api", {"10.0.0.2:80"})};
  carry_slots(prev, next);
  EXPECT_EQ(server_index(next, 0, 1), 2u) << "web 10.0.0.3 kept its row";
  EXPECT_EQ(server_index(next, 1, 0), 1u) << "api 10.0.0.2 kept its row";
  EXPECT_EQ(server_index(next, 0, 0), 3u) << "the new server takes a row neither used";
  Config third = next;
  for (UpstreamGroup& g : third.groups) {
    for (UpstreamServer& s : g.servers) {
      s.metric_slot = static_cast<std::size_t>(-1);
    }
  }
  carry_slots(next, third);
  EXPECT_EQ(server_index(third, 0, 0), 3u) << "rows survive a second reload";
}

TEST(Metrics, ErrorKindsOfTheStatusesTheServerAnswers) {
  EXPECT_EQ(error_kind_of(400), ErrorKind::kParse);
  EXPECT_EQ(error_kind_of(408), ErrorKind::kTimeout);
  EXPECT_EQ(error_kind_of(431), ErrorKind::kLimit);
  EXPECT_EQ(error_kind_of(413), ErrorKind::kLimit);
  EXPECT_EQ(method_class(http::Method::kPost), MethodClass::kPost);
}

}  // namespace
}  // namespace gearbox::core::metrics
