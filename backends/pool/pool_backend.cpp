// The `pool` backend: the reactor thread (the caller of run()) waits in epoll; worker threads run
// the core on one connection each until it would block (pump_until_blocked), then give it back
// with what it waits for. Only the reactor touches epoll, the timer set and the connection set.
#include "backends/pool/pool_backend.hpp"

#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <deque>
#include <exception>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <unordered_set>
#include <vector>

#include "backends/common/blocking_pump.hpp"
#include "backends/common/cpus.hpp"
#include "backends/common/generation.hpp"
#include "backends/common/socket.hpp"
#include "backends/common/upstream_pool.hpp"
#include "server/balancer.hpp"
#include "server/connection.hpp"
#include "server/log.hpp"

namespace gearbox::backends {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

// epoll data: a PoolConn pointer (aligned, so bit 0 is free to mark its upstream fd) or one of
// these tags, which no pointer can equal.
constexpr std::uint64_t kTagListener = 8;
constexpr std::uint64_t kTagDrain = 16;
constexpr std::uint64_t kTagWake = 24;
constexpr std::uint64_t kUpstreamBit = 1;

struct PoolConn;
using Timers = std::multimap<core::TimePoint, PoolConn*>;

// One client connection. While `running` a worker owns everything but the reactor fields;
// otherwise the reactor owns all of it. The queues' mutexes order the hand-overs.
struct PoolConn {
  PoolConn(std::shared_ptr<Generation> g, int fd, const sockaddr_storage& addr, UpstreamPool* pool)
      : gen(std::move(g)),
        ctx(gen->context()),
        peer_addr(addr),
        st(PumpSetup{fd, -1, &ctx, pool}) {}

  std::shared_ptr<Generation> gen;  // the configuration in force at the accept
  core::Context ctx;  // per connection: `draining` is written by whichever thread runs it
  sockaddr_storage peer_addr;
  std::unique_ptr<core::Connection> core;
  PumpState st;
  PumpWait wait;      // set by the worker when it gives the connection back
  bool done = false;  // set by the worker: fds closed, core destroyed

  // Reactor fields.
  bool running = false;          // queued or on a worker
  bool client_in_epoll = false;  // registered (possibly disarmed by EPOLLONESHOT)
  int upstream_in_epoll = -1;    // the upstream fd registered, only while waiting
  bool drain_sent = false;
  bool has_timer = false;
  Timers::iterator timer;
};

// The bounded queue from the reactor to the workers.
class DispatchQueue {
 public:
  explicit DispatchQueue(std::size_t capacity) : capacity_(capacity) {}

  bool try_push(PoolConn* c) {
    {
      std::lock_guard lock(mu_);
      if (items_.size() >= capacity_) {
        return false;
      }
      items_.push_back(c);
    }
    cv_.notify_one();
    return true;
  }

  // Blocks until a connection is queued; nullptr once close() was called.
  PoolConn* pop() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return closed_ || !items_.empty(); });
    if (items_.empty()) {
      return nullptr;
    }
    PoolConn* c = items_.front();
    items_.pop_front();
    return c;
  }

  // Wakes every worker; those without work return. Queued connections stay queued.
  void close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
  }

  std::vector<PoolConn*> take_all() {
    std::lock_guard lock(mu_);
    std::vector<PoolConn*> out(items_.begin(), items_.end());
    items_.clear();
    return out;
  }

 private:
  std::size_t capacity_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<PoolConn*> items_;
  bool closed_ = false;
};

// Connections given back by the workers; the first push into an empty queue wakes the reactor.
class ReturnQueue {
 public:
  explicit ReturnQueue(int wake_fd) : wake_fd_(wake_fd) {}

