// The `fiber` backend: scheduler threads, the acceptor fiber, one launcher fiber per thread fed
// by a buffered channel, and one fiber per connection running the blocking pump over FiberIo.
#include "backends/fiber/fiber_backend.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/fiber/algo/shared_work.hpp>
#include <boost/fiber/buffered_channel.hpp>
#include <boost/fiber/condition_variable.hpp>
#include <boost/fiber/fiber.hpp>
#include <boost/fiber/operations.hpp>
#include <cerrno>
#include <condition_variable>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "backends/common/blocking_pump.hpp"
#include "backends/common/cpus.hpp"
#include "backends/common/generation.hpp"
#include "backends/common/socket.hpp"
#include "backends/common/upstream_pool.hpp"
#include "backends/fiber/fiber_io.hpp"
#include "backends/fiber/netpoller.hpp"
#include "backends/fiber/scheduler.hpp"
#include "backends/fiber/stack_pool.hpp"
#include "server/balancer.hpp"
#include "server/connection.hpp"
#include "server/log.hpp"

namespace gearbox::backends {
namespace {

using fiber::FiberIo;
using fiber::Netpoller;
using fiber::PooledStack;
using fiber::StackPool;
using fiber::WaitSpec;
using Channel = boost::fibers::buffered_channel<Accepted>;

// Accepted connections a thread's channel holds. The acceptor takes every pending connection
// in one turn, as Go's accept loop does; a full channel parks it behind the whole run queue,
// and at 64 that throttled a 4,000-client burst until clients timed out in the backlog.
constexpr std::size_t kChannelCapacity = 1024;
constexpr std::size_t kStacksKeptPerThread = 64;  // idle stacks the pool keeps, per thread

// The scheduler thread a fiber runs on now (fibers move; this is only where it is this moment).
thread_local int tls_thread = 0;

// Everything the threads and fibers share. Freed by run() once every thread was joined; after a
// drain timeout it is leaked on purpose (fibers still run and point into it; the process exits).
struct Shared {
  Shared(const core::Config& c, int drain_fd, int n, FiberStats& st, Generations& g)
      : config(c),
        stats(st),
        gens(g),
        threads(n),
        np(drain_fd),
        stacks(c.fiber_stack, kStacksKeptPerThread * static_cast<std::size_t>(n)),
        pool(c) {}

  const core::Config& config;
  FiberStats& stats;
  Generations& gens;
  const int threads;
  Netpoller np;
  StackPool stacks;
  UpstreamPool pool;  // one per process: fibers move between threads, their upstreams with them
  std::vector<std::unique_ptr<Channel>> conns;  // the acceptor -> thread i's launcher
  int max_connections = 0;
  std::atomic<int> live{0};
  fiber::Waiter* acceptor = nullptr;  // unparked when a connection leaves at the cap

  // run()'s own thread waits here for the drain to start and to end.
  std::mutex mu;
  std::condition_variable cv;
  bool drain_started = false;
  bool acceptor_done = false;

