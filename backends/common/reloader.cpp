// The SIGHUP reload: validate, refuse what cannot change, keep start-up-only settings, hand over.
#include "backends/common/reloader.hpp"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include "server/config_load.hpp"
#include "server/log.hpp"
#include "server/metrics.hpp"

namespace gearbox::backends {
namespace {

int g_reload_write_fd = -1;

// Async-signal-safe: one byte into the reload pipe, read by the reloader's thread.
void on_reload_signal(int) {
  int saved_errno = errno;
  char byte = 1;
  [[maybe_unused]] ssize_t n = ::write(g_reload_write_fd, &byte, 1);
  errno = saved_errno;
}

std::string or_none(const std::string& text) {
  return text.empty() ? "(none)" : text;
}

}  // namespace

sigset_t control_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGUSR1}) {
    sigaddset(&set, sig);
  }
  return set;
}

Reloader::Reloader(int argc, char** argv, const core::Config& running, core::Backend& backend)
    : args_(argv, argv + argc), running_(running), backend_(backend) {}

Reloader::~Reloader() {
  stop();
  for (int fd : stop_) {
    if (fd >= 0) {
      ::close(fd);
    }
  }
}

bool Reloader::start(int drain_fd) {
  int signal_pipe[2];
  if (::pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) != 0 || ::pipe2(stop_, O_CLOEXEC) != 0) {
    core::log_error("reload: pipe: %s", std::strerror(errno));
    return false;
  }
  g_reload_write_fd = signal_pipe[1];
  struct sigaction action = {};
  action.sa_handler = on_reload_signal;
  sigemptyset(&action.sa_mask);
  action.sa_flags = SA_RESTART;
  ::sigaction(SIGHUP, &action, nullptr);
  // This thread is born with every signal blocked (the mask is inherited) and named before
  // start() returns, so that nothing that follows (the listening line, a test reading /proc)
  // can see it unnamed. It takes control_signals() only inside ppoll: their handlers write to
  // pipes, and the one it watches wakes it.
  sigset_t all;
  sigset_t old;
  sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &old);
  thread_ = std::thread([this, drain_fd, read_fd = signal_pipe[0]] {
    sigset_t waiting;
    sigfillset(&waiting);
    const sigset_t control = control_signals();
    for (int sig = 1; sig < NSIG; ++sig) {
      if (sigismember(&control, sig) == 1) {
        sigdelset(&waiting, sig);
      }
    }
    bool draining = false;
    for (;;) {
      // A negative fd is not watched: once draining, the drain pipe stays readable.
      pollfd fds[3] = {
          {read_fd, POLLIN, 0}, {stop_[0], POLLIN, 0}, {draining ? -1 : drain_fd, POLLIN, 0}};
      if (::ppoll(fds, 3, nullptr, &waiting) < 0) {
        if (errno == EINTR) {
          continue;
        }
        break;
      }
      if (fds[1].revents != 0) {
        break;
      }
      draining = draining || fds[2].revents != 0;
      bool hup = false;
      char bytes[64];
      while (::read(read_fd, bytes, sizeof bytes) > 0) {  // signals that came together: one reload
        hup = true;
      }
      if (hup && !draining) {
        reload_now();  // during a drain a SIGHUP is read and dropped
      }
    }
  });
  ::pthread_setname_np(thread_.native_handle(), "gearbox-reload");  // tells it apart in /proc
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  return true;
}

void Reloader::stop() {
  if (thread_.joinable()) {
    char byte = 1;
    [[maybe_unused]] ssize_t n = ::write(stop_[1], &byte, 1);
    thread_.join();
  }
}

std::string Reloader::reload_now() {
  auto refuse = [](const std::string& line) {
    core::log_error("reload: %s; the running configuration stays", line.c_str());
    return line;
  };
  if (running_.config_file.empty()) {
    return refuse("no configuration file (--config) to read again");
  }
  std::vector<const char*> argv;
  for (const std::string& a : args_) {
    argv.push_back(a.c_str());
  }
  core::ConfigResult loaded = core::load_config(static_cast<int>(argv.size()), argv.data());
  if (!loaded.ok) {
    return refuse(loaded.error);
  }
  core::Config& next = loaded.config;
  const std::string& file = running_.config_file;
  // What a reload cannot change: the sockets main opened and the backend's whole shape.
  auto fixed = [&](const char* key, const std::string& was, const std::string& now) {
    return file + ": " + key + ": cannot change by reload (" + or_none(was) + " -> " +
           or_none(now) + "); restart gearbox for it";
  };
  if (next.listen != running_.listen) {
    return refuse(fixed("listen", running_.listen, next.listen));
  }
  if (next.admin_listen != running_.admin_listen) {
    return refuse(fixed("admin_listen", running_.admin_listen, next.admin_listen));
  }
  if (!next.backend.empty() && next.backend != running_.backend) {
    return refuse(fixed("backend", running_.backend, next.backend));
  }
  if (next.mode != running_.mode) {
    return refuse(fixed("mode", std::string(core::mode_name(running_.mode)),
                        std::string(core::mode_name(next.mode))));
  }
  // Sized at start-up (processes, threads, stacks, rings, the listen queue, the log file): they
  // keep their running values, said in one warning.
  std::string kept;
  auto keep = [&](const char* key, auto& field, const auto& running) {
    if (!(field == running)) {
      kept += (kept.empty() ? "" : ", ") + std::string(key);
      field = running;
    }
  };
  keep("backlog", next.backlog, running_.backlog);
  keep("workers", next.workers, running_.workers);
  keep("min_spare", next.min_spare, running_.min_spare);
  keep("max_spare", next.max_spare, running_.max_spare);
  keep("reuseport", next.reuseport, running_.reuseport);
  keep("threads", next.threads, running_.threads);
  keep("thread_stack", next.thread_stack, running_.thread_stack);
  keep("fiber_stack", next.fiber_stack, running_.fiber_stack);
  keep("max_connections", next.max_connections, running_.max_connections);
  keep("sqpoll", next.sqpoll, running_.sqpoll);
  keep("drain_timeout", next.drain_timeout, running_.drain_timeout);
  keep("access_log", next.access_log, running_.access_log);
  keep("access_log_format", next.access_log_format, running_.access_log_format);
  next.backend = running_.backend;
  next.cpu_iterations_per_ms = running_.cpu_iterations_per_ms;
  next.wall_offset = running_.wall_offset;
  std::shared_ptr<const core::Config> in_force = backend_.config_in_force();
  core::metrics::carry_slots(in_force ? *in_force : running_, next);
  if (std::string error = backend_.reload(next); !error.empty()) {
    return refuse(file + ": " + error);
  }
  core::set_log_level(core::parse_log_level(next.log_level).value_or(core::LogLevel::kInfo));
  if (!kept.empty()) {
    core::log_warn("reload: %s: %s take effect only at restart; kept as running", file.c_str(),
                   kept.c_str());
  }
  core::log_info("reload: %s read again; new connections use it", file.c_str());
  return "";
}

}  // namespace gearbox::backends
