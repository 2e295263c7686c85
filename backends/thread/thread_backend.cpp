// The `thread` backend: an acceptor loop hands each connection to a new detached pthread
// (stack size from --thread-stack) that runs the blocking pump over poll(2) until it is done.
#include "backends/thread/thread_backend.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>

#include "backends/common/blocking_pump.hpp"
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

// What the acceptor and every connection thread share. Heap-allocated and freed by the
// acceptor only once every connection thread has said it left; if the drain deadline passes
// first it is leaked on purpose (the process is about to exit and detached threads still point
// into it).
struct Shared {
  explicit Shared(const core::Config& config) : pool(config) {}

  UpstreamPool pool;  // one per process: every thread may reuse any idle upstream connection
  int drain_fd = -1;
  // eventfd: each connection thread adds 1 as the very last thing it does with `Shared`. Only
  // the acceptor counts live threads (started minus the sum read here), so no thread ever
  // reads shared state after saying it left: once the sum matches, `Shared` can go.
  int left_fd = -1;
};

struct Task {
  Shared* shared;
  std::shared_ptr<Generation> gen;  // the configuration in force at the accept
  int fd;
  sockaddr_storage peer;
};

// The last touch of `Shared` by a connection thread: `left_fd` is read before the write, and
// the write itself is what lets the acceptor free `Shared` (and close the eventfd).
void leave(int left_fd) {
  std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(left_fd, &one, sizeof one);
}

// Threads that left since the last call (the eventfd's count, reset by the read).
int take_left(int left_fd) {
  std::uint64_t count = 0;
  if (::read(left_fd, &count, sizeof count) != sizeof count) {
    return 0;
  }
  return static_cast<int>(count);
}

void* connection_main(void* arg) {
  std::unique_ptr<Task> task(static_cast<Task*>(arg));
  Shared& s = *task->shared;
  const int left_fd = s.left_fd;
  {
    core::Context ctx = task->gen->context();
    core::Peer peer{address_text(task->peer), &task->peer};
    core::Connection conn(ctx, std::move(peer), core::Clock::now());
    PollIo io;
    pump(conn, io, PumpSetup{task->fd, s.drain_fd, &ctx, &s.pool});
  }
  task.reset();  // the generation may end here: before leave(), which may free `Shared`
  leave(left_fd);
  return nullptr;
}

}  // namespace

int ThreadBackend::run(const core::Config& config, core::Listener& listener, int drain_fd) {
  // One balancer per generation, shared by every connection thread (it is thread-safe).
  try {
    gens_.start(config);
  } catch (const std::exception& e) {
    core::log_error("thread backend: %s", e.what());
    return 1;
  }
  auto* s = new Shared(config);
  s->drain_fd = drain_fd;
  const int max_connections = std::max(config.max_connections, 1);
  s->left_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (s->left_fd < 0) {
    core::log_error("thread backend: eventfd: %s", std::strerror(errno));
    delete s;
    return 1;
  }
  track(&s->pool);
  ::fcntl(listener.fd, F_SETFL, ::fcntl(listener.fd, F_GETFL) | O_NONBLOCK);

  pthread_attr_t attr;
  ::pthread_attr_init(&attr);
  ::pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  std::size_t stack = std::max<std::size_t>(config.thread_stack, PTHREAD_STACK_MIN);
  if (::pthread_attr_setstacksize(&attr, stack) != 0) {
    core::log_warn("thread backend: thread stack size %zu refused, using the default", stack);
  }

  int live = 0;  // connection threads started and not yet left (acceptor only)
  core::TimePoint paused_until{};
  bool warned = false;  // one warning per streak of accept or thread failures
  core::TimePoint next_sweep = core::Clock::now() + std::chrono::seconds(1);
  for (;;) {
    core::TimePoint now = core::Clock::now();
    // At the cap the listener is not watched: new connections wait in the kernel's listen
    // backlog (then SYNs are dropped and clients retry), as with nginx's worker_connections
    // and Apache's MaxRequestWorkers. Answering 503 instead would itself need an accept and a
    // thread, the very resources the cap protects.
    bool at_cap = live >= max_connections;
    bool accepting = !at_cap && now >= paused_until;
    if (accepting) {
      Accepted a = accept_client(listener.fd);
      if (a.fd >= 0) {
        warned = false;
        auto* task = new Task{s, gens_.current(), a.fd, a.peer};
        pthread_t tid;
        int err = ::pthread_create(&tid, &attr, connection_main, task);
        if (err == 0) {
          ++live;
        } else {
          // Out of threads (EAGAIN: RLIMIT_NPROC, memory for stacks): shed this connection
          // and back off like on EMFILE instead of failing every following one at once.
          if (!warned) {
            core::log_warn("thread backend: pthread_create: %s; pausing accepts",
                           std::strerror(err));
            warned = true;
          }
          delete task;
          close_abort(a.fd);
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

    pollfd fds[3] = {{drain_fd, POLLIN, 0}, {s->left_fd, POLLIN, 0}, {listener.fd, POLLIN, 0}};
    nfds_t nfds = accepting ? 3 : 2;
    // Idle upstream connections are swept once a second; echo mode has none.
    core::TimePoint until = config.mode == core::Mode::kProxy ? next_sweep : core::kNever;
    if (!at_cap && paused_until > now) {
      until = std::min(until, paused_until);
    }
    int r = ::poll(fds, nfds, wait_ms(now, until));
    if (r > 0 && (fds[1].revents & POLLIN) != 0) {
      live -= take_left(s->left_fd);
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

  // Drain: new connections are refused from now on; every connection thread watches drain_fd
  // too and finishes on its own.
  ::close(listener.fd);
  listener.fd = -1;
  untrack(&s->pool);
  gens_.current()->stop_health();
  core::TimePoint deadline = core::Clock::now() + config.drain_timeout;
  for (;;) {
    live -= take_left(s->left_fd);
    core::TimePoint now = core::Clock::now();
    if (live == 0) {
      break;
    }
    if (now >= deadline) {
      core::log_warn("thread backend: drain timeout, %d connections left open", live);
      ::pthread_attr_destroy(&attr);
      return 0;  // `s` leaks on purpose: see Shared
    }
    pollfd fd{s->left_fd, POLLIN, 0};
    ::poll(&fd, 1, wait_ms(now, deadline));
  }
  ::pthread_attr_destroy(&attr);
  ::close(s->left_fd);
  delete s;
  return 0;
}

std::unique_ptr<core::Backend> make_thread_backend() {
  return std::make_unique<ThreadBackend>();
}

}  // namespace gearbox::backends
