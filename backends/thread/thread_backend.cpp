// The `thread` backend: an acceptor loop hands each connection to a new detached pthread
// (stack size from --thread-stack) that runs the blocking pump over poll(2) until it is done.
#include "backends/thread/thread_backend.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>

#include "backends/common/blocking_pump.hpp"
#include "backends/common/health_check.hpp"
#include "backends/common/socket.hpp"
#include "backends/common/upstream_pool.hpp"
#include "server/balancer.hpp"
#include "server/connection.hpp"
#include "server/log.hpp"

namespace gearbox::backends {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

// What the acceptor and every connection thread share. Heap-allocated and freed by the
// acceptor only once no connection thread is left; if the drain deadline passes first it is
// leaked on purpose (the process is about to exit and detached threads still point into it).
struct Shared {
  explicit Shared(const core::Config& config) : pool(config) {}

  core::Context base;  // copied per connection: `draining` is then written by one thread only
  UpstreamPool pool;   // one per process: every thread may reuse any idle upstream connection
  std::unique_ptr<core::Upstreams> upstreams;  // proxy mode; thread-safe (balancer.hpp)
  std::unique_ptr<HealthChecker> health;
  int drain_fd = -1;
  int wake_fd = -1;  // eventfd: a thread left while the acceptor was at the cap or draining
  int max_connections = 0;
  std::atomic<int> live{0};
  std::atomic<bool> draining{false};
};

struct Task {
  Shared* shared;
  int fd;
  sockaddr_storage peer;
};

void wake(int fd) {
  std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(fd, &one, sizeof one);
}

void clear_wake(int fd) {
  std::uint64_t count;
  [[maybe_unused]] ssize_t n = ::read(fd, &count, sizeof count);
}

void leave(Shared& s) {
  int before = s.live.fetch_sub(1);
  if (before == s.max_connections || (before == 1 && s.draining.load())) {
    wake(s.wake_fd);
  }
}

void* connection_main(void* arg) {
  std::unique_ptr<Task> task(static_cast<Task*>(arg));
  Shared& s = *task->shared;
  {
    core::Context ctx = s.base;
    core::Peer peer{address_text(task->peer), &task->peer};
    core::Connection conn(ctx, std::move(peer), core::Clock::now());
    PollIo io;
    pump(conn, io, PumpSetup{task->fd, s.drain_fd, &ctx, &s.pool});
  }
  leave(s);
  return nullptr;
}

}  // namespace

int ThreadBackend::run(const core::Config& config, core::Listener& listener, int drain_fd) {
  auto* s = new Shared(config);
  s->base.config = &config;
  if (config.mode == core::Mode::kProxy) {
    // One balancer per process, shared by every connection thread (it is thread-safe).
    try {
      s->upstreams = std::make_unique<core::Upstreams>(config);
    } catch (const std::exception& e) {
      core::log_error("thread backend: %s", e.what());
      delete s;
      return 1;
    }
    s->base.upstreams = s->upstreams.get();
    s->health = std::make_unique<HealthChecker>(*s->upstreams);
    s->health->start();
  }
  s->drain_fd = drain_fd;
  s->max_connections = std::max(config.max_connections, 1);
  s->wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->wake_fd < 0) {
    core::log_error("thread backend: eventfd: %s", std::strerror(errno));
    delete s;
    return 1;
  }
  ::fcntl(listener.fd, F_SETFL, ::fcntl(listener.fd, F_GETFL) | O_NONBLOCK);

  pthread_attr_t attr;
  ::pthread_attr_init(&attr);
  ::pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  std::size_t stack = std::max<std::size_t>(config.thread_stack, PTHREAD_STACK_MIN);
  if (::pthread_attr_setstacksize(&attr, stack) != 0) {
    core::log_warn("thread backend: thread stack size %zu refused, using the default", stack);
  }

  core::TimePoint paused_until{};
  bool warned = false;  // one warning per streak of accept or thread failures
  core::TimePoint next_sweep = core::Clock::now() + std::chrono::seconds(1);
  for (;;) {
    core::TimePoint now = core::Clock::now();
    // At the cap the listener is not watched: new connections wait in the kernel's listen
    // backlog (then SYNs are dropped and clients retry), as with nginx's worker_connections
    // and Apache's MaxRequestWorkers. Answering 503 instead would itself need an accept and a
    // thread, the very resources the cap protects.
    bool at_cap = s->live.load() >= s->max_connections;
    bool accepting = !at_cap && now >= paused_until;
    if (accepting) {
      Accepted a = accept_client(listener.fd);
      if (a.fd >= 0) {
        warned = false;
        auto* task = new Task{s, a.fd, a.peer};
        s->live.fetch_add(1);
        pthread_t tid;
        int err = ::pthread_create(&tid, &attr, connection_main, task);
        if (err != 0) {
          // Out of threads (EAGAIN: RLIMIT_NPROC, memory for stacks): shed this connection
          // and back off like on EMFILE instead of failing every following one at once.
          if (!warned) {
            core::log_warn("thread backend: pthread_create: %s; pausing accepts",
                           std::strerror(err));
            warned = true;
          }
          delete task;
          close_abort(a.fd);
          leave(*s);
          paused_until = now + kAcceptPause;
        }
        continue;
      }
      if (accept_should_pause(a.err)) {
        if (!warned) {
          core::log_warn("thread backend: accept: %s; pausing accepts", std::strerror(a.err));
          warned = true;
        }
        paused_until = now + kAcceptPause;
        accepting = false;
      } else if (a.err != EAGAIN) {
        continue;
      }
    }

    pollfd fds[3] = {{drain_fd, POLLIN, 0}, {s->wake_fd, POLLIN, 0}, {listener.fd, POLLIN, 0}};
    nfds_t nfds = accepting ? 3 : 2;
    // Idle upstream connections are swept once a second; echo mode has none.
    core::TimePoint until = config.mode == core::Mode::kProxy ? next_sweep : core::kNever;
    if (!at_cap && paused_until > now) {
      until = std::min(until, paused_until);
    }
    int r = ::poll(fds, nfds, wait_ms(now, until));
    if (r > 0 && (fds[1].revents & POLLIN) != 0) {
      clear_wake(s->wake_fd);
    }
    if (r > 0 && fds[0].revents != 0) {
      break;
    }
    now = core::Clock::now();
    if (now >= next_sweep) {
      s->pool.sweep(now);
      next_sweep = now + std::chrono::seconds(1);
    }
  }

  // Drain: every connection thread watches drain_fd too and finishes on its own.
  if (s->health) {
    s->health->stop();
  }
  ::close(listener.fd);
  listener.fd = -1;
  s->draining.store(true);
  core::TimePoint deadline = core::Clock::now() + config.drain_timeout;
  for (;;) {
    int live = s->live.load();
    core::TimePoint now = core::Clock::now();
    if (live == 0) {
      break;
    }
    if (now >= deadline) {
      core::log_warn("thread backend: drain timeout, %d connections left open", live);
      ::pthread_attr_destroy(&attr);
      return 0;  // `s` leaks on purpose: see Shared
    }
    pollfd fd{s->wake_fd, POLLIN, 0};
    if (::poll(&fd, 1, wait_ms(now, deadline)) > 0) {
      clear_wake(s->wake_fd);
    }
  }
  ::pthread_attr_destroy(&attr);
  ::close(s->wake_fd);
  delete s;
  return 0;
}

std::unique_ptr<core::Backend> make_thread_backend() {
  return std::make_unique<ThreadBackend>();
}

}  // namespace gearbox::backends
