// Idle keep-alive connections to upstream servers, kept per endpoint for reuse by later
// requests (nginx's `keepalive N` in an upstream block). One mutex: cheap when uncontended, so
// the same class serves the thread backend (one pool per process) and per-worker pools.
#pragma once

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "server/config.hpp"
#include "server/connection.hpp"

namespace gearbox::backends {

class UpstreamPool {
 public:
  // Limits per endpoint come from the upstream groups of `config` (UpstreamGroup::keepalive,
  // keepalive_timeout); an endpoint no group names gets `default_keep` / `default_timeout`.
  explicit UpstreamPool(const core::Config& config, std::size_t default_keep = 32,
                        core::Duration default_timeout = core::Duration{60'000});
  UpstreamPool(std::size_t default_keep, core::Duration default_timeout);
  ~UpstreamPool();  // closes every idle connection
  UpstreamPool(const UpstreamPool&) = delete;
  UpstreamPool& operator=(const UpstreamPool&) = delete;

  // An idle connection to `ep`, most recently used first, or -1 when none. Connections idle
  // longer than their timeout, and those the upstream closed (or sent unasked bytes on) while
  // idle, are closed and skipped. The caller owns the returned fd.
  int take(const core::Endpoint& ep, core::TimePoint now);

  // Gives back a connection whose exchange ended cleanly; ownership passes. When the
  // endpoint's idle set is full the connection idle longest is closed to make room (nginx).
  // Returns false when the endpoint's limit is 0: `fd` itself was closed.
  bool put(const core::Endpoint& ep, int fd, core::TimePoint now);

  // Takes the limits and metric rows of `config`'s groups (a reload): endpoints it names get
  // them, others keep theirs but are no longer counted in the metrics. Any thread.
  void configure(const core::Config& config);

  // Closes connections idle past their timeout and those the upstream closed (call now and
  // then, e.g. once a second).
  void sweep(core::TimePoint now);

  // Idle connections held for `ep` (tests, metrics).
  std::size_t idle_count(const core::Endpoint& ep) const;

 private:
  struct Idle {
    int fd;
    core::TimePoint since;
  };
  struct Slot {
    std::size_t metric = static_cast<std::size_t>(-1);  // server index for the metrics
    std::int64_t reported = 0;                          // idle count last added to the gauge
    std::size_t keep = 0;
    core::Duration timeout{};
    std::vector<Idle> idle;  // oldest first
  };
  Slot& slot_for(const core::Endpoint& ep);  // mu_ held
  static void report(Slot& slot);            // mu_ held

  std::size_t default_keep_;
  core::Duration default_timeout_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Slot> slots_;  // key: Endpoint::text
};

}  // namespace gearbox::backends
