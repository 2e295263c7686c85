// gearbox's entry point: load the configuration, pick the backend, calibrate /cpu, open the
// listener, turn SIGTERM/SIGINT into a readable drain pipe and SIGHUP into a reload, then let
// the backend serve.
// Exit status: 0 clean drain or --check ok, 2 configuration error, otherwise the backend's.
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <new>
#include <optional>
#include <string>

#include "backends/common/admin.hpp"
#include "backends/common/reloader.hpp"
#include "backends/common/socket.hpp"
#include "server/backend.hpp"
#include "server/config_load.hpp"
#include "server/cpu_burn.hpp"
#include "server/log.hpp"

namespace {

using gearbox::core::log_line;
using gearbox::core::LogLevel;

int g_drain_write_fd = -1;

// Async-signal-safe: one byte into the drain pipe. Nobody reads it, so the read end stays
// readable for every poller in every thread (and, after fork, every worker process).
void on_stop_signal(int) {
  int saved_errno = errno;
  char byte = 1;
  ssize_t ignored = ::write(g_drain_write_fd, &byte, 1);
  (void)ignored;
  errno = saved_errno;
}

// SIGUSR1 (logrotate's convention): every process reopens the access log file by its path.
void on_reopen_signal(int) {
  int saved_errno = errno;
  gearbox::core::request_access_log_reopen();
  errno = saved_errno;
}

// Returns the read end of the drain pipe, or -1 (with a logged reason).
int install_stop_signals() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) {
    log_line(LogLevel::kError, std::string("pipe: ") + std::strerror(errno));
    return -1;
  }
  ::fcntl(fds[1], F_SETFL, ::fcntl(fds[1], F_GETFL) | O_NONBLOCK);
  g_drain_write_fd = fds[1];
  struct sigaction action = {};
  action.sa_handler = on_stop_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  ::sigaction(SIGTERM, &action, nullptr);
  ::sigaction(SIGINT, &action, nullptr);
  action.sa_handler = on_reopen_signal;
  ::sigaction(SIGUSR1, &action, nullptr);
  return fds[0];
}

void raise_file_limit() {
  rlimit limit{};
  if (::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      gearbox::core::log_debug("cannot raise the open-file limit: %s", std::strerror(errno));
    }
  }
}

// Iterations of burn_cpu per millisecond: a warm-up, then four ~5 ms windows on the steady
// clock, keeping the fastest so a window in which another process preempted us does not count.
// (The thread CPU clock would ignore preemption, but it is too coarse under gVisor.)
// Iterations of burn_cpu per millisecond of this thread's CPU time: CPU time, not wall time,
// so that being preempted while calibrating (a busy machine) does not make /cpu/<ms> burn
// less than asked. The best of four windows is kept.
double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

std::uint64_t calibrate_cpu() {
  volatile std::uint64_t sink = gearbox::core::burn_cpu(200'000);
  constexpr std::uint64_t kChunk = 10'000;
  double best = 0;
  for (int window = 0; window < 4; ++window) {
    std::uint64_t iterations = 0;
    const double start = thread_cpu_ms();
    double elapsed = 0;
    do {
      sink = sink + gearbox::core::burn_cpu(kChunk);
      iterations += kChunk;
      elapsed = thread_cpu_ms() - start;
    } while (elapsed < 5.0);
    best = std::max(best, static_cast<double>(iterations) / elapsed);
  }
  auto per_ms = static_cast<std::uint64_t>(best);
  return per_ms > 0 ? per_ms : 1;
}

std::string backend_names() {
  std::string names;
  for (const auto& info : gearbox::core::backend_registry()) {
    names += (names.empty() ? "" : ", ") + std::string(info.name);
  }
  return names;
}

std::string backend_help() {
  std::string text = "\nBackends:\n";
  for (const auto& info : gearbox::core::backend_registry()) {
    std::string line = "  " + std::string(info.name);
    line.resize(12, ' ');
    line += std::string(info.model);
    std::string why = info.unavailable();
    if (!why.empty()) {
      line += " (unavailable here: " + why + ")";
    }
    text += line + "\n";
  }
  return text;
}

// For --version: the backends this build has, each marked when this host cannot run it.
std::string backend_versions() {
  std::string text = "backends:";
  for (const auto& info : gearbox::core::backend_registry()) {
    text += " " + std::string(info.name);
    if (!info.unavailable().empty()) {
      text += " (unavailable here)";
    }
  }
  return text + "\n";
}

}  // namespace

