// The whole configuration as plain data: what flags and the TOML file say, validated.
// config.cpp fills it (cxxopts + toml++); everything else only reads it.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "http/parser.hpp"
#include "server/access_log.hpp"

namespace gearbox::core {

using Duration = std::chrono::milliseconds;

enum class Mode : std::uint8_t { kEcho, kProxy };
enum class Balance : std::uint8_t { kRoundRobin, kLeastConnections };

// A resolved socket address plus its text form ("10.0.0.1:80", "[::1]:8080") for logs.
struct Endpoint {
  sockaddr_storage addr{};
  socklen_t len = 0;
  std::string text;
};

struct UpstreamServer {
  Endpoint endpoint;
  int weight = 1;
  // Its row in the metric arena. Unset: its flat position over the groups (metrics.hpp). A
  // reload keeps each server's row (metrics::carry_slots), so a counter never changes hands.
  std::size_t metric_slot = static_cast<std::size_t>(-1);
};

// An upstream group: nginx's `upstream name { server ...; }` plus its proxy_* settings.
struct UpstreamGroup {
  std::string name;
  std::vector<UpstreamServer> servers;
  Balance balance = Balance::kRoundRobin;
  std::optional<std::string> host;  // Host sent upstream; unset = the client's Host
  int max_fails = 1;                // consecutive connect failures before skipping (nginx)
  Duration fail_timeout{10'000};    // how long a failed server is skipped
  std::string health_path;          // active check: GET this path; empty = passive only
  Duration health_interval{5'000};
  Duration connect_timeout{5'000};
  Duration read_timeout{60'000};
  Duration send_timeout{60'000};
  // Failover (nginx proxy_next_upstream_tries / _timeout): at most this many servers tried per
  // request, 0 = every server of the group; and no new try once this long has passed since the
  // first, 0 = no limit.
  int next_upstream_tries = 0;
  Duration next_upstream_timeout{0};
  std::size_t keepalive = 256;         // idle pooled connections kept per worker per server
  Duration keepalive_timeout{60'000};  // a pooled connection idle longer is closed
};

// nginx's `location <prefix> { proxy_pass http://<group>; }`; longest prefix wins.
struct Route {
  std::string prefix;
  std::string group;
  bool strip_prefix = false;
};

// An address block whose X-Forwarded-For we trust and append to.
struct Cidr {
  sockaddr_storage base{};
  int bits = 0;
};

struct Config {
  std::string config_file;  // empty when none
  std::string backend;      // empty: not chosen, main takes core::default_backend()
  Mode mode = Mode::kEcho;
  std::string listen = "127.0.0.1:8080";
  int backlog = 511;
  int workers = 0;         // prefork: most worker processes (0 = 256); uring: event loops (0 = 1)
  int min_spare = 5;       // prefork
  int max_spare = 10;      // prefork
  bool reuseport = false;  // prefork: a listener per worker
  int threads = 0;         // pool/fiber: worker threads; 0 = chosen from the machine
  std::size_t thread_stack = 256 * 1024;  // thread: per-connection stack size
  std::size_t fiber_stack = 64 * 1024;    // fiber: per-connection stack size (plus a guard page)
  int max_connections = 10'000;
  bool sqpoll = false;  // uring: a kernel thread polls the submission queue (IORING_SETUP_SQPOLL)

  http::Limits limits;
  Duration header_timeout{10'000};
  Duration idle_timeout{60'000};
  Duration body_timeout{60'000};
  Duration send_timeout{60'000};
  Duration drain_timeout{10'000};

  std::vector<UpstreamGroup> groups;  // proxy mode
  std::vector<Route> routes;          // proxy mode; empty = everything to groups[0]
  std::vector<Cidr> trusted_proxies;

  std::string admin_listen;  // --admin-listen: /metrics and /status; empty = off
  std::string access_log;    // empty: off; "-": stderr; otherwise a file path
  AccessFormat access_log_format = AccessFormat::kCombined;
  std::string log_level = "info";

  // Not configurable: measured by main at start-up, used by /cpu/<ms> (the core has no clock).
  std::uint64_t cpu_iterations_per_ms = 100'000;
  // Not configurable: system_clock minus steady_clock at start-up, set by main. The core turns
  // an event's steady `now` into the wall time of the Date field with it (it reads no clock).
  std::chrono::nanoseconds wall_offset{0};
};

}  // namespace gearbox::core
