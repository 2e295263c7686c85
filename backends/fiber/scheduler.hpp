// The fiber backend's scheduling algorithm: one of Boost.Fiber's multi-thread algorithms
// (shared_work: one ready queue for every thread, so any idle thread runs any ready fiber, as
// Go's Ps take from the global run queue) with the netpoller wired into it (romange/helio's
// epoll scheduler): the poll happens in suspend_until() when the thread has no ready fiber, and
// notify() interrupts it.
#pragma once

#include <boost/fiber/algo/algorithm.hpp>
#include <boost/fiber/context.hpp>
#include <chrono>
#include <cstdint>
#include <utility>

#include "backends/fiber/netpoller.hpp"

namespace gearbox::backends::fiber {

template <class Base>
class NetpollScheduler final : public Base, public ReadyHook {
 public:
  // Constructed by boost::fibers::use_scheduling_algorithm on the thread it schedules.
  template <class... Args>
  explicit NetpollScheduler(Netpoller& np, Args&&... args)
      : Base(std::forward<Args>(args)...), np_(np) {
    bind_ready_hook(this);
  }

  void awakened(boost::fibers::context* ctx) noexcept override {
    if (!park_yielded(ctx)) {
      Base::awakened(ctx);
    }
  }

  boost::fibers::context* pick_next() noexcept override {
    // While every thread stays busy nobody reaches suspend_until(): poll now and then anyway,
    // or parked fibers would starve behind ready ones (Go's sysmon does the same).
    if (++ticks_ % kPollEvery == 0) {
      np_.poll_now(*this);
    }
    return Base::pick_next();
  }

  void suspend_until(std::chrono::steady_clock::time_point const& until) noexcept override {
    np_.idle(idle_, *this, until);
  }

  void notify() noexcept override { np_.notify(idle_); }

  // A fiber the netpoller parked (detached) is ready: it joins this thread, then the ready
  // queue, from which the algorithm may still move it to another thread.
  void ready_detached(boost::fibers::context* ctx) noexcept override {
    boost::fibers::context::active()->attach(ctx);
    Base::awakened(ctx);
  }

 private:
  static constexpr std::uint32_t kPollEvery = 61;  // Go's schedtick % 61 fairness check

  Netpoller& np_;
  IdleSlot idle_;
  std::uint32_t ticks_ = 0;
};

}  // namespace gearbox::backends::fiber
