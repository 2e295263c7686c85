// The `prefork` backend: the master's supervision loop (spawn, retire, reap, crash back-off,
// drain) and each worker's accept-then-serve loop over the blocking pump with poll(2).
#include "backends/prefork/prefork_backend.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "backends/common/blocking_pump.hpp"
#include "backends/common/generation.hpp"
#include "backends/common/reloader.hpp"
#include "backends/common/socket.hpp"
#include "backends/common/upstream_pool.hpp"
#include "backends/prefork/scoreboard.hpp"
#include "server/balancer.hpp"
#include "server/connection.hpp"
#include "server/log.hpp"

namespace gearbox::backends {
namespace {

using std::chrono::duration_cast;
using std::chrono::milliseconds;

constexpr milliseconds kTick{100};         // how often the master reads the scoreboard
constexpr milliseconds kFastDeath{1'000};  // an unclean exit younger than this is a crash
constexpr int kFastDeathsForgiven = 2;     // crashes in a row respawned at once
constexpr milliseconds kBackoffBase{250};  // then 250 ms, 500 ms, ... before forking again
constexpr milliseconds kBackoffMax{10'000};
constexpr int kMaxSpawnPerTick = 32;   // Apache's MAX_SPAWN_RATE
constexpr int kWorkerSetupFailed = 3;  // a worker's exit status when it could not start

long long ms_between(core::TimePoint from, core::TimePoint to) {
  return duration_cast<milliseconds>(to - from).count();
}

// ---- worker side ----------------------------------------------------------------------------

// Written by the worker's signal handlers only; each pipe is never read, so once a byte is in
// it stays readable for every poll that watches it (the pump watches the drain pipe).
int g_worker_drain_fd = -1;
int g_worker_retire_fd = -1;
int g_worker_listen_fd = -1;
bool g_worker_own_listener = false;
pid_t g_worker_master = 0;
volatile sig_atomic_t g_worker_draining = 0;
volatile sig_atomic_t g_worker_retiring = 0;

void on_worker_signal(int sig) {
  int saved_errno = errno;
  char byte = 1;
  if (sig == SIGUSR1) {
    g_worker_retiring = 1;
    [[maybe_unused]] ssize_t n = ::write(g_worker_retire_fd, &byte, 1);
  } else {
    g_worker_draining = 1;
    // Drain refuses new connections at once, even while this worker finishes a request: its
    // own --reuseport listener stops listening now. The shared listener is the master's to
    // stop (one worker may be signalled alone), unless the master is gone.
    if (g_worker_listen_fd >= 0 && (g_worker_own_listener || ::getppid() != g_worker_master)) {
      ::shutdown(g_worker_listen_fd, SHUT_RD);
    }
    [[maybe_unused]] ssize_t n = ::write(g_worker_drain_fd, &byte, 1);
  }
  errno = saved_errno;
}

// core::Connection as the pump sees it, keeping the worker's scoreboard slot current: the state
// follows the wants, and a request is counted when the connection stops being idle.
//
// With --reuseport the worker has a listener of its own, and the kernel queues new clients on
// it while the worker holds a keep-alive connection: no other worker can take them. So when a
// request begins and clients wait there, its response says Connection: close and the worker
// moves on to them (a request boundary: closing an idle connection instead would race the
// client's next request).
class ScoredConnection {
 public:
  ScoredConnection(core::Connection& c, ScoreSlot& slot, core::Context& ctx, int own_listener)
      : c_(c), slot_(slot), ctx_(ctx), own_listener_(own_listener) {}

  core::Wants wants() {
    core::Wants w = c_.wants();
    bool idle = c_.idle();
    if (idle_ && !idle) {
      slot_.requests.fetch_add(1, std::memory_order_relaxed);
    }
    idle_ = idle;
    WorkerState state = WorkerState::kReading;
    if (w.upstream_connect != nullptr || !w.upstream_read.empty() || !w.upstream_write.empty()) {
      state = WorkerState::kProxying;
    } else if (!w.client_write.empty()) {
      state = WorkerState::kWriting;
    }
    if (state != state_) {
      state_ = state;
      slot_.state.store(state, std::memory_order_relaxed);
    }
    return w;
  }

  void on_client_read(std::size_t n, core::TimePoint now) {
    if (own_listener_ >= 0 && n > 0 && c_.idle() && !ctx_.close_after_exchange) {
      pollfd waiting{own_listener_, POLLIN, 0};
      ctx_.close_after_exchange = ::poll(&waiting, 1, 0) > 0;
    }
    c_.on_client_read(n, now);
  }
  void on_client_written(std::size_t n, core::TimePoint now) { c_.on_client_written(n, now); }
  void on_client_error(int err, core::TimePoint now) { c_.on_client_error(err, now); }
  void on_upstream_connected(bool reused, core::TimePoint now) {
    c_.on_upstream_connected(reused, now);
  }
  void on_upstream_connect_failed(int err, core::TimePoint now) {
    c_.on_upstream_connect_failed(err, now);
  }
  void on_upstream_read(std::size_t n, core::TimePoint now) { c_.on_upstream_read(n, now); }
  void on_upstream_written(std::size_t n, core::TimePoint now) { c_.on_upstream_written(n, now); }
  void on_upstream_error(int err, core::TimePoint now) { c_.on_upstream_error(err, now); }
  void on_upstream_released(core::TimePoint now) { c_.on_upstream_released(now); }
  void on_deadline(core::TimePoint now) { c_.on_deadline(now); }
  void on_drain(core::TimePoint now) { c_.on_drain(now); }

 private:
  core::Connection& c_;
  ScoreSlot& slot_;
  core::Context& ctx_;
  int own_listener_;  // -1: the listener is shared (an idle worker takes whoever waits)
  bool idle_ = true;
  WorkerState state_ = WorkerState::kReading;
};

struct WorkerSetup {
  std::shared_ptr<Generation> gen;  // the master's generation in force, copied by fork
  ScoreSlot* slot = nullptr;
  int listen_fd = -1;
  bool own_listener = false;  // --reuseport: nobody else accepts on listen_fd
  int master_drain_fd = -1;   // inherited; closed in the worker
  pid_t master = 0;
  sigset_t mask{};  // the signal mask to restore once the worker's handlers are in place
};

bool make_pipe(int* read_fd, int* write_fd) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC | O_NONBLOCK) != 0) {
    return false;
  }
  *read_fd = fds[0];
  *write_fd = fds[1];
  return true;
}

// Runs in the child right after fork(), with SIGTERM/SIGINT/SIGUSR1/SIGHUP blocked; never
// returns.
[[noreturn]] void worker_main(const WorkerSetup& w) {
  ScoreSlot& slot = *w.slot;
  ::close(w.master_drain_fd);
  int drain_rd = -1;
  int retire_rd = -1;
  if (!make_pipe(&drain_rd, &g_worker_drain_fd) || !make_pipe(&retire_rd, &g_worker_retire_fd)) {
    core::log_error("prefork: worker %d: pipe: %s", static_cast<int>(::getpid()),
                    std::strerror(errno));
    ::_exit(kWorkerSetupFailed);
  }
  g_worker_listen_fd = w.listen_fd;
  g_worker_own_listener = w.own_listener;
  g_worker_master = w.master;
  // The master's handlers write to the master's drain pipe: a worker must never run them.
  struct sigaction action = {};
  action.sa_handler = on_worker_signal;
  sigemptyset(&action.sa_mask);
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGINT, &action, nullptr);
  ::sigaction(SIGUSR1, &action, nullptr);
  ::signal(SIGCHLD, SIG_DFL);
  ::signal(SIGHUP, SIG_IGN);  // reloads are the master's: it rolls the workers
  // The master's death turns into a drain; if it died before prctl, getppid() tells.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != w.master) {
    on_worker_signal(SIGTERM);
  }
  // The master's mask blocks them for its reloader thread; this process takes them itself.
  ::sigprocmask(SIG_SETMASK, &w.mask, nullptr);
  const sigset_t control = control_signals();
  ::sigprocmask(SIG_UNBLOCK, &control, nullptr);

  // The balancer is this process's own copy; its health checker runs here.
  Generation& gen = *w.gen;
  gen.start_health();
  UpstreamPool pool(gen.config());

  slot.pid.store(::getpid(), std::memory_order_relaxed);
  slot.state.store(WorkerState::kIdle, std::memory_order_relaxed);
  core::TimePoint next_sweep = core::Clock::now() + std::chrono::seconds(1);
  PollIo io;
  bool warned = false;  // one warning per streak of accept failures
  for (;;) {
    if (g_worker_draining != 0 || (g_worker_retiring != 0 && !w.own_listener)) {
      break;
    }
    // Retiring with its own SO_REUSEPORT listener: connections the kernel already queued
    // there would be reset on close, so serve them first.
    bool sweeping = g_worker_retiring != 0;
    if (!sweeping) {
      pollfd fds[3] = {{w.listen_fd, POLLIN, 0}, {drain_rd, POLLIN, 0}, {retire_rd, POLLIN, 0}};
      int r = ::poll(fds, 3, 1'000);
      core::TimePoint now = core::Clock::now();
      if (now >= next_sweep) {
        pool.sweep(now);
        next_sweep = now + std::chrono::seconds(1);
      }
      if (r <= 0 || fds[0].revents == 0) {
        continue;
      }
    }
    Accepted a = accept_client(w.listen_fd);
    if (a.fd < 0) {
      if (a.err == EINVAL) {
        break;  // the listener was shut down: the server is draining (the signal follows)
      }
      if (sweeping && (a.err == EAGAIN || accept_should_pause(a.err))) {
        break;
      }
      if (accept_should_pause(a.err)) {
        if (!warned) {
          core::log_warn("prefork: worker %d: accept: %s; pausing accepts",
                         static_cast<int>(::getpid()), std::strerror(a.err));
          warned = true;
        }
        pollfd fd{drain_rd, POLLIN, 0};
        ::poll(&fd, 1, static_cast<int>(kAcceptPause.count()));
      }
      continue;
    }
    warned = false;
    slot.connections.fetch_add(1, std::memory_order_relaxed);
    slot.state.store(WorkerState::kReading, std::memory_order_relaxed);
    {
      core::Context ctx = gen.context();
      core::Peer peer{address_text(a.peer), &a.peer};
      core::Connection conn(ctx, std::move(peer), core::Clock::now());
      ScoredConnection scored(conn, slot, ctx, w.own_listener ? w.listen_fd : -1);
      pump(scored, io, PumpSetup{a.fd, drain_rd, &ctx, &pool});
    }
    slot.state.store(WorkerState::kIdle, std::memory_order_relaxed);
  }
  gen.stop_health();
  core::flush_access_log();  // _exit skips the master's flush: this worker's lines are its own
  ::_exit(0);
}

