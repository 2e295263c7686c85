// The admin endpoint (--admin-listen): GET /metrics (Prometheus text format 0.0.4), GET /status
// (a self-refreshing HTML page) and GET /status?format=json, served by one thread of the process
// main runs in, on a listener of its own (never the serving port, so a proxy never exposes it).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>
#include <thread>

#include "server/backend.hpp"
#include "server/config.hpp"
#include "server/metrics.hpp"

namespace gearbox::backends {

class AdminServer {
 public:
  // `listener` is owned from now on. `arena` and `backend` must outlive the server. Answers one
  // connection at a time, each bounded by a 2 s deadline, and closes it after the response.
  AdminServer(const core::Config& config, core::Listener listener,
              const core::metrics::Arena& arena, const core::Backend& backend);
  ~AdminServer();  // stop()
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  void start();
  void stop();

  // The bodies it serves (tests).
  std::string metrics_text() const;
  std::string status_json();

 private:
  void run();
  void serve(int fd);

  const core::Config& config_;
  core::Listener listener_;
  const core::metrics::Arena& arena_;
  const core::Backend& backend_;
  int wake_fd_ = -1;
  std::thread thread_;
  // For requests per second on /status: the total and time of the previous JSON.
  std::uint64_t last_total_ = 0;
  std::chrono::steady_clock::time_point last_at_{};
};

}  // namespace gearbox::backends