  void push(PoolConn* c) {
    bool was_empty;
    {
      std::lock_guard lock(mu_);
      was_empty = items_.empty();
      items_.push_back(c);
    }
    if (was_empty) {
      std::uint64_t one = 1;
      [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
    }
  }

  void take(std::vector<PoolConn*>* out) {
    std::uint64_t count;
    [[maybe_unused]] ssize_t n = ::read(wake_fd_, &count, sizeof count);
    std::lock_guard lock(mu_);
    out->swap(items_);
  }

 private:
  int wake_fd_;
  std::mutex mu_;
  std::vector<PoolConn*> items_;
};

void worker_main(DispatchQueue& in, ReturnQueue& out, PoolStatus& status) {
  PollIo io;  // only its clock: a worker never waits for I/O
  while (PoolConn* c = in.pop()) {
    status.queued.fetch_sub(1, std::memory_order_relaxed);
    status.busy.fetch_add(1, std::memory_order_relaxed);
    c->done = pump_until_blocked(*c->core, c->st, io, &c->wait);
    status.busy.fetch_sub(1, std::memory_order_relaxed);
    if (c->done) {
      pump_finish(c->st);
      c->core.reset();
    }
    out.push(c);
  }
}

short poll_revents(std::uint32_t events) {
  return static_cast<short>(
      ((events & EPOLLIN) != 0 ? POLLIN : 0) | ((events & EPOLLOUT) != 0 ? POLLOUT : 0) |
      ((events & EPOLLERR) != 0 ? POLLERR : 0) | ((events & EPOLLHUP) != 0 ? POLLHUP : 0));
}

std::uint32_t epoll_events(short poll_events) {
  return ((poll_events & POLLIN) != 0 ? EPOLLIN : 0u) |
         ((poll_events & POLLOUT) != 0 ? EPOLLOUT : 0u);
}

class Reactor {
 public:
  Reactor(const core::Config& config, core::Listener& listener, int drain_fd, PoolStatus& status,
          Generations& gens)
      : config_(config),
        listener_(listener),
        drain_fd_(drain_fd),
        status_(status),
        gens_(gens),
        pool_(config) {}

  int run();
  UpstreamPool& pool() { return pool_; }

 private:
  void ctl(int op, int fd, std::uint32_t events, std::uint64_t data);
  void accept_some(core::TimePoint now);
  void dispatch(PoolConn* c);
  void flush_overflow();
  void give_back(PoolConn* c, core::TimePoint now);
  void set_timer(PoolConn* c, core::TimePoint deadline);
  void clear_timer(PoolConn* c);
  void start_drain(core::TimePoint now);
  void update_listener(core::TimePoint now);
  void destroy(PoolConn* c);

