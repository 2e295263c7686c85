// Server metrics: lock-free counters in shards that every worker thread or process writes to
// (relaxed atomics, no lock, no allocation per request), summed when scraped and exposed in the
// Prometheus text format (version 0.0.4). The core counts; main maps the arena (shared with
// prefork workers) and the admin server renders it.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http/message.hpp"

namespace gearbox::core {

struct Config;

namespace metrics {

enum class MethodClass : std::uint8_t { kGet, kHead, kPost, kPut, kDelete, kOther, kCount };
enum class ErrorKind : std::uint8_t { kParse, kTimeout, kReset, kLimit, kCount };

// Upper bounds (seconds) of the duration histograms' buckets; +Inf is implied.
inline constexpr double kBuckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                      0.1,    0.25,  0.5,    1,     2.5,  5,     10};
inline constexpr std::size_t kBucketCount = std::size(kBuckets) + 1;
// Upstream servers counted, over every group in configuration order; later ones are not.
inline constexpr std::size_t kMaxServers = 64;
inline constexpr std::size_t kShards = 64;

using Counter = std::atomic<std::uint64_t>;
using Gauge = std::atomic<std::int64_t>;

struct Histogram {
  Counter buckets[kBucketCount];  // per bucket (not cumulative); the last is +Inf
  Counter sum_ns;
  void observe(std::chrono::nanoseconds t);
};

struct UpstreamServerCounters {
  Counter requests;
  Counter failures;        // connect failures, resets and timeouts before a response head
  Counter retries;         // requests sent on to the next server after this one failed
  Gauge idle;              // pooled keep-alive connections held
  Histogram head_latency;  // request sent to response head received
};

// One writer group's counters (a thread, several threads, or a prefork worker), cache-aligned.
struct alignas(64) Shard {
  Counter requests[static_cast<std::size_t>(MethodClass::kCount)][5];  // by status class 1xx..5xx
  Histogram duration;
  Counter bytes_in;
  Counter bytes_out;
  Gauge open;
  Gauge idle;
  Counter errors[static_cast<std::size_t>(ErrorKind::kCount)];
  UpstreamServerCounters upstream[kMaxServers];
};

// Everything scraped. Health is global: a server marked down by any worker is down.
struct Arena {
  Shard shards[kShards];
  std::atomic<unsigned> next_shard{0};
  std::atomic<std::int64_t> down_until_ns[kMaxServers];  // passive health, steady-clock ns
  std::atomic<std::uint8_t> unhealthy[kMaxServers];      // active health check said so
  std::int64_t started_wall_s = 0;
};

// main installs the arena (MAP_SHARED before any fork) once at start-up; until then, and in unit
// tests that install none, counting is a no-op.
void install(Arena* arena);
Arena* arena();
// This thread's shard, or null when no arena is installed. A forked child takes a new one.
Shard* local();

MethodClass method_class(http::Method m);
ErrorKind error_kind_of(int status);  // for a status the server answered itself (4xx/5xx)

// The metric row of server `s` of group `g`: its metric_slot when set, else its flat index over
// the configuration's groups; kMaxServers when it has none.
std::size_t server_index(const Config& config, std::size_t g, std::size_t s);

// For a reload: gives every server of `next` a metric row. A server `prev` has too (same group
// name and address) keeps its row; a new one takes a row no server of either uses (so a
// counter is never handed to another server while connections of `prev` still count); beyond
// kMaxServers it goes uncounted.
void carry_slots(const Config& prev, Config& next);

// Renders every metric in the Prometheus text exposition format, version 0.0.4. `now_ns`:
// steady-clock now, for the health gauges.
std::string render(const Arena& arena, const Config& config, std::string_view backend,
                   std::int64_t now_ns);

}  // namespace metrics
}  // namespace gearbox::core