// ---- master side ----------------------------------------------------------------------------

struct Worker {
  pid_t pid = 0;
  int slot = -1;
  core::TimePoint started;
  bool retiring = false;
  std::uint32_t epoch = 0;  // of the configuration it serves with
};

class Master {
 public:
  Master(const core::Config& config, core::Listener& listener, int drain_fd,
         PreforkBackend& backend)
      : config_(config), listener_(listener), drain_fd_(drain_fd), backend_(backend) {
    // A worker serves one connection at a time: --max-connections caps the workers too.
    max_workers_ =
        std::max(std::min(config.workers > 0 ? config.workers : 256, config.max_connections), 1);
    min_spare_ = std::clamp(config.min_spare, 1, max_workers_);
    max_spare_ = std::max(config.max_spare, min_spare_);
  }

  ~Master() { backend_.publish(nullptr); }

  int run() {
    if (!scoreboard_.create(static_cast<std::size_t>(max_workers_))) {
      core::log_error("prefork: scoreboard mmap: %s", std::strerror(errno));
      return 1;
    }
    backend_.publish(&scoreboard_);
    // The balancer is built here and copied into every worker by fork(): each worker then
    // balances with its own copy, as processes share nothing but the scoreboard. Health
    // checkers run in the workers.
    try {
      gen_ = backend_.generations().start(config_, false);
    } catch (const std::exception& e) {
      core::log_error("prefork: %s", e.what());
      return 1;
    }
    for (;;) {
      core::TimePoint now = core::Clock::now();
      reap(now);
      manage(now);
      pollfd fds[2] = {{drain_fd_, POLLIN, 0}, {backend_.reload_fd(), POLLIN, 0}};
      if (::poll(fds, 2, static_cast<int>(kTick.count())) > 0) {
        if (fds[0].revents != 0) {
          break;
        }
        if (fds[1].revents != 0) {
          roll(core::Clock::now());
        }
      }
    }
    return drain();
  }

