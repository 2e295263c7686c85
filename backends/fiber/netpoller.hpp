// The fiber backend's netpoller (Go's runtime/netpoll.go, over Boost.Fiber): one epoll set
// shared by every scheduler thread. A fiber whose socket operation would block parks on a
// Waiter; whichever thread polls next and sees the readiness (or the deadline) makes it ready
// on itself, so a parked fiber never waits for the thread it last ran on.
#pragma once

#include <poll.h>
#include <sys/epoll.h>

#include <array>
#include <atomic>
#include <boost/fiber/context.hpp>
#include <boost/intrusive/set.hpp>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "server/connection.hpp"

namespace gearbox::backends::fiber {

// One fiber's parking place, reused for every wait of that fiber. Waiters are never freed while
// the netpoller lives (Go's pollDesc cache): an epoll event already harvested by one thread may
// name a waiter whose fiber has moved on, so each event carries the wait's generation and a
// stale one is ignored.
struct Waiter {
  enum class State : std::uint8_t { kIdle, kArming, kParked, kFired };

  std::mutex mu;  // guards everything below but timer_hook
  State state = State::kIdle;
  std::uint16_t gen = 0;                   // bumped when a wait starts and when it ends
  boost::fibers::context* self = nullptr;  // the waiting fiber (kArming, kParked)
  short revents[2] = {0, 0};               // per watched socket (poll(2) bits)
  int registered[2] = {-1, -1};            // fds this waiter added to epoll (ADD vs MOD)
  bool drain_watch = false;                // the wait includes the drain fd
  bool drain_hit = false;
  bool timed_out = false;
  bool kicked = false;  // unpark() called: the next wait (or this one) ends at once
  core::TimePoint deadline = core::kNever;

  boost::intrusive::set_member_hook<> timer_hook;  // guarded by Netpoller::timers_mu_
};

// What one wait watches: up to two sockets (fd < 0: unused slot; events POLLIN / POLLOUT), the
// drain, and a deadline.
struct WaitSpec {
  int fd[2] = {-1, -1};
  short events[2] = {0, 0};
  bool drain = false;
  core::TimePoint deadline = core::kNever;
};

struct WaitResult {
  short revents[2] = {0, 0};
  bool drain = false;
  bool timed_out = false;
  bool kicked = false;
};

// A scheduler thread's idle state: how the netpoller sleeps and wakes it.
struct IdleSlot {
  std::condition_variable cv;  // with Netpoller::idle_mu_
  bool notified = false;       // a wake-up (Boost's notify()) not yet consumed
  bool polling = false;        // in epoll_wait as the poller
  bool sleeping = false;       // in cv.wait, listed in sleepers_
};

// The hook the netpoller uses to make a parked (detached) fiber ready on the calling thread;
// implemented by the scheduling algorithm installed on that thread (scheduler.hpp).
class ReadyHook {
 public:
  virtual void ready_detached(boost::fibers::context* ctx) noexcept = 0;

 protected:
  ~ReadyHook() = default;
};

// Called by NetpollScheduler: bind_ready_hook() once on its thread; park_yielded() first thing in
// awakened(ctx). park_yielded() returns true when ctx is the fiber that just yielded in
// Netpoller::wait() and is now parked (detached from the thread), false for any other fiber
// and for one whose wait ended meanwhile (then it is ready as usual).
void bind_ready_hook(ReadyHook* hook) noexcept;
bool park_yielded(boost::fibers::context* ctx) noexcept;

class Netpoller {
 public:
  // `drain_fd` turns readable when the server drains (main's pipe); -1 = never.
  explicit Netpoller(int drain_fd);
  ~Netpoller();
  Netpoller(const Netpoller&) = delete;
  Netpoller& operator=(const Netpoller&) = delete;

  Waiter* make_waiter();
  void free_waiter(Waiter* w);  // no wait in progress

  // Parks the calling fiber (a worker fiber on a thread running NetpollScheduler) until a
  // watched socket is ready, the server drains (spec.drain), unpark(w), or spec.deadline
  // (never before it). Sockets must be non-blocking. Returns at once when one of these already
  // holds.
  WaitResult wait(Waiter* w, const WaitSpec& spec);
  // Ends w's current wait, or the next one if none is in progress (a binary semaphore).
  // Any thread running NetpollScheduler.
  void unpark(Waiter* w);

  bool draining() const { return draining_.load(std::memory_order_acquire); }
  int drain_fd() const { return drain_fd_; }

  // Scheduler hooks (scheduler.hpp). idle(): the thread has no ready fiber; polls (one thread
  // at a time, Go's single blocking netpoller) or sleeps until `until`, a notify() or a
  // hand-over. notify(): wakes that thread's idle(). poll_now(): a non-blocking poll if no
  // thread is polling, so parked fibers are seen even while every thread stays busy.
  void idle(IdleSlot& me, ReadyHook& hook, core::TimePoint until);
  void notify(IdleSlot& slot);
  void poll_now(ReadyHook& hook);

  // After a drain timeout, with fibers still alive: idle threads sleep for good, so nothing
  // runs while the process exits.
  void freeze();

 private:
  struct ByDeadline {
    bool operator()(const Waiter& a, const Waiter& b) const { return a.deadline < b.deadline; }
  };
  using Timers = boost::intrusive::multiset<
      Waiter,
      boost::intrusive::member_hook<Waiter, boost::intrusive::set_member_hook<>,
                                    &Waiter::timer_hook>,
      boost::intrusive::compare<ByDeadline>>;

  // Polls once, waiting up to `until` (core::kNever = no limit, or now = not at all), and
  // readies on `hook` every fiber whose socket, deadline or drain came. Returns how many.
  int poll(ReadyHook& hook, core::TimePoint until);
  void start_drain(ReadyHook& hook);
  void arm(Waiter* w, int slot, int fd, short events, std::uint16_t gen);
  void break_poll();
  void release_poller(std::unique_lock<std::mutex>& lk);  // idle_mu_ held

  int ep_ = -1;
  int break_fd_ = -1;  // eventfd in ep_: interrupts the blocking poller
  int drain_fd_ = -1;
  std::atomic<bool> draining_{false};

  std::mutex waiters_mu_;
  std::vector<std::unique_ptr<Waiter>> all_;  // every waiter ever made (drain walks them)
  std::vector<Waiter*> free_;

  std::mutex timers_mu_;
  Timers timers_;                                        // waiters with a deadline, earliest first
  core::TimePoint poll_until_ = core::TimePoint::min();  // the poller's wake-up; min = none

  // The poller's buffers: poll() runs on one thread at a time (poller_busy_), often on the stack
  // of the fiber that is parking (pick_next), so they stay off fiber stacks.
  std::array<epoll_event, 128> events_{};
  std::array<boost::fibers::context*, 64> due_{};

  std::mutex idle_mu_;
  bool poller_busy_ = false;
  bool frozen_ = false;
  std::vector<IdleSlot*> sleepers_;
};

}  // namespace gearbox::backends::fiber
