// The `uring` backend: the loops (backends/uring/loop.hpp), one per worker thread, each with a
// listener of its own on the same address (SO_REUSEPORT); the balancer and the active health
// checker are shared by them.
#include "backends/uring/uring_backend.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <thread>
#include <vector>

#include "backends/common/socket.hpp"
#include "backends/uring/loop.hpp"
#include "backends/uring/ring.hpp"
#include "server/balancer.hpp"
#include "server/log.hpp"

namespace gearbox::backends {

std::string uring_unavailable() {
  return uring::io_uring_unavailable();
}

int UringBackend::run(const core::Config& config, core::Listener& listener, int drain_fd) {
  const int workers = config.workers > 0 ? config.workers : 1;
  // One balancer per generation, shared by the loops (it is thread-safe).
  try {
    gens_.start(config);
  } catch (const std::exception& e) {
    core::log_error("uring backend: %s", e.what());
    return 1;
  }

  // One listener per loop: the kernel spreads new connections over them (SO_REUSEPORT). When a
  // second socket cannot join the address, the loops share duplicates of the first.
  std::vector<int> fds{listener.fd};
  listener.fd = -1;  // the first loop owns it now
  if (workers > 1) {
    int one = 1;
    ::setsockopt(fds[0], SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    for (int i = 1; i < workers; ++i) {
      std::string error;
      std::optional<core::Listener> extra =
          open_listener(listener.address, config.backlog, true, &error);
      if (extra) {
        fds.push_back(extra->fd);
      } else {
        core::log_warn("uring backend: worker %d shares the first listener: %s", i, error.c_str());
        fds.push_back(::dup(fds[0]));
      }
    }
  }
  const int share = std::max(1, config.max_connections / workers);
  std::vector<int> status(static_cast<std::size_t>(workers), 0);
  stats_ = std::make_unique<uring::LoopStats[]>(static_cast<std::size_t>(workers));
  loops_.store(workers, std::memory_order_release);
  auto serve = [&](int i) {
    uring::Loop loop(config, gens_, fds[static_cast<std::size_t>(i)], drain_fd, share);
    loop.publish_to(&stats_[static_cast<std::size_t>(i)]);
    if (loop.pool() != nullptr) {
      track(loop.pool());
    }
    status[static_cast<std::size_t>(i)] = loop.run(i == 0 ? workers : 0);
    if (loop.pool() != nullptr) {
      untrack(loop.pool());
    }
  };
  std::vector<std::thread> threads;
  for (int i = 1; i < workers; ++i) {
    threads.emplace_back(serve, i);
  }
  serve(0);
  for (std::thread& t : threads) {
    t.join();
  }
  gens_.current()->stop_health();
  return *std::max_element(status.begin(), status.end());
}

std::string UringBackend::status_json() const {
  const int loops = loops_.load(std::memory_order_acquire);
  std::lock_guard lock(rate_mu_);
  auto now = std::chrono::steady_clock::now();
  double elapsed = std::chrono::duration<double>(now - last_at_).count();
  last_turns_.resize(static_cast<std::size_t>(loops), 0);
  std::string out = "{\"loops\":[";
  for (int i = 0; i < loops; ++i) {
    const uring::LoopStats& s = stats_[static_cast<std::size_t>(i)];
    std::uint64_t turns = s.turns.load(std::memory_order_relaxed);
    double rate =
        last_at_ == std::chrono::steady_clock::time_point{} || elapsed <= 0
            ? 0
            : static_cast<double>(turns - last_turns_[static_cast<std::size_t>(i)]) / elapsed;
    last_turns_[static_cast<std::size_t>(i)] = turns;
    out += i == 0 ? "" : ",";
    out += "{\"loop\":" + std::to_string(i) + ",\"turns\":" + std::to_string(turns) +
           ",\"turns_per_second\":" + std::to_string(static_cast<long long>(rate)) +
           ",\"operations_in_flight\":" + std::to_string(s.in_flight.load()) +
           ",\"connections\":" + std::to_string(s.connections.load()) +
           ",\"asleep\":" + std::to_string(s.asleep.load()) +
           ",\"dozing\":" + std::to_string(s.dozing.load()) +
           ",\"receive_buffers\":" + std::to_string(s.receive_buffers.load()) +
           ",\"receive_waits\":" + std::to_string(s.receive_waits.load()) +
           ",\"memory_releases\":" + std::to_string(s.memory_releases.load()) + "}";
  }
  last_at_ = now;
  return out + "]}";
}

std::unique_ptr<core::Backend> make_uring_backend() {
  return std::make_unique<UringBackend>();
}

}  // namespace gearbox::backends