  const core::Config& config_;
  core::Listener& listener_;
  int drain_fd_;
  PoolStatus& status_;
  Generations& gens_;
  int ep_ = -1;
  int wake_fd_ = -1;
  UpstreamPool pool_;  // one for the process: a connection moves between workers, its
                       // upstream connections with it, so per-worker pools would only split reuse
  std::unique_ptr<DispatchQueue> queue_;
  std::unique_ptr<ReturnQueue> returns_;
  std::deque<PoolConn*> overflow_;  // ready, but the dispatch queue was full
  Timers timers_;
  std::unordered_set<PoolConn*> conns_;
  bool listener_armed_ = false;
  bool draining_ = false;
  bool accept_warned_ = false;  // one warning per streak of accept failures
  core::TimePoint paused_until_{};
};

void Reactor::ctl(int op, int fd, std::uint32_t events, std::uint64_t data) {
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = data;
  if (::epoll_ctl(ep_, op, fd, &ev) != 0) {
    core::log_error("pool backend: epoll_ctl(%d, fd %d): %s", op, fd, std::strerror(errno));
  }
}

void Reactor::set_timer(PoolConn* c, core::TimePoint deadline) {
  clear_timer(c);
  if (deadline != core::kNever) {
    c->timer = timers_.emplace(deadline, c);
    c->has_timer = true;
  }
}

void Reactor::clear_timer(PoolConn* c) {
  if (c->has_timer) {
    timers_.erase(c->timer);
    c->has_timer = false;
  }
}

// From here until give_back() a worker owns the connection: its upstream fd leaves epoll now,
// because the worker may hand that fd to the upstream pool (or close it) and another
// connection may then register it.
void Reactor::dispatch(PoolConn* c) {
  c->running = true;
  clear_timer(c);
  if (c->upstream_in_epoll >= 0) {
    ctl(EPOLL_CTL_DEL, c->upstream_in_epoll, 0, 0);
    c->upstream_in_epoll = -1;
  }
  status_.queued.fetch_add(1, std::memory_order_relaxed);  // a worker's pop() takes it off
  if (!overflow_.empty() || !queue_->try_push(c)) {
    overflow_.push_back(c);
  }
}

void Reactor::flush_overflow() {
  while (!overflow_.empty() && queue_->try_push(overflow_.front())) {
    overflow_.pop_front();
  }
}

void Reactor::destroy(PoolConn* c) {
  clear_timer(c);
  conns_.erase(c);
  delete c;
}

void Reactor::give_back(PoolConn* c, core::TimePoint now) {
  c->running = false;
  if (c->done) {
    destroy(c);  // its fds are closed, so epoll forgot them
    return;
  }
  if (draining_ && !c->drain_sent) {
    c->drain_sent = true;
    c->st.drain_ready = true;
    dispatch(c);
    return;
  }
  const PumpWait& w = c->wait;
  const int cfd = c->st.setup.client_fd;
  auto data = reinterpret_cast<std::uint64_t>(c);
  if (w.client_events != 0) {
    // EPOLLONESHOT: once reported, the fd stays quiet until re-armed here, so no second event
    // can hand the connection to a second worker.
    ctl(c->client_in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, cfd,
        epoll_events(w.client_events) | EPOLLONESHOT, data);
    c->client_in_epoll = true;
  } else if (c->client_in_epoll) {
    // Not merely disarmed: a hung-up socket reports EPOLLHUP whatever events were asked.
    ctl(EPOLL_CTL_DEL, cfd, 0, 0);
    c->client_in_epoll = false;
  }
  if (w.upstream_events != 0) {
    ctl(EPOLL_CTL_ADD, w.upstream_fd, epoll_events(w.upstream_events) | EPOLLONESHOT,
        data | kUpstreamBit);
    c->upstream_in_epoll = w.upstream_fd;
  }
  set_timer(c, w.deadline);
  (void)now;
}

void Reactor::update_listener(core::TimePoint now) {
  // Accept backpressure: while a ready connection waits for room in the dispatch queue (or at
  // max_connections, or during an accept pause) the listener is not watched, so new clients
  // wait in the kernel's listen backlog instead of in our memory, and are served in turn.
  bool want = !draining_ && listener_.fd >= 0 && overflow_.empty() &&
              static_cast<int>(conns_.size()) < std::max(config_.max_connections, 1) &&
              now >= paused_until_;
  if (want != listener_armed_) {
    ctl(EPOLL_CTL_MOD, listener_.fd, want ? static_cast<std::uint32_t>(EPOLLIN) : 0u, kTagListener);
    listener_armed_ = want;
  }
}

void Reactor::accept_some(core::TimePoint now) {
  const int cap = std::max(config_.max_connections, 1);
  for (int i = 0; i < 64 && static_cast<int>(conns_.size()) < cap; ++i) {
    Accepted a = accept_client(listener_.fd);
    if (a.fd < 0) {
      if (accept_should_pause(a.err)) {
        if (!accept_warned_) {
          core::log_warn("pool backend: accept: %s; pausing accepts", std::strerror(a.err));
          accept_warned_ = true;
        }
        paused_until_ = now + kAcceptPause;
        return;
      }
      if (a.err == EAGAIN || a.err == EWOULDBLOCK) {
        return;
      }
      continue;
    }
    accept_warned_ = false;
    auto* c = new PoolConn(gens_.current(), a.fd, a.peer, &pool_);
    c->core = std::make_unique<core::Connection>(
        c->ctx, core::Peer{address_text(c->peer_addr), &c->peer_addr}, now);
    pump_begin(*c->core, c->st);
    conns_.insert(c);
    // Wait for the request in epoll rather than on a worker: until it arrives the connection
    // holds no thread.
    c->wait = PumpWait{POLLIN, -1, 0, false, c->st.w.deadline};
    if (draining_) {
      c->drain_sent = true;
      c->st.drain_ready = true;
    }
    give_back(c, now);
  }
}

void Reactor::start_drain(core::TimePoint now) {
  draining_ = true;
  update_listener(now);
  ctl(EPOLL_CTL_DEL, drain_fd_, 0, 0);  // it stays readable
  ctl(EPOLL_CTL_DEL, listener_.fd, 0, 0);
  ::close(listener_.fd);
  listener_.fd = -1;
  gens_.current()->stop_health();
  std::vector<PoolConn*> waiting;
  for (PoolConn* c : conns_) {
    if (!c->running && !c->drain_sent) {
      waiting.push_back(c);
    }
  }
  for (PoolConn* c : waiting) {
    c->drain_sent = true;
    c->st.drain_ready = true;
    dispatch(c);
  }
}

int Reactor::run() {
  ep_ = ::epoll_create1(EPOLL_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ep_ < 0 || wake_fd_ < 0) {
    core::log_error("pool backend: epoll/eventfd: %s", std::strerror(errno));
    return 1;
  }
  int threads = config_.threads > 0 ? config_.threads : default_pool_threads();
  queue_ = std::make_unique<DispatchQueue>(static_cast<std::size_t>(threads) * kQueuePerThread);
  returns_ = std::make_unique<ReturnQueue>(wake_fd_);

  ::fcntl(listener_.fd, F_SETFL, ::fcntl(listener_.fd, F_GETFL) | O_NONBLOCK);
  ctl(EPOLL_CTL_ADD, listener_.fd, 0, kTagListener);
  ctl(EPOLL_CTL_ADD, drain_fd_, EPOLLIN, kTagDrain);
  ctl(EPOLL_CTL_ADD, wake_fd_, EPOLLIN, kTagWake);

  std::vector<std::thread> workers;
  workers.reserve(static_cast<std::size_t>(threads));
  for (int i = 0; i < threads; ++i) {
    workers.emplace_back(worker_main, std::ref(*queue_), std::ref(*returns_), std::ref(status_));
  }
  status_.threads.store(threads, std::memory_order_relaxed);
  core::log_debug("pool backend: %d worker threads, queue of %d", threads,
                  threads * kQueuePerThread);

  core::TimePoint next_sweep = core::Clock::now() + std::chrono::seconds(1);
  core::TimePoint drain_deadline = core::kNever;
  std::vector<epoll_event> events(256);
  std::vector<PoolConn*> returned;
  int status = 0;
  for (;;) {
    core::TimePoint now = core::Clock::now();
    status_.connections.store(static_cast<int>(conns_.size()), std::memory_order_relaxed);
    update_listener(now);
    if (draining_ && conns_.empty()) {
      break;
    }
    if (now >= drain_deadline) {
      core::log_warn("pool backend: drain timeout, %zu connections left open", conns_.size());
      break;
    }
    core::TimePoint until = std::min(next_sweep, drain_deadline);
    if (!timers_.empty()) {
      until = std::min(until, timers_.begin()->first);
    }
    if (!listener_armed_ && paused_until_ > now) {
      until = std::min(until, paused_until_);
    }
    int n = ::epoll_wait(ep_, events.data(), static_cast<int>(events.size()), wait_ms(now, until));
    if (n < 0 && errno != EINTR) {
      core::log_error("pool backend: epoll_wait: %s", std::strerror(errno));
      status = 1;
      break;
    }
    now = core::Clock::now();
    bool wake = false;
    for (int i = 0; i < n; ++i) {
      std::uint64_t data = events[i].data.u64;
      if (data == kTagListener) {
        if (listener_armed_) {
          accept_some(now);
        }
      } else if (data == kTagDrain) {
        if (!draining_) {
          start_drain(now);
          drain_deadline = now + config_.drain_timeout;
        }
      } else if (data == kTagWake) {
        wake = true;
      } else {
        auto* c = reinterpret_cast<PoolConn*>(data & ~kUpstreamBit);
        if (c->running) {
          continue;  // the other fd of a connection already handed over: re-armed on return
        }
        bool upstream = (data & kUpstreamBit) != 0;
        // Only the directions this fd reported are tried again (an EPOLLONESHOT event names
        // one fd): a write that could not progress is not retried before POLLOUT says so.
        short revents = poll_revents(events[i].events);
        pump_woken_by(c->st, upstream ? 0 : revents, upstream ? revents : 0, false);
        if (!upstream) {
          c->client_in_epoll = true;  // still registered, disarmed by EPOLLONESHOT
        }
        dispatch(c);
      }
    }
    if (wake) {
      returns_->take(&returned);
      for (PoolConn* c : returned) {
        give_back(c, now);
      }
      returned.clear();
    }
    while (!timers_.empty() && timers_.begin()->first <= now) {
      // A deadline is not readiness: the directions that returned EAGAIN stay parked, so the
      // pass reports the deadline instead of retrying them. Retrying a blocked client write
      // here could move a few bytes into a socket poll(2) does not call writable, restart the
      // send timeout, and cut a client that never reads only at twice --send-timeout.
      PoolConn* c = timers_.begin()->second;
      dispatch(c);  // clears the timer
    }
    flush_overflow();
    if (now >= next_sweep) {
      pool_.sweep(now);
      next_sweep = now + std::chrono::seconds(1);
    }
  }

  // Workers finish the step they are in (a step never waits for I/O), then stop.
  queue_->close();
  for (std::thread& t : workers) {
    t.join();
  }
  returns_->take(&returned);
  for (PoolConn* c : returned) {
    c->running = false;
    if (c->done) {
      destroy(c);
    }
  }
  for (PoolConn* c : queue_->take_all()) {
    c->running = false;
  }
  overflow_.clear();
  for (PoolConn* c : std::vector<PoolConn*>(conns_.begin(), conns_.end())) {
    if (c->st.ufd >= 0) {
      ::close(c->st.ufd);
    }
    close_abort(c->st.setup.client_fd);
    destroy(c);
  }
  gens_.current()->stop_health();
  if (listener_.fd >= 0) {
    ::close(listener_.fd);
    listener_.fd = -1;
  }
  ::close(wake_fd_);
  ::close(ep_);
  return status;
}

}  // namespace

int default_pool_threads() {
  return std::max(2, 2 * usable_cpus());
}

int PoolBackend::run(const core::Config& config, core::Listener& listener, int drain_fd) {
  // One balancer per generation (thread-safe, balancer.hpp): the workers share it.
  try {
    gens_.start(config);
  } catch (const std::exception& e) {
    core::log_error("pool backend: %s", e.what());
    return 1;
  }
  Reactor reactor(config, listener, drain_fd, status_, gens_);
  track(&reactor.pool());
  int status = reactor.run();
  untrack(&reactor.pool());
  return status;
}

std::string PoolBackend::status_json() const {
  auto get = [](const std::atomic<int>& v) {
    return std::to_string(v.load(std::memory_order_relaxed));
  };
  return "{\"worker_threads\":" + get(status_.threads) + ",\"workers_busy\":" + get(status_.busy) +
         ",\"queue_length\":" + get(status_.queued) +
         ",\"connections_held\":" + get(status_.connections) + "}";
}

std::unique_ptr<core::Backend> make_pool_backend() {
  return std::make_unique<PoolBackend>();
}

}  // namespace gearbox::backends
