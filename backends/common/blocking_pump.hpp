// The blocking pump: drives one core::Connection (and its upstream socket) with non-blocking
// syscalls, waiting for readiness only when nothing progressed. Shared by the stackful
// backends; how they wait (poll(2), a fiber netpoller) is the I/O policy's business.
#pragma once

#include <poll.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <climits>
#include <cstddef>
#include <ctime>
#include <span>

#include "backends/common/socket.hpp"
#include "backends/common/upstream_pool.hpp"
#include "server/connection.hpp"

namespace gearbox::backends {

// An I/O policy provides:
//   core::TimePoint now();
//   int wait(pollfd* fds, nfds_t n, core::TimePoint deadline);
// wait() returns like poll(2): > 0 when some fd has revents, 0 once `deadline` passed (never
// earlier), -1 with errno (EINTR is retried by the pump). It must not return 0 before
// now() >= deadline, or the pump spins until it does.

// The policy of OS threads and processes: ppoll(2), nanosecond timeout rounded up.
struct PollIo {
  core::TimePoint now() const { return core::Clock::now(); }
  int wait(pollfd* fds, nfds_t n, core::TimePoint deadline) const {
    if (deadline == core::kNever) {
      return ::ppoll(fds, n, nullptr, nullptr);
    }
    auto left = deadline - now();
    if (left <= core::Clock::duration::zero()) {
      return 0;
    }
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    timespec ts{static_cast<time_t>(ns / 1'000'000'000), static_cast<long>(ns % 1'000'000'000)};
    return ::ppoll(fds, n, &ts, nullptr);
  }
};

struct PumpSetup {
  int client_fd = -1;                // owned: closed by pump() as the core asks (close_mode)
  int drain_fd = -1;                 // turns readable when the server drains; -1 = none
  core::Context* context = nullptr;  // its `draining` is set before on_drain(); may be null
  UpstreamPool* pool = nullptr;      // idle upstream connections; null = never reuse
};

namespace pump_detail {

inline ssize_t read_some(int fd, std::span<char> buf) {
  ssize_t n;
  do {
    n = ::read(fd, buf.data(), buf.size());
  } while (n < 0 && errno == EINTR);
  return n;
}

// sendmsg rather than writev: MSG_NOSIGNAL turns a write to a reset peer into EPIPE instead
// of SIGPIPE, whatever the process's signal set-up.
inline ssize_t write_some(int fd, std::span<const iovec> iov) {
  msghdr msg{};
  msg.msg_iov = const_cast<iovec*>(iov.data());
  msg.msg_iovlen = std::min<std::size_t>(iov.size(), IOV_MAX);
  ssize_t n;
  do {
    n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  return n;
}

inline bool would_block(int err) {
  return err == EAGAIN || err == EWOULDBLOCK;
}

}  // namespace pump_detail

// Per-connection pump state that outlives one pass: pump() keeps it on its stack, the pool
// backend keeps it with the connection while the reactor waits for it. Only the thread running
// the pass touches it; whoever waits reports the wake-up with pump_woken_by().
struct PumpState {
  explicit PumpState(const PumpSetup& s) : setup(s), drain_watch(s.drain_fd >= 0) {}