int main(int argc, char** argv) {
  using namespace gearbox;
  ::signal(SIGPIPE, SIG_IGN);
  // Before any thread starts (the access log's flusher, the backend's): only the reloader's
  // thread takes these, once their handlers are in place (backends/common/reloader.hpp).
  const sigset_t control = backends::control_signals();
  ::pthread_sigmask(SIG_BLOCK, &control, nullptr);

  core::ConfigResult loaded = core::load_config(argc, argv);
  if (!loaded.ok) {
    log_line(LogLevel::kError, loaded.error);
    return loaded.exit_status;
  }
  if (loaded.exit_now) {
    std::string output = loaded.output;
    if (loaded.help) {
      output += backend_help();
    }
    if (loaded.version) {
      output += backend_versions();
    }
    std::fputs(output.c_str(), stdout);
    return loaded.exit_status;
  }
  core::Config& config = loaded.config;
  core::set_log_level(core::parse_log_level(config.log_level).value_or(LogLevel::kInfo));
  if (!config.access_log.empty()) {
    std::string error;
    if (!core::open_access_log(config.access_log, config.access_log_format, &error)) {
      log_line(LogLevel::kError, "--access-log: " + error);
      return core::kConfigErrorStatus;
    }
  }

  const bool chosen_by_default = config.backend.empty();
  if (chosen_by_default) {
    config.backend = std::string(core::default_backend());
  }
  const core::BackendInfo* backend_info = core::find_backend(config.backend);
  if (backend_info == nullptr) {
    log_line(LogLevel::kError, loaded.backend_source + ": unknown backend \"" + config.backend +
                                   "\" (known: " + backend_names() + ")");
    return core::kConfigErrorStatus;
  }
  if (std::string why = backend_info->unavailable(); !why.empty()) {
    log_line(LogLevel::kError, loaded.backend_source + ": backend \"" + config.backend +
                                   "\" is not available here: " + why);
    return core::kConfigErrorStatus;
  }
  if (loaded.check) {
    std::fputs("configuration ok\n", stdout);
    return 0;
  }

  raise_file_limit();
  config.cpu_iterations_per_ms = calibrate_cpu();
  config.wall_offset = std::chrono::duration_cast<std::chrono::nanoseconds>(
      std::chrono::system_clock::now().time_since_epoch() -
      std::chrono::steady_clock::now().time_since_epoch());

  std::string error;
  std::optional<core::Listener> listener =
      backends::open_listener(config.listen, config.backlog, config.reuseport, &error);
  if (!listener) {
    log_line(LogLevel::kError, "--listen: " + error);
    return 1;
  }
  // The admin endpoint and the metric arena it reads, shared with prefork workers: mapped before
  // any fork. Without --admin-listen nothing is counted (the core checks for an arena).
  std::optional<core::Listener> admin_listener;
  if (!config.admin_listen.empty()) {
    admin_listener = backends::open_listener(config.admin_listen, 64, false, &error);
    if (!admin_listener) {
      log_line(LogLevel::kError, "--admin-listen: " + error);
      return 1;
    }
    void* shared = ::mmap(nullptr, sizeof(core::metrics::Arena), PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (shared == MAP_FAILED) {
      log_line(LogLevel::kError, std::string("metrics: mmap: ") + std::strerror(errno));
      return 1;
    }
    auto* arena = new (shared) core::metrics::Arena();
    arena->started_wall_s = std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
    core::metrics::install(arena);
  }
  int drain_fd = install_stop_signals();
  if (drain_fd < 0) {
    return 1;
  }
  std::unique_ptr<core::Backend> backend = backend_info->make();
  // SIGHUP: read the configuration again; new connections get it (backends/common/reloader).
  // Installed before the listening line, which tells a supervisor the server is up.
  backends::Reloader reloader(argc, argv, config, *backend);
  if (!reloader.start(drain_fd)) {
    return 1;
  }
  core::log_plain("listening on " + listener->address + " (backend " + config.backend + ", mode " +
                  std::string(core::mode_name(config.mode)) + ")");
  if (chosen_by_default && config.backend == "uring") {
    core::log_info("backend uring by default: this host runs io_uring");
  } else if (chosen_by_default) {
    const core::BackendInfo* uring = core::find_backend("uring");
    core::log_info("backend %s by default: uring is not available here: %s", config.backend.c_str(),
                   uring ? uring->unavailable().c_str() : "not built");
  }
  std::unique_ptr<backends::AdminServer> admin;
  if (admin_listener) {
    std::string address = admin_listener->address;
    admin = std::make_unique<backends::AdminServer>(config, std::move(*admin_listener),
                                                    *core::metrics::arena(), *backend);
    admin->start();
    core::log_info("admin endpoint on %s (/metrics, /status)", address.c_str());
  }
  core::log_debug("cpu calibration: %llu iterations per ms",
                  static_cast<unsigned long long>(config.cpu_iterations_per_ms));
  int status = backend->run(config, *listener, drain_fd);
  reloader.stop();
  admin.reset();
  core::flush_access_log();
  core::log_debug("exiting with status %d", status);
  return status;
}
