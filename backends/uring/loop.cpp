// One event loop: the turn (resume what is ready, one submit-and-wait until the earliest
// deadline, resolve every CQE), the acceptor coroutine, the drain watcher and the drain itself.
#include "backends/uring/loop.hpp"

#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>

#include "backends/common/socket.hpp"
#include "backends/uring/ring_pump.hpp"
#include "backends/uring/uring_backend.hpp"
#include "server/log.hpp"

namespace gearbox::backends::uring {
namespace {

constexpr unsigned kRingEntries = 1024;
constexpr std::size_t kSpareBuffersKept = 64;

}  // namespace

// Suspends the acceptor while the loop holds its share of --max-connections: new connections
// wait in the kernel's listen backlog, as with the other backends.
struct Loop::CapacityAwait {
  Loop& loop;
  bool await_ready() const noexcept { return loop.live_ < loop.cap_ || loop.draining_; }
  void await_suspend(std::coroutine_handle<> h) noexcept { loop.capacity_waiter_ = h; }
  void await_resume() const noexcept {}
};

Loop::Loop(const core::Config& config, Generations& gens, int listen_fd, int drain_fd,
           int max_connections)
    : config_(config),
      listen_fd_(listen_fd),
      drain_fd_(drain_fd),
      cap_(static_cast<std::size_t>(std::max(max_connections, 1))),
      gens_(gens) {
  if (config.mode == core::Mode::kProxy) {
    pool_ = std::make_unique<UpstreamPool>(config);
    pool_->set_watch(&watch_);
  }
}

Loop::~Loop() {
  for (char* b : spare_buffers_) {
    delete[] b;
  }
}

std::shared_ptr<LoopContext> Loop::context() {
  if (ctx_ == nullptr || ctx_->gen->epoch() != gens_.epoch()) {
    auto next = std::make_shared<LoopContext>();
    next->gen = gens_.current();
    next->ctx = next->gen->context();
    next->ctx.buffers = &buffers_;
    next->ctx.driver_owns_input = true;  // received bytes are handed over from the buffer ring
    next->ctx.driver_keeps_data = true;  // and kept while the core writes from them (echo)
    ctx_ = std::move(next);
  }
  return ctx_;
}

void Loop::attach(RingPump* p) {
  p->next_conn = conns_;
  if (conns_ != nullptr) {
    conns_->prev = p;
  }
  conns_ = p;
  ++live_;
}

void Loop::detach(RingPump* p) {
  if (p->prev != nullptr) {
    p->prev->next_conn = p->next_conn;
  } else {
    conns_ = p->next_conn;
  }
  if (p->next_conn != nullptr) {
    p->next_conn->prev = p->prev;
  }
  --live_;
  if (capacity_waiter_ && live_ < cap_) {
    ring_.schedule(capacity_waiter_);
    capacity_waiter_ = {};
  }
}

char* Loop::take_spare_buffer() {
  if (spare_buffers_.empty()) {
    return new char[kSpareBufferSize];
  }
  char* b = spare_buffers_.back();
  spare_buffers_.pop_back();
  return b;
}

void Loop::give_spare_buffer(char* b) {
  if (spare_buffers_.size() < kSpareBuffersKept) {
    spare_buffers_.push_back(b);
  } else {
    delete[] b;
  }
}

char* Loop::take_receive_spare(RingPump* p, bool overdraw) {
  if (!ring_.has_buffers()) {
    return take_spare_buffer();
  }
  if (starved_receives_ < kStarvedReceives || overdraw) {
    ++starved_receives_;
    return take_spare_buffer();
  }
  starved_.push_back({p, {now_, turn_}});
  return nullptr;
}

void Loop::give_receive_spare(char* b) {
  give_spare_buffer(b);
  if (ring_.has_buffers()) {
    --starved_receives_;
    wake_starved(1);
  }
}

void Loop::wake_starved(std::size_t n) {
  auto wake_first = [this](bool overdraw) {
    RingPump* p = starved_.front().pump;
    starved_.pop_front();
    p->buffers_freed(overdraw);
  };
  if (n > 0 && !starved_.empty()) {
    starved_moved_ = {now_, turn_};
  }
  for (; n > 0 && !starved_.empty(); --n) {
    wake_first(false);
  }
  // Nobody got a buffer for that long, nor in two whole turns (a storm's turn may be long, and
  // the time is read once per turn): they are held by connections that read no more. All that
  // wait take spare buffers past the bound.
  if (!starved_.empty() && now_ - starved_since().time >= kStarvedPatience &&
      turn_ >= starved_since().turn + 2) {
    while (!starved_.empty()) {
      wake_first(true);
    }
  }
}

void Loop::forget_starved(RingPump* p) {
  std::erase_if(starved_, [p](const Starved& s) { return s.pump == p; });
}

void Loop::release_memory() {
  slept_since_release_ = 0;
  ++releases_;
  if (stats_ != nullptr) {
    stats_->memory_releases.store(releases_, std::memory_order_relaxed);  // before the wait
  }
  for (char* b : spare_buffers_) {
    delete[] b;
  }
  spare_buffers_.clear();
  ::malloc_trim(0);
  ring_.release_idle_buffers();
}

void Loop::evict_dozer(RingPump*& slot) {
  if (slot != nullptr) {
    RingPump* p = slot;
    slot = nullptr;
    --dozing_;
    p->put_to_sleep();
  }
}

void Loop::doze(RingPump* p) {
  RingPump*& slot = dozers_[doze_next_];
  evict_dozer(slot);  // the one that joined kDozeSlots dozes ago
  slot = p;
  p->set_doze_slot(doze_next_);
  ++dozing_;
  doze_next_ = static_cast<std::uint8_t>((doze_next_ + 1) % kDozeSlots);
  last_doze_ = now_;
}

void Loop::leave_doze(RingPump* p) {
  assert(dozers_[p->doze_slot()] == p);
  dozers_[p->doze_slot()] = nullptr;
  --dozing_;
}

void Loop::sleep_dozers() {
  for (RingPump*& slot : dozers_) {
    evict_dozer(slot);
  }
}

void Loop::serve(int fd, const sockaddr_storage* peer) {
  sockaddr_storage addr{};
  if (peer != nullptr) {
    addr = *peer;
  } else if (config_.mode == core::Mode::kProxy || !config_.access_log.empty()) {
    // A multishot accept reports no address: asked for only where it is used (X-Forwarded-For,
    // the trusted-proxy check, the access log).
    socklen_t len = sizeof addr;
    ::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  }
  serve_connection(Accepted{*this, fd, addr});
}

void Loop::MultishotAcceptor::resolve(int res, unsigned flags) {
  Loop& l = loop_;
  if ((flags & IORING_CQE_F_MORE) == 0) {
    armed = false;
    cancelled = false;
  }
  if (res >= 0) {
    l.accept_warned_ = false;
    if (l.draining_) {
      ::close(res);
    } else {
      l.accepted_.push_back(res);
    }
    return;
  }
  if (accept_should_pause(-res)) {
    if (!l.accept_warned_) {
      core::log_warn("uring backend: accept: %s; pausing accepts", std::strerror(-res));
      l.accept_warned_ = true;
    }
    l.accept_paused_until_ = l.now_ + kAcceptPause;
  }
}

// Once per turn: serves what the multishot accepted (up to the cap), and keeps the multishot
// armed exactly while there is room, so that past the cap connections wait in the backlog.
void Loop::tend_multishot(core::TimePoint now) {
  while (!accepted_.empty() && (live_ < cap_ || draining_)) {
    int fd = accepted_.front();
    accepted_.pop_front();
    if (draining_) {
      ::close(fd);
    } else {
      serve(fd, nullptr);
    }
  }
  const bool want = !draining_ && live_ + accepted_.size() < cap_ && now >= accept_paused_until_;
  if (want && !multishot_.armed) {
    io_uring_prep_multishot_accept(ring_.sqe_for(&multishot_), listen_fd_, nullptr, nullptr,
                                   SOCK_CLOEXEC);
    multishot_.armed = true;
  } else if (!want && multishot_.armed && !multishot_.cancelled) {
    prep_cancel(ring_, &multishot_);
    multishot_.cancelled = true;
  }
  if (draining_ && !multishot_.armed && listen_fd_ >= 0) {
    ::close(listen_fd_);
    listen_fd_ = -1;
    acceptor_done_ = true;
  }
}

Detached Loop::accept_loop() {
  bool warned = false;  // one warning per streak of failures
  while (!draining_) {
    if (live_ >= cap_) {
      co_await CapacityAwait{*this};
      continue;
    }
    sockaddr_storage peer{};
    socklen_t len = sizeof peer;
    const int lfd = listen_fd_;
    int fd = co_await SqeAwaitable(
        ring_,
        [&peer, &len, lfd](io_uring_sqe* sqe) {
          io_uring_prep_accept(sqe, lfd, reinterpret_cast<sockaddr*>(&peer), &len, SOCK_CLOEXEC);
        },
        &accept_op_);
    if (fd >= 0) {
      warned = false;
      if (draining_) {
        ::close(fd);
        break;
      }
      serve(fd, &peer);
      continue;
    }
    const int err = -fd;
    if (accept_should_pause(err)) {
      // Out of descriptors or memory: the connection stays in the backlog; accepting again at
      // once would spin on the same error (nginx's accept back-off).
      if (!warned) {
        core::log_warn("uring backend: accept: %s; pausing accepts", std::strerror(err));
        warned = true;
      }
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(kAcceptPause).count();
      __kernel_timespec ts{ns / 1'000'000'000, ns % 1'000'000'000};
      co_await SqeAwaitable(
          ring_, [&ts](io_uring_sqe* sqe) { io_uring_prep_timeout(sqe, &ts, 0, 0); }, &accept_op_);
    }
    // ECANCELED (the drain), ECONNABORTED and the like: look at the state and go on.
  }
  ::close(listen_fd_);
  listen_fd_ = -1;
  acceptor_done_ = true;
}

Detached Loop::watch_drain() {
  const int fd = drain_fd_;
  co_await SqeAwaitable(ring_,
                        [fd](io_uring_sqe* sqe) { io_uring_prep_poll_add(sqe, fd, POLLIN); });
  drain_watch_done_ = true;
  begin_drain(core::Clock::now());
}

void Loop::begin_drain(core::TimePoint now) {
  draining_ = true;
  drain_deadline_ = now + config_.drain_timeout;
  if (accept_op_ != nullptr) {
    prep_cancel(ring_, accept_op_);
  }
  if (multishot_.armed && !multishot_.cancelled) {
    prep_cancel(ring_, &multishot_);
    multishot_.cancelled = true;
  }
  if (capacity_waiter_) {
    ring_.schedule(capacity_waiter_);
    capacity_waiter_ = {};
  }
  for (RingPump* p = conns_; p != nullptr; p = p->next_conn) {
    p->drain();
  }
}

void Loop::close_socket(int fd) {
  io_uring_prep_close(ring_.sqe_for(&closer_), fd);
}

bool Loop::finished() const {
  return draining_ && live_ == 0 && acceptor_done_ && drain_watch_done_;
}

int Loop::run(int log_loops) {
  if (int err = ring_.init(kRingEntries, config_.sqpoll, basic_ring_, ring_buffers_); err != 0) {
    core::log_error("uring backend: io_uring set-up failed: %s", std::strerror(-err));
    return 1;
  }
  if (log_loops > 0) {
    core::log_info("uring backend: %d loop%s; io_uring features in use: %s", log_loops,
                   log_loops == 1 ? "" : "s", ring_.features().describe().c_str());
  }
  // Accepted sockets inherit TCP_NODELAY from the listener: no setsockopt per connection.
  int one = 1;
  ::setsockopt(listen_fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  now_ = core::Clock::now();
  if (pool_) {
    next_sweep_ = now_ + std::chrono::seconds(1);
  }
  const bool multishot = ring_.features().multishot_accept;
  if (!multishot) {
    accept_loop();
  }
  watch_drain();
  for (;;) {
    ++turn_;
    ring_.run_ready();
    if (multishot) {
      tend_multishot(now_);
      ring_.run_ready();
    }
    if (finished()) {
      if (pool_ != nullptr) {
        pool_->clear();  // the idle upstream connections go too, once their receives complete
      }
      if (ring_.outstanding() == 0) {
        break;  // the idle upstream connections' receives and the last closes completed
      }
    }
    core::TimePoint wake = std::min({deadlines_.earliest(), next_sweep_, drain_deadline_});
    if (multishot && accept_paused_until_ > now_) {
      wake = std::min(wake, accept_paused_until_);
    }
    if (dozing_ > 0) {
      wake = std::min(wake, last_doze_ + kDozeQuiet);
    }
    if (!starved_.empty()) {
      wake = std::min(wake, starved_since().time + kStarvedPatience);
    }
    if (slept_since_release_ >= kReleaseAfter) {
      wake = std::min(wake, last_sleep_ + kDozeQuiet);
    }
    if (stats_ != nullptr) {
      // What the loop holds as it waits: the figures stay true while it waits.
      stats_->turns.fetch_add(1, std::memory_order_relaxed);
      stats_->in_flight.store(static_cast<std::int64_t>(ring_.outstanding()),
                              std::memory_order_relaxed);
      stats_->connections.store(static_cast<std::int64_t>(live_), std::memory_order_relaxed);
      stats_->asleep.store(asleep_, std::memory_order_relaxed);
      stats_->dozing.store(static_cast<std::int64_t>(dozing_), std::memory_order_relaxed);
      stats_->receive_buffers.store(ring_.has_buffers() ? ring_.buffer_fill() : 0,
                                    std::memory_order_relaxed);
      stats_->receive_waits.store(static_cast<std::int64_t>(starved_.size()),
                                  std::memory_order_relaxed);
    }
    ring_.submit_and_wait(wake);
    now_ = core::Clock::now();
    // The ring was refilled before the wait: as many waiting receives try it again as it holds
    // buffers (some may find it empty again, and wait again); those that waited too long take
    // a spare buffer.
    wake_starved(ring_.buffers_in_ring());
    while (DeadlineEntry* e = deadlines_.pop_due(now_)) {
      static_cast<RingPump*>(e)->notify();
    }
    if (dozing_ > 0 && now_ >= last_doze_ + kDozeQuiet) {
      sleep_dozers();  // the loop went quiet: idle connections hold their frames alone
    }
    if (slept_since_release_ >= kReleaseAfter && now_ >= last_sleep_ + kDozeQuiet) {
      release_memory();
    }
    if (pool_ && now_ >= next_sweep_) {
      pool_->sweep(now_);
      next_sweep_ = now_ + std::chrono::seconds(1);
    }
    if (draining_ && !killed_ && now_ >= drain_deadline_) {
      killed_ = true;
      drain_deadline_ = core::kNever;
      if (live_ > 0) {
        core::log_warn("uring backend: drain timeout, closing %zu connections", live_);
      }
      for (RingPump* p = conns_; p != nullptr; p = p->next_conn) {
        p->kill();
      }
    }
  }
  // Every connection was freed after its last CQE; nothing may be left for the ring's exit.
  assert(ring_.outstanding() == 0);
  return 0;
}

}  // namespace gearbox::backends::uring