  PumpSetup setup;
  core::Wants w;  // the last wants; set with pump_begin()
  int ufd = -1;
  const core::Endpoint* uep = nullptr;  // what ufd is connected to, for the pool
  bool connecting = false;
  bool connect_ready = false;  // the wait saw the in-progress connect settle
  bool shut = false;
  bool drain_watch = false;
  bool drain_ready = false;  // report on_drain() in the next pass (a waiter may set it)
  // An fd direction that returned EAGAIN since the last wait is not retried before waiting
  // again: the wait tells whether it became ready meanwhile, and a syscall is saved per pass.
  bool c_rd_again = false;
  bool c_wr_again = false;
  bool u_rd_again = false;
  bool u_wr_again = false;
};

// What a connection that cannot progress waits for: readiness of the client fd and of the
// upstream fd (poll events, 0 = not watched), the drain fd, and the core's deadline.
struct PumpWait {
  short client_events = 0;
  int upstream_fd = -1;
  short upstream_events = 0;
  bool drain = false;
  core::TimePoint deadline = core::kNever;
};

// Asks `c` for its first wants. Call once before the first pump_until_blocked().
template <class Conn>
void pump_begin(Conn& c, PumpState& st) {
  st.w = c.wants();
}

// One pass: performs every wanted operation once, non-blocking, and reports each completion
// with `now`; after any event the wants are asked again, so no event is ever reported for a
// slot no longer wanted. Returns true when some event was reported (st.w.done may then be set).
template <class Conn>
bool pump_pass(Conn& c, PumpState& st, core::TimePoint now) {
  using pump_detail::would_block;
  const PumpSetup& setup = st.setup;
  const int cfd = setup.client_fd;
  core::Wants& w = st.w;
  bool progressed = false;
  auto refresh = [&] {
    progressed = true;
    w = c.wants();
    return !w.done;
  };

  if (w.client_shutdown_write && !st.shut) {
    ::shutdown(cfd, SHUT_WR);
    st.shut = true;
  }

  if (w.release_upstream != core::Release::kNone) {
    if (st.ufd >= 0) {
      if (w.release_upstream == core::Release::kReuse && setup.pool != nullptr && !st.connecting) {
        setup.pool->put(*st.uep, st.ufd, now);
      } else {
        ::close(st.ufd);
      }
    }
    st.ufd = -1;
    st.uep = nullptr;
    st.connecting = st.connect_ready = st.u_rd_again = st.u_wr_again = false;
    c.on_upstream_released(now);
    if (!refresh()) {
      return true;
    }
  }

  if (w.upstream_connect != nullptr) {
    if (st.connecting && st.connect_ready) {
      st.connecting = st.connect_ready = false;
      int err = connect_result(st.ufd);
      if (err == 0) {
        c.on_upstream_connected(false, now);
      } else {
        ::close(st.ufd);
        st.ufd = -1;
        st.uep = nullptr;
        c.on_upstream_connect_failed(err, now);
      }
      if (!refresh()) {
        return true;
      }
    } else if (st.ufd < 0) {
      const core::Endpoint& ep = *w.upstream_connect;
      st.u_rd_again = st.u_wr_again = false;
      if (w.upstream_may_reuse && setup.pool != nullptr) {
        st.ufd = setup.pool->take(ep, now);
      }
      if (st.ufd >= 0) {
        st.uep = &ep;
        c.on_upstream_connected(true, now);
      } else {
        bool in_progress = false;
        st.ufd = connect_nonblocking(ep, &in_progress);
        if (st.ufd < 0) {
          c.on_upstream_connect_failed(errno, now);
        } else if (in_progress) {
          st.uep = &ep;
          st.connecting = true;
        } else {
          st.uep = &ep;
          c.on_upstream_connected(false, now);
        }
      }
      if (!st.connecting && !refresh()) {
        return true;
      }
    }
  }

  if (!w.client_write.empty() && !st.c_wr_again) {
    ssize_t n = pump_detail::write_some(cfd, w.client_write);
    if (n >= 0) {
      c.on_client_written(static_cast<std::size_t>(n), now);
    } else if (would_block(errno)) {
      st.c_wr_again = true;
    } else {
      c.on_client_error(errno, now);
    }
    if (!st.c_wr_again && !refresh()) {
      return true;
    }
  }

  if (!w.upstream_write.empty() && !st.u_wr_again && !st.connecting) {
    ssize_t n = st.ufd >= 0 ? pump_detail::write_some(st.ufd, w.upstream_write) : -1;
    int err = st.ufd >= 0 ? errno : ENOTCONN;
    if (n >= 0) {
      c.on_upstream_written(static_cast<std::size_t>(n), now);
    } else if (would_block(err)) {
      st.u_wr_again = true;
    } else {
      c.on_upstream_error(err, now);
    }
    if (!st.u_wr_again && !refresh()) {
      return true;
    }
  }

  if (!w.client_read.empty() && !st.c_rd_again) {
    ssize_t n = pump_detail::read_some(cfd, w.client_read);
    if (n >= 0) {
      // A short read emptied the socket: the next read waits for readiness rather than cost a
      // read(2) that returns EAGAIN (nginx clears rev->ready the same way).
      st.c_rd_again = n > 0 && static_cast<std::size_t>(n) < w.client_read.size();
      c.on_client_read(static_cast<std::size_t>(n), now);
      if (!refresh()) {
        return true;
      }
    } else if (would_block(errno)) {
      st.c_rd_again = true;
    } else {
      c.on_client_error(errno, now);
      if (!refresh()) {
        return true;
      }
    }
  }

  if (!w.upstream_read.empty() && !st.u_rd_again && !st.connecting) {
    ssize_t n = st.ufd >= 0 ? pump_detail::read_some(st.ufd, w.upstream_read) : -1;
    int err = st.ufd >= 0 ? errno : ENOTCONN;
    if (n >= 0) {
      st.u_rd_again = n > 0 && static_cast<std::size_t>(n) < w.upstream_read.size();
      c.on_upstream_read(static_cast<std::size_t>(n), now);
      if (!refresh()) {
        return true;
      }
    } else if (would_block(err)) {
      st.u_rd_again = true;
    } else {
      c.on_upstream_error(err, now);
      if (!refresh()) {
        return true;
      }
    }
  }

  if (st.drain_ready) {
    st.drain_ready = false;
    if (setup.context != nullptr) {
      setup.context->draining = true;
    }
    c.on_drain(now);
    if (!refresh()) {
      return true;
    }
  }

  if (w.deadline <= now) {
    c.on_deadline(now);
    if (!refresh()) {
      return true;
    }
  }
  return progressed;
}

// Runs passes with io.now() until `c` is done (returns true) or a pass made no progress
// (returns false and fills *wait with exactly the fds and directions that returned EAGAIN,
// the connect in progress and the drain fd, until the core's deadline). Never blocks.
// A connection wanting nothing and no deadline would wait forever: a core bug, asserted, and
// in release builds it is aborted (done, CloseMode::kAbort).
template <class Conn, class Io>
bool pump_until_blocked(Conn& c, PumpState& st, Io& io, PumpWait* wait) {
  for (;;) {
    if (st.w.done) {
      return true;
    }
    if (pump_pass(c, st, io.now())) {
      continue;
    }
    const core::Wants& w = st.w;
    *wait = PumpWait{};
    wait->client_events = static_cast<short>((!w.client_read.empty() ? POLLIN : 0) |
                                             (!w.client_write.empty() ? POLLOUT : 0));
    if (st.connecting) {
      wait->upstream_events = POLLOUT;
    } else if (st.ufd >= 0) {
      wait->upstream_events = static_cast<short>((!w.upstream_read.empty() ? POLLIN : 0) |
                                                 (!w.upstream_write.empty() ? POLLOUT : 0));
    }
    if (wait->upstream_events != 0) {
      wait->upstream_fd = st.ufd;
    }
    wait->drain = st.drain_watch;
    wait->deadline = w.deadline;
    bool nothing = wait->client_events == 0 && wait->upstream_events == 0 && !wait->drain;
    assert(!nothing || w.deadline != core::kNever);
    if (nothing && w.deadline == core::kNever) {
      st.w.close_mode = core::CloseMode::kAbort;
      st.w.done = true;
      return true;
    }
    return false;
  }
}

// The wait for `wait` reported readiness: only the directions that became ready (or errored)
// are tried again, so a wake-up for the upstream does not cost a read(2) on the client that
// would return EAGAIN again. A wait that ended at the deadline reports nothing: a deadline is
// not readiness, and retrying a parked write then could restart the core's send timeout.
inline void pump_woken_by(PumpState& st, short client_revents, short upstream_revents,
                          bool drain_ready) {
  constexpr short kFail = POLLERR | POLLHUP | POLLNVAL;
  if ((client_revents & (POLLIN | kFail)) != 0) {
    st.c_rd_again = false;
  }
  if ((client_revents & (POLLOUT | kFail)) != 0) {
    st.c_wr_again = false;
  }
  if ((upstream_revents & (POLLIN | kFail)) != 0) {
    st.u_rd_again = false;
  }
  if ((upstream_revents & (POLLOUT | kFail)) != 0) {
    st.u_wr_again = false;
  }
  if (upstream_revents != 0 && st.connecting) {
    st.connect_ready = true;
  }
  if (drain_ready && st.drain_watch) {
    st.drain_watch = false;
    st.drain_ready = true;
  }
}

// After pump_until_blocked() returned true: closes the upstream socket and the client socket
// as the core asked (close_mode). The caller then destroys the connection.
inline void pump_finish(PumpState& st) {
  if (st.ufd >= 0) {
    ::close(st.ufd);
    st.ufd = -1;
  }
  if (st.w.close_mode == core::CloseMode::kAbort) {
    close_abort(st.setup.client_fd);
  } else {
    ::close(st.setup.client_fd);
  }
}

// Drives `c` until it is done, then closes the client socket as it asks and returns; the
// caller destroys `c` afterwards (nothing is in flight then). Passes as in pump_pass(); only a
// pass without progress waits, with io.wait(), on what pump_until_blocked() names. No
// allocation per pass.
template <class Conn, class Io>
void pump(Conn& c, Io& io, const PumpSetup& setup) {
  PumpState st(setup);
  pump_begin(c, st);
  PumpWait wait;
  while (!pump_until_blocked(c, st, io, &wait)) {
    pollfd fds[3];
    nfds_t nfds = 0;
    int ci = -1;
    int ui = -1;
    int di = -1;
    if (wait.client_events != 0) {
      ci = static_cast<int>(nfds);
      fds[nfds++] = pollfd{setup.client_fd, wait.client_events, 0};
    }
    if (wait.upstream_events != 0) {
      ui = static_cast<int>(nfds);
      fds[nfds++] = pollfd{wait.upstream_fd, wait.upstream_events, 0};
    }
    if (wait.drain) {
      di = static_cast<int>(nfds);
      fds[nfds++] = pollfd{setup.drain_fd, POLLIN, 0};
    }
    int r = io.wait(fds, nfds, wait.deadline);
    if (r > 0) {
      pump_woken_by(st, ci >= 0 ? fds[ci].revents : 0, ui >= 0 ? fds[ui].revents : 0,
                    di >= 0 && fds[di].revents != 0);
    }
  }
  pump_finish(st);
}

}  // namespace gearbox::backends
