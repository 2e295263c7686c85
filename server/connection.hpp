// The sans-I/O core of one client connection (and of the upstream connection it may drive).
// A driver feeds it events with the current time and asks for its wants; it never touches a
// socket, a thread or a clock (DESIGN.md, "The core is sans-I/O").
#pragma once

#include <sys/uio.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>

#include "server/config.hpp"

namespace gearbox::core {

namespace metrics {
struct Shard;
}

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
inline constexpr TimePoint kNever = TimePoint::max();

class Upstreams;   // balancer + health state shared by the connections of a worker
class BufferPool;  // free input buffers of a worker (buffer_pool.hpp)

// What every connection of one worker shares. Outlives all its connections.
struct Context {
  const Config* config = nullptr;
  Upstreams* upstreams = nullptr;  // proxy mode only: routes, balancer, health (balancer.hpp)
  BufferPool* buffers = nullptr;   // where input buffers come from; null: allocated per use
  // The driver hands received bytes it owns to on_client_data() (a ring's provided buffers)
  // instead of reading into a span the core lends: then an idle connection holds no input
  // buffer, and Wants::client_read stays empty except while a request body is read (the core
  // holds its buffer then anyway), when the driver may read into the span as well.
  bool driver_owns_input = false;
  // With driver_owns_input: the driver keeps the bytes it handed to on_client_data() unchanged
  // while Wants::client_data_held says so. An echoed body piece is then written from them
  // (zero copy) instead of being copied into an input buffer first.
  bool driver_keeps_data = false;
  bool draining = false;  // set by the driver before calling on_drain()
  // Reload (SIGHUP): the epoch of the configuration this connection was accepted under, and
  // where the epoch in force is published (shared memory in prefork). Once they differ, each
  // response still to start says Connection: close, so the client reconnects to the new
  // configuration at a request boundary, where closing races no request. Null: never.
  const std::atomic<std::uint32_t>* config_epoch = nullptr;
  std::uint32_t epoch = 0;
  // Set by the driver: the next response to start says Connection: close (a prefork worker with
  // its own listener, on which other clients wait while it holds this keep-alive connection).
  bool close_after_exchange = false;
};

// Who is on the other end of the client socket.
struct Peer {
  std::string address;  // "127.0.0.1" or "::1", no port
  // For trusted-proxy checks, read while the Connection is constructed only (not by wake());
  // may be null in tests.
  const sockaddr_storage* addr = nullptr;
};

enum class CloseMode : std::uint8_t {
  kGraceful,  // close(2) after everything wanted was written
  kAbort,     // reset: SO_LINGER 0 then close(2) (client misbehaved or timed out mid-write)
};

// How the upstream connection is to be let go. The driver does it, then reports
// on_upstream_released().
enum class Release : std::uint8_t {
  kNone,
  kReuse,    // the exchange ended cleanly: back into this worker's pool for that endpoint
  kDiscard,  // close it
};

// A snapshot of what the core wants now. Asking twice with no event in between gives the same
// wants. Each slot holds at most one operation; a lent span stays valid and untouched until
// that slot's completion event is reported. Empty span = nothing wanted in that slot.
struct Wants {
  // The core takes client bytes now: read into `client_read` (a lent span) and report
  // on_client_read(), or (only when the context's driver_owns_input) hand bytes the driver owns
  // to on_client_data(). With driver_owns_input a span is lent only mid-body; it stays valid
  // until the next on_client_read() or on_client_data(), even if the wants change meanwhile.
  bool client_data = false;
  std::span<char> client_read;
  std::span<const iovec> client_write;
  // client_write points into bytes handed to on_client_data() (only with the context's
  // driver_keeps_data): every buffer handed over since this was last false must stay unchanged
  // until it is false again (it turns false once such a write is done, or abandoned).
  bool client_data_held = false;
  bool client_shutdown_write = false;  // shutdown(SHUT_WR) once, then keep serving the slots

  const Endpoint* upstream_connect = nullptr;  // open a connection to this endpoint
  bool upstream_may_reuse = false;             // a pooled idle connection to it may serve
  std::span<char> upstream_read;
  std::span<const iovec> upstream_write;
  Release release_upstream = Release::kNone;

  TimePoint deadline = kNever;  // report on_deadline(now) once now >= deadline

  bool done = false;  // close the client (close_mode) and destroy the Connection
  CloseMode close_mode = CloseMode::kGraceful;
};

class Connection {
 public:
  Connection(Context& ctx, Peer peer, TimePoint now);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Wants wants() const;

  // Client events. n == 0 on read means EOF. `err` is an errno value.
  void on_client_read(std::size_t n, TimePoint now);
  // Bytes the driver received into memory it owns (wants().client_data must be set). They are
  // parsed in place; what the core must keep (a partial head, a body piece, pipelined requests
  // it cannot answer yet) is copied into an input buffer. Returns how many bytes it took: all,
  // or fewer (at least one) when its buffer is full; the driver offers the rest again once
  // client_data is wanted again. The memory may be reused as soon as the call returns, unless
  // the context's driver_keeps_data (then: once wants().client_data_held is false).
  std::size_t on_client_data(std::span<const char> bytes, TimePoint now);
  void on_client_written(std::size_t n, TimePoint now);
  void on_client_error(int err, TimePoint now);

  // Upstream events (proxy mode).
  void on_upstream_connected(bool reused, TimePoint now);
  void on_upstream_connect_failed(int err, TimePoint now);
  void on_upstream_read(std::size_t n, TimePoint now);  // 0 = EOF
  void on_upstream_written(std::size_t n, TimePoint now);
  void on_upstream_error(int err, TimePoint now);
  void on_upstream_released(TimePoint now);

  // The deadline in wants() has passed.
  void on_deadline(TimePoint now);
  // The server is shutting down: close when idle, finish what is in flight with
  // Connection: close.
  void on_drain(TimePoint now);

  // True when waiting for the first byte of a request with nothing in flight (safe to close).
  bool idle() const;

  // --- Sleeping: an idle keep-alive connection held in a few bytes ----------------------------
  // A driver that can wait for a connection's next bytes without the core (a ring's receive
  // armed on the socket, a poller) may free the core's state between requests, as nginx frees
  // a keep-alive connection's request between requests. can_sleep(): idle at a request
  // boundary, no byte buffered, nothing to write, no upstream connection held, no deadline but
  // the idle one (wants() is then: client_data, and that deadline). sleep() frees the state;
  // the connection stays counted open and idle. Until wake(), only wake() and the destructor
  // may be called. wake() rebuilds the state as it was: idle, with the idle deadline
  // `deadline` (the last wants().deadline), under `ctx` and `peer` (the same as before; its
  // `addr` is not read: the trusted-proxy verdict made at construction is kept, so a driver
  // need not keep the address for it); then the driver reports the event that woke it
  // (bytes, EOF, the deadline, the drain).
  bool can_sleep() const;
  void sleep();
  void wake(Context& ctx, Peer peer, TimePoint deadline, TimePoint now);
  bool asleep() const { return s_ == nullptr; }
  // True while the connection holds an input buffer (client side or upstream side).
  bool holds_buffers() const;

 private:
  friend class ProxyLeg;
  struct State;
  std::unique_ptr<State> s_;
  // While asleep: the metric shard that counts this connection open and idle (null: none),
  // and whether its peer is a trusted proxy.
  metrics::Shard* asleep_metrics_ = nullptr;
  bool asleep_trusted_ = false;
};

}  // namespace gearbox::core
