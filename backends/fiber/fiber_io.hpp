// The blocking pump's I/O policy for fibers: wait() parks the calling fiber on the netpoller
// instead of blocking the thread in poll(2), so the thread runs other fibers meanwhile.
#pragma once

#include <poll.h>

#include <atomic>
#include <boost/fiber/operations.hpp>
#include <cerrno>
#include <chrono>

#include "backends/fiber/netpoller.hpp"
#include "server/connection.hpp"

namespace gearbox::backends::fiber {

class FiberIo {
 public:
  // `waiter` is this fiber's, for its whole life.
  // `parked`, when not null, counts the fibers parked in wait() (the admin /status page).
  FiberIo(Netpoller& np, Waiter* waiter, std::atomic<int>* parked = nullptr)
      : np_(&np), waiter_(waiter), parked_(parked) {}

  // Called once per pump pass: also the fiber's preemption point. A connection that keeps
  // progressing (a long pipeline into roomy socket buffers) never waits, so after a time slice
  // it yields to the other ready fibers (Go preempts a goroutine after 10 ms for the same reason).
  core::TimePoint now() {
    core::TimePoint t = core::Clock::now();
    if (t - slice_start_ >= kSlice) {
      boost::this_fiber::yield();
      t = core::Clock::now();
      slice_start_ = t;
    }
    return t;
  }

  // As poll(2) over at most two sockets plus the drain fd (blocking_pump.hpp's contract): > 0
  // with revents set, 0 once `deadline` passed.
  int wait(pollfd* fds, nfds_t n, core::TimePoint deadline) {
    WaitSpec spec;
    spec.deadline = deadline;
    int slot_of[3] = {-1, -1, -1};
    int slots = 0;
    for (nfds_t i = 0; i < n; ++i) {
      fds[i].revents = 0;
      if (fds[i].fd == np_->drain_fd()) {
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
    if (parked_ != nullptr) {
      parked_->fetch_add(1, std::memory_order_relaxed);
    }
    WaitResult r = np_->wait(waiter_, spec);
    if (parked_ != nullptr) {
      parked_->fetch_sub(1, std::memory_order_relaxed);
    }
    slice_start_ = core::Clock::now();
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

 private:
  static constexpr std::chrono::milliseconds kSlice{2};

  Netpoller* np_;
  Waiter* waiter_;
  std::atomic<int>* parked_;
  core::TimePoint slice_start_ = core::Clock::now();
};

}  // namespace gearbox::backends::fiber