 private:
  // Forks one worker into a free slot. False when it could not (logged).
  bool spawn(core::TimePoint now) {
    int index = scoreboard_.find_free();
    if (index < 0) {
      return false;
    }
    int listen_fd = listener_.fd;
    if (config_.reuseport && listen_fd < 0) {
      std::string error;
      auto own = open_listener(listener_.address, config_.backlog, true, &error);
      if (!own) {
        core::log_error("prefork: --reuseport listener: %s", error.c_str());
        return false;
      }
      listen_fd = own->fd;
    }
    ScoreSlot& slot = scoreboard_.slot(static_cast<std::size_t>(index));
    slot.pid.store(0, std::memory_order_relaxed);
    slot.connections.store(0, std::memory_order_relaxed);
    slot.requests.store(0, std::memory_order_relaxed);
    slot.state.store(WorkerState::kStarting, std::memory_order_relaxed);

    // Blocked across fork() so that a signal cannot reach the child before its own handlers
    // replace the master's (which would drain the whole server).
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGTERM);
    sigaddset(&block, SIGINT);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGHUP);
    WorkerSetup setup;
    setup.gen = gen_;
    setup.slot = &slot;
    setup.listen_fd = listen_fd;
    setup.own_listener = config_.reuseport;
    setup.master_drain_fd = drain_fd_;
    setup.master = ::getpid();
    ::sigprocmask(SIG_BLOCK, &block, &setup.mask);
    pid_t pid = ::fork();
    if (pid == 0) {
      worker_main(setup);
    }
    int fork_errno = errno;
    ::sigprocmask(SIG_SETMASK, &setup.mask, nullptr);
    if (config_.reuseport) {
      // The worker owns this listener now. The one main opened serves the first worker, so
      // the port never goes unbound and no connection waits on a socket nobody accepts on.
      ::close(listen_fd);
      if (listen_fd == listener_.fd) {
        listener_.fd = -1;
      }
    }
    if (pid < 0) {
      slot.state.store(WorkerState::kFree, std::memory_order_relaxed);
      core::log_error("prefork: fork: %s", std::strerror(fork_errno));
      return false;
    }
    slot.pid.store(pid, std::memory_order_relaxed);
    workers_.push_back(Worker{pid, index, now, false, gen_->epoch()});
    return true;
  }

  void reap(core::TimePoint now) {
    for (;;) {
      int status = 0;
      pid_t pid = ::waitpid(-1, &status, WNOHANG);
      if (pid <= 0) {
        return;
      }
      auto it = std::find_if(workers_.begin(), workers_.end(),
                             [pid](const Worker& w) { return w.pid == pid; });
      if (it == workers_.end()) {
        continue;
      }
      ScoreSlot& slot = scoreboard_.slot(static_cast<std::size_t>(it->slot));
      slot.pid.store(0, std::memory_order_relaxed);
      slot.state.store(WorkerState::kFree, std::memory_order_relaxed);
      long long lived = ms_between(it->started, now);
      bool clean = WIFEXITED(status) && WEXITSTATUS(status) == 0;
      workers_.erase(it);
      if (clean || draining_) {
        continue;
      }
      if (WIFSIGNALED(status)) {
        core::log_warn("prefork: worker %d killed by signal %d (%s) after %lld ms",
                       static_cast<int>(pid), WTERMSIG(status), ::strsignal(WTERMSIG(status)),
                       lived);
      } else {
        core::log_warn("prefork: worker %d exited with status %d after %lld ms",
                       static_cast<int>(pid), WEXITSTATUS(status), lived);
      }
      if (lived >= kFastDeath.count()) {
        fast_deaths_ = 0;
        continue;
      }
      if (++fast_deaths_ > kFastDeathsForgiven) {
        int doublings = std::min(fast_deaths_ - kFastDeathsForgiven - 1, 16);
        auto hold = std::min<milliseconds>(kBackoffBase * (1LL << doublings), kBackoffMax);
        hold_until_ = now + hold;
        core::log_warn(
            "prefork: %d workers in a row died within %lld ms of starting; not "
            "forking for %lld ms",
            fast_deaths_, static_cast<long long>(kFastDeath.count()),
            static_cast<long long>(hold.count()));
      }
    }
  }

  // A reload: the new generation's workers first (so an idle worker is always there), then
  // every older worker retires: it finishes the connection in hand, whose next response says
  // Connection: close (the epoch it carries is no longer the one in force), and exits.
  void roll(core::TimePoint now) {
    std::optional<core::Config> next = backend_.take_reload();
    if (!next) {
      return;
    }
    try {
      gen_ = backend_.generations().publish(*next, false);
    } catch (const std::exception& e) {
      core::log_error("reload: %s", e.what());
      return;
    }
    // As many new workers as there are older ones (Apache's graceful restart replaces each
    // child): with --reuseport each has its own listener, and a connection the kernel queued on a
    // worker busy with a keep-alive client would wait for it, so capacity must not dip.
    int older = 0;
    for (const Worker& w : workers_) {
      older += w.retiring ? 0 : 1;
    }
    int room = max_workers_ - static_cast<int>(workers_.size());
    for (int i = 0; i < std::min(std::max(min_spare_, older), room); ++i) {
      if (!spawn(now)) {
        break;
      }
    }
    int retiring = 0;
    for (Worker& w : workers_) {
      if (!w.retiring && w.epoch != gen_->epoch()) {
        w.retiring = true;
        ::kill(w.pid, SIGUSR1);
        ++retiring;
      }
    }
    core::log_info("reload: generation %u in force; %d older workers retire",
                   static_cast<unsigned>(gen_->epoch()), retiring);
  }

  // One look at the scoreboard: fork while fewer than min_spare workers are idle (the shortage,
  // times a rate that doubles each tick the shortage lasts, as Apache does), retire one idle
  // worker per tick while more than max_spare are.
  void manage(core::TimePoint now) {
    int idle = 0;
    int total = static_cast<int>(workers_.size());
    for (const Worker& w : workers_) {
      WorkerState s = scoreboard_.slot(static_cast<std::size_t>(w.slot)).state.load();
      if (!w.retiring && (s == WorkerState::kIdle || s == WorkerState::kStarting)) {
        ++idle;
      }
    }
    if (idle < min_spare_) {
      if (now < hold_until_) {
        return;
      }
      int want =
          std::min({(min_spare_ - idle) * spawn_rate_, max_workers_ - total, kMaxSpawnPerTick});
      core::log_debug("prefork: %d of %d workers idle, forking %d", idle, total, want);
      for (int i = 0; i < want; ++i) {
        if (!spawn(now)) {
          break;
        }
      }
      spawn_rate_ = std::min(spawn_rate_ * 2, kMaxSpawnPerTick);
      return;
    }
    spawn_rate_ = 1;
    if (idle > max_spare_) {
      for (Worker& w : workers_) {
        WorkerState s = scoreboard_.slot(static_cast<std::size_t>(w.slot)).state.load();
        if (!w.retiring && s == WorkerState::kIdle) {
          w.retiring = true;
          ::kill(w.pid, SIGUSR1);
          break;
        }
      }
    }
  }

  int drain() {
    draining_ = true;
    if (listener_.fd >= 0) {
      // Every worker holds a copy of this listener, and a busy one would close it only after
      // its request: shutdown() stops the one socket they share, so new connections are
      // refused now (and a load balancer moves on) while in-flight requests finish.
      ::shutdown(listener_.fd, SHUT_RD);
      ::close(listener_.fd);
      listener_.fd = -1;
    }
    for (const Worker& w : workers_) {
      ::kill(w.pid, SIGTERM);
    }
    core::TimePoint deadline = core::Clock::now() + config_.drain_timeout;
    for (;;) {
      core::TimePoint now = core::Clock::now();
      reap(now);
      if (workers_.empty()) {
        return 0;
      }
      if (now >= deadline) {
        break;
      }
      pollfd none{-1, 0, 0};
      ::poll(&none, 1, 20);
    }
    core::log_warn("prefork: drain timeout, killing %zu workers", workers_.size());
    for (const Worker& w : workers_) {
      ::kill(w.pid, SIGKILL);
    }
    for (const Worker& w : workers_) {
      int status = 0;
      while (::waitpid(w.pid, &status, 0) < 0 && errno == EINTR) {
      }
    }
    workers_.clear();
    return 0;
  }

  const core::Config& config_;
  core::Listener& listener_;
  int drain_fd_;
  int max_workers_ = 1;
  int min_spare_ = 1;
  int max_spare_ = 1;
  int spawn_rate_ = 1;  // multiplies the shortage; doubles each tick it lasts
  int fast_deaths_ = 0;
  bool draining_ = false;
  core::TimePoint hold_until_{};
  PreforkBackend& backend_;
  Scoreboard scoreboard_;
  std::shared_ptr<Generation> gen_;  // in force: new workers serve with it
  std::vector<Worker> workers_;
};

}  // namespace

