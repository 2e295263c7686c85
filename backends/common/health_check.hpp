// Active health checks: a background thread that periodically sends `GET <health_path>` to each
// server of the groups that set one and reports the outcome to core::Upstreams::set_health.
#pragma once

#include <atomic>
#include <string_view>
#include <thread>

#include "server/balancer.hpp"
#include "server/config.hpp"

namespace gearbox::backends {

// One probe, blocking for at most `timeout`: connects to `ep`, sends
// "GET <path> HTTP/1.1\r\nHost: <host>\r\nConnection: close\r\n...\r\n" and reads the status
// line. True on a 2xx status (RFC 9110 §15.3). `wake_fd`, when >= 0, is polled too: once it is
// readable the probe gives up at once and returns false.
bool probe_health(const core::Endpoint& ep, std::string_view host, std::string_view path,
                  core::Duration timeout, int wake_fd = -1);

// Checks every server of each group with a health_path, first at start() and then every
// health_interval of that group. Probes run one after another on one thread, each bounded by
// min(connect_timeout + read_timeout, health_interval) of its group. The Host sent is the
// group's host, else the server's address. In prefork, start it in each worker after fork().
class HealthChecker {
 public:
  // `upstreams` must outlive the checker.
  explicit HealthChecker(core::Upstreams& upstreams);
  ~HealthChecker();  // stop()
  HealthChecker(const HealthChecker&) = delete;
  HealthChecker& operator=(const HealthChecker&) = delete;

  // Starts the thread; does nothing when no group has a health_path or when already started.
  void start();
  // Interrupts a probe in progress or the wait between rounds, and joins. Idempotent.
  void stop();
  bool running() const { return thread_.joinable(); }
  // One round over all checked servers on the calling thread (start-up, tests). Not to be
  // called while running().
  void check_now();

 private:
  void run();
  void check_group(std::size_t g);
  bool stopping() const;

  core::Upstreams& upstreams_;
  std::thread thread_;
  int wake_[2] = {-1, -1};  // pipe: stop() writes a byte; the thread polls the read end
};

}  // namespace gearbox::backends
