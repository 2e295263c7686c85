// The blocking pump's I/O policy for fibers: wait() parks the calling fiber on the netpoller
// instead of blocking the thread in poll(2), so the thread runs other fibers meanwhile.
#pragma once

#include <poll.h>

#include <cerrno>

#include "backends/fiber/netpoller.hpp"
#include "server/connection.hpp"

namespace gearbox::backends::fiber {

struct FiberIo {
  Netpoller* np;
  Waiter* waiter;  // this fiber's, for its whole life

  core::TimePoint now() const { return core::Clock::now(); }

  // As poll(2) over at most two sockets plus the drain fd (blocking_pump.hpp's contract): > 0
  // with revents set, 0 once `deadline` passed.
  int wait(pollfd* fds, nfds_t n, core::TimePoint deadline) const {
    WaitSpec spec;
    spec.deadline = deadline;
    int slot_of[3] = {-1, -1, -1};
    int slots = 0;
    for (nfds_t i = 0; i < n; ++i) {
      fds[i].revents = 0;
      if (fds[i].fd == np->drain_fd()) {
        spec.drain = true;
      } else if (slots < 2) {
        slot_of[i] = slots;
        spec.fd[slots] = fds[i].fd;
        spec.events[slots] = fds[i].events;
        ++slots;
      } else {
        errno = EINVAL;
        return -1;
      }
    }
    WaitResult r = np->wait(waiter, spec);
    int ready = 0;
    for (nfds_t i = 0; i < n; ++i) {
      if (slot_of[i] >= 0) {
        fds[i].revents = r.revents[slot_of[i]];
      } else if (r.drain) {
        fds[i].revents = POLLIN;
      }
      ready += fds[i].revents != 0 ? 1 : 0;
    }
    return ready;
  }
};

}  // namespace gearbox::backends::fiber
