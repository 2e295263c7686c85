// Upstream selection shared by the connections of one worker: the router, per-server balancing
// state (nginx's smooth weighted round robin and weighted least-connections) and health
// (passive: failed attempts; active: set by the health checker). Never reads a clock.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "server/config.hpp"
#include "server/connection.hpp"
#include "server/routing.hpp"

namespace gearbox::core {

// Thread-safe: the thread backend shares one among all connection threads, so every member
// may be called concurrently (one small mutex per group). Prefork has one per process. The
// Config it was built from must outlive it.
//
// Passive health (nginx max_fails / fail_timeout): max_fails consecutive failures (a connect
// refused or timed out; a reset, EOF or read/send timeout before the response head), each
// within fail_timeout of the previous one, mark a server down for fail_timeout after the last
// failure; a response head from it resets the count; max_fails == 0 disables it. Once its time is
// up a down server gets one try, and a failure then marks it down again at once. As in nginx, a
// group of one server is never marked down passively. Active health: a server set unhealthy
// is skipped until set healthy again.
//
// When no server can be tried (all down or excluded), pick() returns kNone and the core answers
// 502 at once, like nginx's "no live upstreams", rather than hammering servers known to fail.
class Upstreams {
 public:
  static constexpr std::size_t kNone = static_cast<std::size_t>(-1);

  // Throws std::invalid_argument (start-up only) when the routes do not fit the groups
  // (Router::check).
  explicit Upstreams(const Config& config);
  Upstreams(const std::vector<UpstreamGroup>& groups, const std::vector<Route>& routes);
  ~Upstreams();
  Upstreams(const Upstreams&) = delete;
  Upstreams& operator=(const Upstreams&) = delete;

  const Router& router() const { return router_; }
  std::size_t group_count() const { return groups_.size(); }
  const UpstreamGroup& group(std::size_t g) const;
  std::size_t server_count(std::size_t g) const;
  const Endpoint& endpoint(std::size_t g, std::size_t s) const;

  // The server of group `g` to try next, or kNone. Bit s of exclude_mask set = server s was
  // already tried for this request (retries); servers numbered 64 and up cannot be excluded.
  // Round robin: smooth weighted (nginx). Least connections: fewest on_request_start()s not
  // yet ended per unit of weight, ties broken by smooth weighted round robin.
  std::size_t pick(std::size_t g, TimePoint now, std::uint64_t exclude_mask = 0);

  // Passive health: server s of group g failed an attempt, or answered with a response head.
  void on_failure(std::size_t g, std::size_t s, TimePoint now);
  void on_success(std::size_t g, std::size_t s);
  // Bracket each request sent to a server (least-connections counts); every start needs one
  // end.
  void on_request_start(std::size_t g, std::size_t s);
  void on_request_end(std::size_t g, std::size_t s);

  // From the active checker. Servers start healthy.
  void set_health(std::size_t g, std::size_t s, bool healthy);

  // Observers (tests, metrics).
  bool healthy(std::size_t g, std::size_t s) const;
  bool available(std::size_t g, std::size_t s, TimePoint now) const;  // pick() may choose it
  int active_requests(std::size_t g, std::size_t s) const;

 private:
  struct Group;
  Router router_;
  std::vector<std::unique_ptr<Group>> groups_;
};

}  // namespace gearbox::core
