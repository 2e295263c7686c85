// The `prefork` backend: a master process that forks worker processes, each serving one
// connection at a time with the blocking pump (Apache's prefork MPM, Python's multiprocessing).
#pragma once

#include <mutex>
#include <string>

#include "backends/prefork/scoreboard.hpp"

#include <memory>

#include "server/backend.hpp"

namespace gearbox::backends {

// The master never serves: it keeps between config.min_spare and config.max_spare idle workers
// (at most config.workers processes), replaces dead ones, rate-limits crash loops, and on
// drain_fd sends SIGTERM to every worker and waits up to config.drain_timeout. Worker signals:
// SIGTERM/SIGINT drain (finish the connection in hand, accept no more), SIGUSR1 retire (the
// same, after serving what is already queued on its own --reuseport listener).
class PreforkBackend final : public core::Backend {
 public:
  int run(const core::Config& config, core::Listener& listener, int drain_fd) override;
  // Every worker slot of the scoreboard: pid, state (idle, reading, writing, proxying), and the
  // connections and requests it served (Apache's mod_status).
  std::string status_json() const override;

  // The master's scoreboard while run() serves (null otherwise); under board_mu_.
  void publish(const Scoreboard* board);

 private:
  mutable std::mutex board_mu_;
  const Scoreboard* board_ = nullptr;
};

std::unique_ptr<core::Backend> make_prefork_backend();

}  // namespace gearbox::backends
