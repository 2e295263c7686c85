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

// An idle HTTP/1.1 upstream connection has nothing to say: true when a recv(MSG_PEEK) finds
// nothing to read (not closed, not reset, no bytes sent unasked).
bool idle_socket_alive(int fd);

class UpstreamPool {
 public:
  // How the pool's owner learns what happened on an idle connection and lets one go. Without
  // one (the blocking backends) take() and sweep() ask the socket itself with a
  // recv(MSG_PEEK), a syscall per take, and close(2) lets go. An event loop watches its idle
  // connections instead, as nginx and HAProxy do, and knows without a syscall.
  class IdleWatch {
   public:
    virtual ~IdleWatch() = default;
    virtual void watch(int fd) = 0;    // fd joined the idle set
    virtual bool alive(int fd) = 0;    // nothing came on it while idle: no EOF, reset or bytes
    virtual void discard(int fd) = 0;  // fd leaves the idle set for good: close it
  };

  // Limits per endpoint come from the upstream groups of `config` (UpstreamGroup::keepalive,
  // keepalive_timeout); an endpoint no group names gets `default_keep` / `default_timeout`.
  explicit UpstreamPool(const core::Config& config, std::size_t default_keep = 256,
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

  // From now on idle connections are watched by `watch` (which must outlive the pool's idle
  // set): set before the first put().
  void set_watch(IdleWatch* watch) { watch_ = watch; }
  // Lets every idle connection go (the owner stops).
  void clear();

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
  bool alive(int fd);                        // watch_, else a recv(MSG_PEEK)
  void discard(int fd);                      // watch_, else close(2)

  std::size_t default_keep_;
  core::Duration default_timeout_;
  IdleWatch* watch_ = nullptr;
  mutable std::mutex mu_;
  std::unordered_map<std::string, Slot> slots_;  // key: Endpoint::text
};

}  // namespace gearbox::backends
