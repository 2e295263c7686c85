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

// Drives `c` until it is done, then closes the client socket as it asks and returns; the
// caller destroys `c` afterwards (nothing is in flight then). Each pass performs every wanted
// operation once, non-blocking, and reports each completion with io.now(); after any event
// the wants are asked again, so no event is ever reported for a slot no longer wanted. Only a
// pass without progress waits, on exactly the fds and directions that returned EAGAIN, the
// connect in progress and the drain fd, until the core's deadline. No allocation per pass.
template <class Conn, class Io>
void pump(Conn& c, Io& io, const PumpSetup& setup) {
  using pump_detail::would_block;
  const int cfd = setup.client_fd;
  int ufd = -1;
  const core::Endpoint* uep = nullptr;  // what ufd is connected to, for the pool
  bool connecting = false;
  bool connect_ready = false;  // the wait saw the in-progress connect settle
  bool shut = false;
  bool drain_watch = setup.drain_fd >= 0;
  bool drain_ready = false;
  // An fd direction that returned EAGAIN since the last wait is not retried before waiting
  // again: the wait tells whether it became ready meanwhile, and a syscall is saved per pass.
  bool c_rd_again = false;
  bool c_wr_again = false;
  bool u_rd_again = false;
  bool u_wr_again = false;

  core::Wants w = c.wants();
  for (;;) {
    if (w.done) {
      break;
    }
    core::TimePoint now = io.now();
    bool progressed = false;
    auto refresh = [&] {
      progressed = true;
      w = c.wants();
      return !w.done;
    };

    if (w.client_shutdown_write && !shut) {
      ::shutdown(cfd, SHUT_WR);
      shut = true;
    }

    if (w.release_upstream != core::Release::kNone) {
      if (ufd >= 0) {
        if (w.release_upstream == core::Release::kReuse && setup.pool != nullptr && !connecting) {
          setup.pool->put(*uep, ufd, now);
        } else {
          ::close(ufd);
        }
      }
      ufd = -1;
      uep = nullptr;
      connecting = connect_ready = u_rd_again = u_wr_again = false;
      c.on_upstream_released(now);
      if (!refresh()) {
        continue;
      }
    }

    if (w.upstream_connect != nullptr) {
      if (connecting && connect_ready) {
        connecting = connect_ready = false;
        int err = connect_result(ufd);
        if (err == 0) {
          c.on_upstream_connected(false, now);
        } else {
          ::close(ufd);
          ufd = -1;
          uep = nullptr;
          c.on_upstream_connect_failed(err, now);
        }
        if (!refresh()) {
          continue;
        }
      } else if (ufd < 0) {
        const core::Endpoint& ep = *w.upstream_connect;
        u_rd_again = u_wr_again = false;
        if (w.upstream_may_reuse && setup.pool != nullptr) {
          ufd = setup.pool->take(ep, now);
        }
        if (ufd >= 0) {
          uep = &ep;
          c.on_upstream_connected(true, now);
        } else {
          bool in_progress = false;
          ufd = connect_nonblocking(ep, &in_progress);
          if (ufd < 0) {
            c.on_upstream_connect_failed(errno, now);
          } else if (in_progress) {
            uep = &ep;
            connecting = true;
          } else {
            uep = &ep;
            c.on_upstream_connected(false, now);
          }
        }
        if (!connecting && !refresh()) {
          continue;
        }
      }
    }

    if (!w.client_write.empty() && !c_wr_again) {
      ssize_t n = pump_detail::write_some(cfd, w.client_write);
      if (n >= 0) {
        c.on_client_written(static_cast<std::size_t>(n), now);
      } else if (would_block(errno)) {
        c_wr_again = true;
      } else {
        c.on_client_error(errno, now);
      }
      if (!c_wr_again && !refresh()) {
        continue;
      }
    }

    if (!w.upstream_write.empty() && !u_wr_again && !connecting) {
      ssize_t n = ufd >= 0 ? pump_detail::write_some(ufd, w.upstream_write) : -1;
      int err = ufd >= 0 ? errno : ENOTCONN;
      if (n >= 0) {
        c.on_upstream_written(static_cast<std::size_t>(n), now);
      } else if (would_block(err)) {
        u_wr_again = true;
      } else {
        c.on_upstream_error(err, now);
      }
      if (!u_wr_again && !refresh()) {
        continue;
      }
    }

    if (!w.client_read.empty() && !c_rd_again) {
      ssize_t n = pump_detail::read_some(cfd, w.client_read);
      if (n >= 0) {
        c.on_client_read(static_cast<std::size_t>(n), now);
      } else if (would_block(errno)) {
        c_rd_again = true;
      } else {
        c.on_client_error(errno, now);
      }
      if (!c_rd_again && !refresh()) {
        continue;
      }
    }

    if (!w.upstream_read.empty() && !u_rd_again && !connecting) {
      ssize_t n = ufd >= 0 ? pump_detail::read_some(ufd, w.upstream_read) : -1;
      int err = ufd >= 0 ? errno : ENOTCONN;
      if (n >= 0) {
        c.on_upstream_read(static_cast<std::size_t>(n), now);
      } else if (would_block(err)) {
        u_rd_again = true;
      } else {
        c.on_upstream_error(err, now);
      }
      if (!u_rd_again && !refresh()) {
        continue;
      }
    }

    if (drain_ready) {
      drain_ready = false;
      if (setup.context != nullptr) {
        setup.context->draining = true;
      }
      c.on_drain(now);
      if (!refresh()) {
        continue;
      }
    }

    if (w.deadline <= now) {
      c.on_deadline(now);
      if (!refresh()) {
        continue;
      }
    }

    if (progressed) {
      continue;
    }

    pollfd fds[3];
    nfds_t nfds = 0;
    int ui = -1;
    int di = -1;
    short cev = static_cast<short>((!w.client_read.empty() ? POLLIN : 0) |
                                   (!w.client_write.empty() ? POLLOUT : 0));
    if (cev != 0) {
      fds[nfds++] = pollfd{cfd, cev, 0};
    }
    short uev = 0;
    if (connecting) {
      uev = POLLOUT;
    } else if (ufd >= 0) {
      uev = static_cast<short>((!w.upstream_read.empty() ? POLLIN : 0) |
                               (!w.upstream_write.empty() ? POLLOUT : 0));
    }
    if (uev != 0) {
      ui = static_cast<int>(nfds);
      fds[nfds++] = pollfd{ufd, uev, 0};
    }
    if (drain_watch) {
      di = static_cast<int>(nfds);
      fds[nfds++] = pollfd{setup.drain_fd, POLLIN, 0};
    }
    // Nothing to wait for and no deadline would hang this thread forever: a core bug.
    assert(nfds > 0 || w.deadline != core::kNever);
    if (nfds == 0 && w.deadline == core::kNever) {
      w.close_mode = core::CloseMode::kAbort;
      break;
    }
    int r = io.wait(fds, nfds, w.deadline);
    c_rd_again = c_wr_again = u_rd_again = u_wr_again = false;
    if (r > 0) {
      if (ui >= 0 && connecting && fds[ui].revents != 0) {
        connect_ready = true;
      }
      if (di >= 0 && fds[di].revents != 0) {
        drain_watch = false;
        drain_ready = true;
      }
    }
  }

  if (ufd >= 0) {
    ::close(ufd);
  }
  if (w.close_mode == core::CloseMode::kAbort) {
    close_abort(cfd);
  } else {
    ::close(cfd);
  }
}

}  // namespace gearbox::backends
