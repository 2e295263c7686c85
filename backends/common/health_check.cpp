// The active health checker: blocking probes with poll(2) deadlines on one background thread,
// woken for stop() through a pipe.
#include "backends/common/health_check.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "backends/common/socket.hpp"

namespace gearbox::backends {
namespace {

using Clock = std::chrono::steady_clock;

// Waits for `events` on fd until `deadline`; false on timeout, error or wake.
bool wait_for(int fd, short events, Clock::time_point deadline, int wake_fd) {
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return false;
    }
    pollfd fds[2] = {{fd, events, 0}, {wake_fd, POLLIN, 0}};
    int n = ::poll(fds, wake_fd >= 0 ? 2 : 1,
                   static_cast<int>(std::min<long long>(left.count() + 1, 1'000'000'000)));
    if (n < 0) {
      if (errno == EINTR) {
        continue;
      }
      return false;
    }
    if (wake_fd >= 0 && fds[1].revents != 0) {
      return false;
    }
    if (n > 0 && fds[0].revents != 0) {
      return true;
    }
  }
}

// "HTTP/1.x 2xx" (RFC 9112 §4): true for a well-formed status line with a 2xx code.
bool is_2xx_status_line(std::string_view s) {
  return s.size() >= 12 && s.substr(0, 7) == "HTTP/1." && s[7] >= '0' && s[7] <= '9' &&
         s[8] == ' ' && s[9] == '2' && s[10] >= '0' && s[10] <= '9' && s[11] >= '0' && s[11] <= '9';
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) {
      ::close(fd_);
    }
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

}  // namespace

bool probe_health(const core::Endpoint& ep, std::string_view host, std::string_view path,
                  core::Duration timeout, int wake_fd) {
  const auto deadline = Clock::now() + timeout;
  bool in_progress = false;
  Fd fd(connect_nonblocking(ep, &in_progress));
  if (fd.get() < 0) {
    return false;
  }
  if (in_progress &&
      (!wait_for(fd.get(), POLLOUT, deadline, wake_fd) || connect_result(fd.get()) != 0)) {
    return false;
  }

  std::string req;
  req.reserve(128 + path.size() + host.size());
  req.append("GET ").append(path).append(" HTTP/1.1\r\nHost: ").append(host);
  req.append("\r\nUser-Agent: gearbox-health\r\nConnection: close\r\n\r\n");
  std::size_t sent = 0;
  while (sent < req.size()) {
    ssize_t n = ::send(fd.get(), req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (!wait_for(fd.get(), POLLOUT, deadline, wake_fd)) {
        return false;
      }
    } else {
      return false;
    }
  }

  char buf[64];
  std::size_t have = 0;
  while (have < 12) {
    ssize_t n = ::recv(fd.get(), buf + have, sizeof buf - have, 0);
    if (n > 0) {
      have += static_cast<std::size_t>(n);
    } else if (n == 0) {
      break;
    } else if (errno == EINTR) {
      continue;
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      if (!wait_for(fd.get(), POLLIN, deadline, wake_fd)) {
        return false;
      }
    } else {
      return false;
    }
  }
  return is_2xx_status_line(std::string_view(buf, have));
}

HealthChecker::HealthChecker(core::Upstreams& upstreams) : upstreams_(upstreams) {}

HealthChecker::~HealthChecker() {
  stop();
}

void HealthChecker::start() {
  if (thread_.joinable()) {
    return;
  }
  bool any = false;
  for (std::size_t g = 0; g < upstreams_.group_count(); ++g) {
    any = any || !upstreams_.group(g).health_path.empty();
  }
  if (!any) {
    return;
  }
  if (::pipe2(wake_, O_CLOEXEC | O_NONBLOCK) != 0) {
    std::perror("gearbox: health checker: pipe2");
    std::abort();
  }
  thread_ = std::thread([this] { run(); });
}

void HealthChecker::stop() {
  if (thread_.joinable()) {
    char b = 1;
    while (::write(wake_[1], &b, 1) < 0 && errno == EINTR) {
    }
    thread_.join();
  }
  for (int& fd : wake_) {
    if (fd >= 0) {
      ::close(fd);
      fd = -1;
    }
  }
}

void HealthChecker::check_now() {
  for (std::size_t g = 0; g < upstreams_.group_count(); ++g) {
    if (!upstreams_.group(g).health_path.empty()) {
      check_group(g);
    }
  }
}

bool HealthChecker::stopping() const {
  // The byte stop() writes is never read, so the pipe stays readable until the thread ends.
  pollfd p{wake_[0], POLLIN, 0};
  return wake_[0] >= 0 && ::poll(&p, 1, 0) > 0;
}

void HealthChecker::check_group(std::size_t g) {
  const core::UpstreamGroup& group = upstreams_.group(g);
  const core::Duration timeout =
      std::min(group.connect_timeout + group.read_timeout, group.health_interval);
  for (std::size_t s = 0; s < upstreams_.server_count(g); ++s) {
    const core::Endpoint& ep = upstreams_.endpoint(g, s);
    std::string_view host = group.host ? std::string_view(*group.host) : ep.text;
    bool ok = probe_health(ep, host, group.health_path, timeout, wake_[0]);
    if (stopping()) {
      return;  // the interrupted probe says nothing about the server
    }
    upstreams_.set_health(g, s, ok);
  }
}

void HealthChecker::run() {
  std::vector<Clock::time_point> due(upstreams_.group_count(), Clock::now());
  for (;;) {
    auto next = Clock::time_point::max();
    for (std::size_t g = 0; g < due.size(); ++g) {
      const core::UpstreamGroup& group = upstreams_.group(g);
      if (group.health_path.empty()) {
        continue;
      }
      if (Clock::now() >= due[g]) {
        check_group(g);
        due[g] = Clock::now() + group.health_interval;
      }
      next = std::min(next, due[g]);
    }
    pollfd p{wake_[0], POLLIN, 0};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(next - Clock::now());
    int ms = static_cast<int>(std::clamp<long long>(left.count() + 1, 0, 3'600'000));
    if (::poll(&p, 1, ms) > 0) {
      return;
    }
  }
}

}  // namespace gearbox::backends