int PreforkBackend::run(const core::Config& config, core::Listener& listener, int drain_fd) {
  ::fcntl(listener.fd, F_SETFL, ::fcntl(listener.fd, F_GETFL) | O_NONBLOCK);
  Master master(config, listener, drain_fd, *this);
  return master.run();
}

PreforkBackend::PreforkBackend() {
  if (!make_pipe(&reload_pipe_[0], &reload_pipe_[1])) {
    core::log_error("prefork: pipe: %s", std::strerror(errno));
  }
}

PreforkBackend::~PreforkBackend() {
  ::close(reload_pipe_[0]);
  ::close(reload_pipe_[1]);
}

std::string PreforkBackend::reload(const core::Config& next) {
  if (next.mode == core::Mode::kProxy) {
    try {
      core::Upstreams check(next);  // what the master will build: fail here, change nothing
    } catch (const std::exception& e) {
      return e.what();
    }
  }
  {
    std::lock_guard lock(reload_mu_);
    pending_ = next;
  }
  char byte = 1;
  if (::write(reload_pipe_[1], &byte, 1) != 1 && errno != EAGAIN) {
    return std::string("pipe: ") + std::strerror(errno);
  }
  return "";
}

std::optional<core::Config> PreforkBackend::take_reload() {
  char bytes[64];
  while (::read(reload_pipe_[0], bytes, sizeof bytes) > 0) {
  }
  std::lock_guard lock(reload_mu_);
  return std::exchange(pending_, std::nullopt);
}