  // Each scheduler thread's main context waits here until run() stops the threads.
  std::mutex stop_mu;
  boost::fibers::condition_variable_any stop_cv;
  bool stop = false;
};

PooledStack stack_of(Shared& s) {
  return PooledStack{&s.stacks};
}

void leave(Shared& s) {
  int before = s.live.fetch_sub(1);
  if (before == s.max_connections) {
    s.np.unpark(s.acceptor);
  }
  if (before == 1 && s.np.draining()) {
    std::lock_guard lock(s.mu);
    s.cv.notify_all();
  }
}

// One connection, start to end: "go handle(conn)".
void serve(Shared& s, const Accepted& a) {
  s.stats.fibers.fetch_add(1, std::memory_order_relaxed);
  {
    std::shared_ptr<Generation> gen = s.gens.current();  // the configuration in force now
    core::Context ctx = gen->context();
    core::Peer peer{address_text(a.peer), &a.peer};
    core::Connection conn(ctx, std::move(peer), core::Clock::now());
    fiber::Waiter* w = s.np.make_waiter();
    FiberIo io(s.np, w, &s.stats.parked);
    pump(conn, io, PumpSetup{a.fd, s.np.drain_fd(), &ctx, &s.pool});
    s.np.free_waiter(w);
  }
  s.stats.fibers.fetch_sub(1, std::memory_order_relaxed);
  leave(s);
}

// Thread i's launcher (its main context): starts a fiber for each connection its channel brings,
// on this thread (the shared ready queue spreads them further); ends when the acceptor closes
// the channel.
void launch_connections(Shared& s, Channel& ch, int index) {
  Accepted a;
  while (ch.pop(a) == boost::fibers::channel_op_status::success) {
    if (index < FiberStats::kMaxThreads) {
      s.stats.channel_depth[index].fetch_sub(1, std::memory_order_relaxed);
      s.stats.launched[index].fetch_add(1, std::memory_order_relaxed);
    }
    boost::fibers::fiber(std::allocator_arg, stack_of(s), [&s, a] { serve(s, a); }).detach();
  }
}

// The acceptor fiber. It parks on the netpoller, so whichever thread is idle when a client
// connects runs it, and it hands the connection to that thread's channel: a thread busy with a
// long /cpu request is never handed new connections.
void accept_connections(Shared& s, core::Listener& listener) {
  fiber::Waiter* w = s.acceptor;
  const bool proxy = s.config.mode == core::Mode::kProxy;
  core::TimePoint next_sweep = proxy ? core::Clock::now() + std::chrono::seconds(1) : core::kNever;
  bool warned = false;  // one warning per streak of accept failures
  while (!s.np.draining()) {
    core::TimePoint now = core::Clock::now();
    if (now >= next_sweep) {
      s.pool.sweep(now);  // idle upstream connections past their keepalive_timeout
      next_sweep = now + std::chrono::seconds(1);
    }
    WaitSpec spec;
    spec.drain = true;
    spec.deadline = next_sweep;
    // At the cap the listener is not watched: new connections wait in the kernel's backlog (as
    // with nginx's worker_connections) until a connection leaves and unparks us.
    if (s.live.load() >= s.max_connections) {
      s.np.wait(w, spec);
      continue;
    }
    Accepted a = accept_client(listener.fd);
    if (a.fd >= 0) {
      warned = false;
      s.live.fetch_add(1);
      if (tls_thread < FiberStats::kMaxThreads) {
        s.stats.channel_depth[tls_thread].fetch_add(1, std::memory_order_relaxed);
      }
      if (s.conns[tls_thread]->push(a) != boost::fibers::channel_op_status::success) {
        close_abort(a.fd);  // only this fiber closes the channels, so this never happens
        leave(s);
      }
      continue;
    }
    if (accept_should_pause(a.err)) {
      if (!warned) {
        core::log_warn("fiber backend: accept: %s; pausing accepts", std::strerror(a.err));
        warned = true;
      }
      spec.deadline = std::min(next_sweep, now + kAcceptPause);
      s.np.wait(w, spec);
      continue;
    }
    if (a.err != EAGAIN && a.err != EWOULDBLOCK) {
      continue;  // ECONNABORTED and the like concern that connection only
    }
    spec.fd[0] = listener.fd;
    spec.events[0] = POLLIN;
    s.np.wait(w, spec);
  }
  // Drain: no more accepts; closing the channels ends every launcher (Go's close(done)), and
  // each connection fiber was woken by the netpoller to finish on its own.
  ::close(listener.fd);
  listener.fd = -1;
  for (auto& ch : s.conns) {
    ch->close();
  }
  s.gens.current()->stop_health();
  std::lock_guard lock(s.mu);
  s.drain_started = true;
  s.acceptor_done = true;
  s.cv.notify_all();
}

void scheduler_thread(Shared& s, int index, core::Listener* listener) {
  tls_thread = index;
  // shared_work rather than work_stealing, measured (docs/ARCHITECTURE.md, "The fiber
  // backend"): the same throughput here, one stack page less per fiber, any idle thread runs
  // any ready fiber, and no special case for one thread (work_stealing would spin).
  boost::fibers::use_scheduling_algorithm<
      fiber::NetpollScheduler<boost::fibers::algo::shared_work>>(s.np, true);
  if (listener != nullptr) {
    boost::fibers::fiber(std::allocator_arg, stack_of(s), [&s, listener] {
      accept_connections(s, *listener);
    }).detach();
  }
  // The launcher runs on this thread's main context, which Boost.Fiber pins to the thread. A
  // fiber blocked on a channel belongs to the thread it blocked on, and a push from another
  // thread goes through that thread's remote queue: a launcher free to migrate could block on a
  // thread that then runs a long /cpu, and new connections would wait for it. Pinned, it is
  // woken only by the acceptor running on this same (idle) thread.
  launch_connections(s, *s.conns[index], index);
  std::unique_lock lock(s.stop_mu);
  s.stop_cv.wait(lock, [&] { return s.stop; });
}

}  // namespace

int FiberBackend::run(const core::Config& config, core::Listener& listener, int drain_fd) {
  int threads = config.threads > 0 ? config.threads : usable_cpus();
  // One balancer per generation, shared by every fiber on every thread (it is thread-safe).
  try {
    gens_.start(config);
  } catch (const std::exception& e) {
    core::log_error("fiber backend: %s", e.what());
    return 1;
  }
  auto s = std::make_unique<Shared>(config, drain_fd, threads, stats_, gens_);
  track(&s->pool);
  stats_.threads.store(threads, std::memory_order_relaxed);
  s->max_connections = std::max(config.max_connections, 1);
  s->acceptor = s->np.make_waiter();
  for (int i = 0; i < threads; ++i) {
    s->conns.push_back(std::make_unique<Channel>(kChannelCapacity));
  }
  ::fcntl(listener.fd, F_SETFL, ::fcntl(listener.fd, F_GETFL) | O_NONBLOCK);
  core::log_debug("fiber backend: %d scheduler threads, %zu-byte fiber stacks", threads,
                  config.fiber_stack);

  std::vector<std::thread> workers;
  workers.reserve(static_cast<std::size_t>(threads));
  for (int i = 0; i < threads; ++i) {
    workers.emplace_back(scheduler_thread, std::ref(*s), i, i == 0 ? &listener : nullptr);
  }

  bool drained;
  {
    std::unique_lock lock(s->mu);
    s->cv.wait(lock, [&] { return s->drain_started; });
    core::TimePoint deadline = core::Clock::now() + config.drain_timeout;
    drained = s->cv.wait_until(lock, deadline, [&] { return s->live.load() == 0; });
  }
  untrack(&s->pool);
  if (!drained) {
    core::log_warn("fiber backend: drain timeout, %d connections left open", s->live.load());
    s->np.freeze();
    for (std::thread& t : workers) {
      t.detach();
    }
    (void)s.release();  // see Shared
    return 0;
  }
  {
    std::lock_guard lock(s->stop_mu);
    s->stop = true;
  }
  s->stop_cv.notify_all();
  for (std::thread& t : workers) {
    t.join();
  }
  s->np.free_waiter(s->acceptor);
  return 0;
}

std::string FiberBackend::status_json() const {
  const int threads = stats_.threads.load(std::memory_order_relaxed);
  const int fibers = stats_.fibers.load(std::memory_order_relaxed);
  const int parked = stats_.parked.load(std::memory_order_relaxed);
  std::string out = "{\"connection_fibers\":" + std::to_string(fibers) +
                    ",\"parked_on_netpoller\":" + std::to_string(parked) +
                    ",\"ready_or_running\":" + std::to_string(std::max(fibers - parked, 0)) +
                    ",\"scheduler_threads\":[";
  for (int i = 0; i < threads && i < FiberStats::kMaxThreads; ++i) {
    out += i == 0 ? "" : ",";
    out += "{\"thread\":" + std::to_string(i) + ",\"accept_channel_depth\":" +
           std::to_string(stats_.channel_depth[i].load(std::memory_order_relaxed)) +
           ",\"fibers_launched\":" +
           std::to_string(stats_.launched[i].load(std::memory_order_relaxed)) + "}";
  }
  return out + "]}";
}

std::unique_ptr<core::Backend> make_fiber_backend() {
  return std::make_unique<FiberBackend>();
}

}  // namespace gearbox::backends
