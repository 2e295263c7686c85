// The netpoller: parking and waking fibers on one shared epoll set, its timers, and the idle
// protocol of the scheduler threads (one polls, the others sleep until handed the poll).
#include "backends/fiber/netpoller.hpp"

#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <algorithm>
#include <boost/fiber/operations.hpp>
#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "server/log.hpp"

namespace gearbox::backends::fiber {
namespace {

using boost::fibers::context;

// epoll data: a Waiter pointer (8-aligned, user space: 48 bits) with the socket slot in bit 0
// and the wait's generation in the top 16 bits; or one of these tags, which no pointer equals.
constexpr std::uint64_t kTagBreak = 0;
constexpr std::uint64_t kTagDrain = 8;
constexpr std::uint64_t kPointerMask = 0x0000'FFFF'FFFF'FFF8ULL;

std::uint64_t encode(Waiter* w, int slot, std::uint16_t gen) {
  return (reinterpret_cast<std::uint64_t>(w) & kPointerMask) | static_cast<std::uint64_t>(slot) |
         (static_cast<std::uint64_t>(gen) << 48);
}

// The parking fiber, between its yield and the awakened() that follows on the same thread.
thread_local Waiter* tls_parking = nullptr;
// The scheduling algorithm of this thread (set by NetpollScheduler), for unpark().
thread_local ReadyHook* tls_hook = nullptr;

std::uint32_t epoll_events(short events) {
  std::uint32_t e = EPOLLONESHOT;
  if ((events & POLLIN) != 0) {
    e |= EPOLLIN | EPOLLRDHUP;
  }
  if ((events & POLLOUT) != 0) {
    e |= EPOLLOUT;
  }
  return e;
}

short poll_events(std::uint32_t e) {
  short r = 0;
  if ((e & (EPOLLIN | EPOLLRDHUP)) != 0) {
    r |= POLLIN;
  }
  if ((e & EPOLLOUT) != 0) {
    r |= POLLOUT;
  }
  if ((e & EPOLLERR) != 0) {
    r |= POLLERR;
  }
  if ((e & EPOLLHUP) != 0) {
    r |= POLLHUP;
  }
  return r;
}

// Ends w's wait (w->mu held). Returns the fiber to make ready when it is already parked; a
// fiber still arming sees kFired itself and does not park.
context* fire_locked(Waiter& w) {
  if (w.state == Waiter::State::kArming) {
    w.state = Waiter::State::kFired;
    return nullptr;
  }
  if (w.state == Waiter::State::kParked) {
    w.state = Waiter::State::kFired;
    return w.self;
  }
  return nullptr;
}

int timeout_ms(core::TimePoint now, core::TimePoint until) {
  if (until == core::kNever) {
    return -1;
  }
  if (until <= now) {
    return 0;
  }
  auto ms = std::chrono::ceil<std::chrono::milliseconds>(until - now).count();
  return static_cast<int>(std::min<long long>(ms, 24LL * 3600 * 1000));
}

}  // namespace

// Called by NetpollScheduler::awakened() for the fiber that just yielded in wait(): true when
// it is now parked (detached from its thread); false when it was fired meanwhile and must be
// made ready as usual.
void bind_ready_hook(ReadyHook* hook) noexcept {
  tls_hook = hook;
}

bool park_yielded(context* ctx) noexcept {
  Waiter* w = tls_parking;
  if (w == nullptr || w->self != ctx) {
    return false;
  }
  tls_parking = nullptr;
  // Detached, the fiber belongs to no thread while it waits: the thread that sees its event
  // attaches it to itself (Boost.Fiber only migrates ready fibers otherwise).
  ctx->detach();
  std::lock_guard lock(w->mu);
  if (w->state == Waiter::State::kArming) {
    w->state = Waiter::State::kParked;
    return true;
  }
  context::active()->attach(ctx);
  return false;
}

Netpoller::Netpoller(int drain_fd) : drain_fd_(drain_fd) {
  ep_ = ::epoll_create1(EPOLL_CLOEXEC);
  break_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (ep_ < 0 || break_fd_ < 0) {
    core::log_error("fiber backend: epoll/eventfd: %s", std::strerror(errno));
    std::abort();
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTagBreak;
  ::epoll_ctl(ep_, EPOLL_CTL_ADD, break_fd_, &ev);
  if (drain_fd_ >= 0) {
    ev.data.u64 = kTagDrain;
    ::epoll_ctl(ep_, EPOLL_CTL_ADD, drain_fd_, &ev);
  }
}

Netpoller::~Netpoller() {
  timers_.clear();
  ::close(break_fd_);
  ::close(ep_);
}

Waiter* Netpoller::make_waiter() {
  std::lock_guard lock(waiters_mu_);
  if (!free_.empty()) {
    Waiter* w = free_.back();
    free_.pop_back();
    return w;
  }
  all_.push_back(std::make_unique<Waiter>());
  return all_.back().get();
}

void Netpoller::free_waiter(Waiter* w) {
  {
    std::lock_guard lock(w->mu);
    assert(w->state == Waiter::State::kIdle);
    ++w->gen;
    w->registered[0] = w->registered[1] = -1;
    w->kicked = false;
  }
  std::lock_guard lock(waiters_mu_);
  free_.push_back(w);
}

void Netpoller::arm(Waiter* w, int slot, int fd, short events, std::uint16_t gen) {
  epoll_event ev{};
  ev.events = epoll_events(events);
  ev.data.u64 = encode(w, slot, gen);
  // An fd this waiter registered is modified; any other is added, or modified when another
  // waiter registered it before (a pooled upstream connection changes hands).
  bool mine = w->registered[slot] == fd;
  int r = ::epoll_ctl(ep_, mine ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev);
  if (r != 0 && (errno == ENOENT || errno == EEXIST)) {
    r = ::epoll_ctl(ep_, errno == ENOENT ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, fd, &ev);
  }
  if (r == 0) {
    w->registered[slot] = fd;
    return;
  }
  // Not pollable: report it ready so the caller's retry meets the error itself.
  std::lock_guard lock(w->mu);
  w->revents[slot] |= POLLERR;
  fire_locked(*w);
}

WaitResult Netpoller::wait(Waiter* w, const WaitSpec& spec) {
  std::uint16_t gen;
  {
    std::lock_guard lock(w->mu);
    assert(w->state == Waiter::State::kIdle);
    gen = ++w->gen;
    w->state = Waiter::State::kArming;
    w->self = context::active();
    w->revents[0] = w->revents[1] = 0;
    w->drain_watch = spec.drain;
    w->drain_hit = spec.drain && draining();
    w->timed_out = false;
    w->deadline = spec.deadline;
    if (w->drain_hit || w->kicked) {
      w->state = Waiter::State::kFired;
    }
  }
  for (int slot = 0; slot < 2; ++slot) {
    if (spec.fd[slot] >= 0 && spec.events[slot] != 0) {
      arm(w, slot, spec.fd[slot], spec.events[slot], gen);
    }
  }
  bool timed = spec.deadline != core::kNever;
  if (timed) {
    bool interrupt = false;
    {
      std::lock_guard lock(timers_mu_);
      timers_.insert(*w);
      interrupt = spec.deadline < poll_until_;
    }
    if (interrupt) {
      break_poll();  // the poller sleeps past this deadline (Go's wakeNetPoller)
    }
  }
  bool fired;
  {
    std::lock_guard lock(w->mu);
    fired = w->state == Waiter::State::kFired;
  }
  if (!fired) {
    // The park: yield, and the awakened() that follows on this thread once we are switched out
    // parks us (park_yielded) unless an event fired meanwhile.
    tls_parking = w;
    boost::this_fiber::yield();
  }
  WaitResult result;
  {
    std::lock_guard lock(w->mu);
    assert(w->state == Waiter::State::kFired);
    w->state = Waiter::State::kIdle;
    w->self = nullptr;
    ++w->gen;  // events harvested for this wait but not yet handled are now stale
    result.revents[0] = w->revents[0];
    result.revents[1] = w->revents[1];
    result.drain = w->drain_hit;
    result.timed_out = w->timed_out;
    result.kicked = w->kicked;
    w->kicked = false;
  }
  if (timed) {
    std::lock_guard lock(timers_mu_);
    if (w->timer_hook.is_linked()) {
      timers_.erase(timers_.iterator_to(*w));
    }
  }
  return result;
}

void Netpoller::unpark(Waiter* w) {
  context* ctx;
  {
    std::lock_guard lock(w->mu);
    w->kicked = true;
    ctx = fire_locked(*w);
  }
  if (ctx != nullptr) {
    assert(tls_hook != nullptr);
    tls_hook->ready_detached(ctx);
  }
}

void Netpoller::break_poll() {
  std::uint64_t one = 1;
  [[maybe_unused]] ssize_t n = ::write(break_fd_, &one, sizeof one);
}

void Netpoller::start_drain(ReadyHook& hook) {
  if (draining_.exchange(true, std::memory_order_acq_rel)) {
    return;
  }
  ::epoll_ctl(ep_, EPOLL_CTL_DEL, drain_fd_, nullptr);  // it stays readable
  std::vector<context*> ready;
  {
    std::lock_guard lock(waiters_mu_);
    for (const auto& w : all_) {
      std::lock_guard wl(w->mu);
      if (w->drain_watch &&
          (w->state == Waiter::State::kArming || w->state == Waiter::State::kParked)) {
        w->drain_hit = true;
        if (context* ctx = fire_locked(*w)) {
          ready.push_back(ctx);
        }
      }
    }
  }
  for (context* ctx : ready) {
    hook.ready_detached(ctx);
  }
}

int Netpoller::poll(ReadyHook& hook, core::TimePoint until) {
  core::TimePoint now = core::Clock::now();
  {
    std::lock_guard lock(timers_mu_);
    if (!timers_.empty()) {
      until = std::min(until, timers_.begin()->deadline);
    }
    poll_until_ = until;
  }
  epoll_event* events = events_.data();
  int n = ::epoll_wait(ep_, events, static_cast<int>(events_.size()), timeout_ms(now, until));
  {
    std::lock_guard lock(timers_mu_);
    poll_until_ = core::TimePoint::min();
  }
  int readied = 0;
  bool drain = false;
  for (int i = 0; i < n; ++i) {
    std::uint64_t data = events[i].data.u64;
    if (data == kTagBreak) {
      std::uint64_t count;
      [[maybe_unused]] ssize_t r = ::read(break_fd_, &count, sizeof count);
      continue;
    }
    if (data == kTagDrain) {
      drain = true;
      continue;
    }
    auto* w = reinterpret_cast<Waiter*>(data & kPointerMask);
    int slot = static_cast<int>(data & 1);
    auto gen = static_cast<std::uint16_t>(data >> 48);
    context* ctx = nullptr;
    {
      std::lock_guard lock(w->mu);
      if (w->gen != gen) {
        continue;  // that wait is over
      }
      w->revents[slot] |= poll_events(events[i].events);
      ctx = fire_locked(*w);
    }
    if (ctx != nullptr) {
      hook.ready_detached(ctx);
      ++readied;
    }
  }
  // Deadlines: every waiter due by now, in one pass under the lock.
  context** due = due_.data();
  for (;;) {
    int k = 0;
    {
      std::lock_guard lock(timers_mu_);
      now = core::Clock::now();
      while (k < static_cast<int>(due_.size()) && !timers_.empty() &&
             timers_.begin()->deadline <= now) {
        Waiter& w = *timers_.begin();
        timers_.erase(timers_.begin());
        std::lock_guard wl(w.mu);
        if (w.state == Waiter::State::kArming || w.state == Waiter::State::kParked) {
          w.timed_out = true;
          if (context* ctx = fire_locked(w)) {
            due[k++] = ctx;
          }
        }
      }
    }
    for (int i = 0; i < k; ++i) {
      hook.ready_detached(due[i]);
    }
    readied += k;
    if (k < static_cast<int>(due_.size())) {
      break;
    }
  }
  if (drain) {
    start_drain(hook);
    ++readied;
  }
  return readied;
}

void Netpoller::release_poller(std::unique_lock<std::mutex>& lk) {
  (void)lk;
  poller_busy_ = false;
  // Hand the poll to a sleeping thread: this one is about to run fibers, and no readiness may go
  // unseen while another thread is idle (Go's wakep()).
  if (!sleepers_.empty()) {
    IdleSlot* s = sleepers_.back();
    sleepers_.pop_back();
    s->sleeping = false;
    s->notified = true;
    s->cv.notify_one();
  }
}

void Netpoller::idle(IdleSlot& me, ReadyHook& hook, core::TimePoint until) {
  std::unique_lock lk(idle_mu_);
  while (frozen_) {
    me.cv.wait(lk);
  }
  if (me.notified) {
    me.notified = false;
    return;
  }
  if (!poller_busy_) {
    poller_busy_ = true;
    me.polling = true;
    lk.unlock();
    poll(hook, until);
    lk.lock();
    me.polling = false;
    me.notified = false;
    release_poller(lk);
    return;
  }
  me.sleeping = true;
  sleepers_.push_back(&me);
  if (until == core::kNever) {
    me.cv.wait(lk, [&] { return me.notified; });
  } else {
    me.cv.wait_until(lk, until, [&] { return me.notified; });
  }
  me.notified = false;
  if (me.sleeping) {
    me.sleeping = false;
    std::erase(sleepers_, &me);
  }
}

void Netpoller::notify(IdleSlot& slot) {
  std::lock_guard lk(idle_mu_);
  slot.notified = true;
  if (slot.polling) {
    break_poll();
  } else if (slot.sleeping) {
    slot.cv.notify_one();
  }
}

void Netpoller::poll_now(ReadyHook& hook) {
  std::unique_lock lk(idle_mu_);
  if (poller_busy_ || frozen_) {
    return;
  }
  poller_busy_ = true;
  lk.unlock();
  poll(hook, core::TimePoint::min());
  lk.lock();
  release_poller(lk);
}

void Netpoller::freeze() {
  std::lock_guard lk(idle_mu_);
  frozen_ = true;
}

}  // namespace gearbox::backends::fiber