void PreforkBackend::publish(const Scoreboard* board) {
  std::lock_guard lock(board_mu_);
  board_ = board;
}

std::string PreforkBackend::status_json() const {
  std::lock_guard lock(board_mu_);
  if (board_ == nullptr) {
    return "{}";
  }
  std::string workers;
  int busy = 0;
  int idle = 0;
  for (std::size_t i = 0; i < board_->size(); ++i) {
    const ScoreSlot& slot = board_->slot(i);
    WorkerState state = slot.state.load(std::memory_order_relaxed);
    pid_t pid = slot.pid.load(std::memory_order_relaxed);
    if (state == WorkerState::kFree || pid <= 0) {
      continue;
    }
    if (state == WorkerState::kIdle || state == WorkerState::kStarting) {
      ++idle;
    } else {
      ++busy;
    }
    workers += workers.empty() ? "" : ",";
    workers += "{\"slot\":" + std::to_string(i) + ",\"pid\":" + std::to_string(pid) +
               ",\"state\":\"" + worker_state_name(state) +
               "\",\"connections\":" + std::to_string(slot.connections.load()) +
               ",\"requests\":" + std::to_string(slot.requests.load()) + "}";
  }
  return "{\"workers_busy\":" + std::to_string(busy) + ",\"workers_idle\":" + std::to_string(idle) +
         ",\"workers_max\":" + std::to_string(board_->size()) + ",\"workers\":[" + workers + "]}";
}

std::unique_ptr<core::Backend> make_prefork_backend() {
  return std::make_unique<PreforkBackend>();
}

}  // namespace gearbox::backends
