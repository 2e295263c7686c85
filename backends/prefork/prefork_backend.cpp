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
#include <vector>

#include "backends/common/blocking_pump.hpp"
#include "backends/common/health_check.hpp"
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
class ScoredConnection {
 public:
  ScoredConnection(core::Connection& c, ScoreSlot& slot) : c_(c), slot_(slot) {}

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

  void on_client_read(std::size_t n, core::TimePoint now) { c_.on_client_read(n, now); }
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
  bool idle_ = true;
  WorkerState state_ = WorkerState::kReading;
};

struct WorkerSetup {
  const core::Config* config = nullptr;
  core::Upstreams* upstreams = nullptr;  // the master's, copied by fork; proxy mode only
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

// Runs in the child right after fork(), with SIGTERM/SIGINT/SIGUSR1 blocked; never returns.
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
  // The master's death turns into a drain; if it died before prctl, getppid() tells.
  ::prctl(PR_SET_PDEATHSIG, SIGTERM);
  if (::getppid() != w.master) {
    on_worker_signal(SIGTERM);
  }
  ::sigprocmask(SIG_SETMASK, &w.mask, nullptr);

  const core::Config& config = *w.config;
  std::unique_ptr<HealthChecker> health;
  if (w.upstreams != nullptr) {
    health = std::make_unique<HealthChecker>(*w.upstreams);
    health->start();
  }
  UpstreamPool pool(config);
  core::Context base;
  base.config = &config;
  base.upstreams = w.upstreams;

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
      core::Context ctx = base;
      core::Peer peer{address_text(a.peer), &a.peer};
      core::Connection conn(ctx, std::move(peer), core::Clock::now());
      ScoredConnection scored(conn, slot);
      pump(scored, io, PumpSetup{a.fd, drain_rd, &ctx, &pool});
    }
    slot.state.store(WorkerState::kIdle, std::memory_order_relaxed);
  }
  if (health) {
    health->stop();
  }
  core::flush_access_log();  // _exit skips the master's flush: this worker's lines are its own
  ::_exit(0);
}

// ---- master side ----------------------------------------------------------------------------

struct Worker {
  pid_t pid = 0;
  int slot = -1;
  core::TimePoint started;
  bool retiring = false;
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
    if (config_.mode == core::Mode::kProxy) {
      // Built once here and copied into every worker by fork(): each worker then balances
      // with its own copy, as processes share nothing but the scoreboard.
      try {
        upstreams_ = std::make_unique<core::Upstreams>(config_);
      } catch (const std::exception& e) {
        core::log_error("prefork: %s", e.what());
        return 1;
      }
    }
    for (;;) {
      core::TimePoint now = core::Clock::now();
      reap(now);
      manage(now);
      pollfd fd{drain_fd_, POLLIN, 0};
      if (::poll(&fd, 1, static_cast<int>(kTick.count())) > 0) {
        break;
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
    WorkerSetup setup;
    setup.config = &config_;
    setup.upstreams = upstreams_.get();
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
    workers_.push_back(Worker{pid, index, now, false});
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
  std::unique_ptr<core::Upstreams> upstreams_;
  std::vector<Worker> workers_;
};

}  // namespace

int PreforkBackend::run(const core::Config& config, core::Listener& listener, int drain_fd) {
  ::fcntl(listener.fd, F_SETFL, ::fcntl(listener.fd, F_GETFL) | O_NONBLOCK);
  Master master(config, listener, drain_fd, *this);
  return master.run();
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
