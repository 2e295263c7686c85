// The `prefork` backend: a master process that forks worker processes, each serving one
// connection at a time with the blocking pump (Apache's prefork MPM, Python's multiprocessing).
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <string>

#include "backends/common/generation.hpp"
#include "backends/prefork/scoreboard.hpp"
#include "server/backend.hpp"

namespace gearbox::backends {

// The master never serves: it keeps between config.min_spare and config.max_spare idle workers
// (at most config.workers processes), replaces dead ones, rate-limits crash loops, and on
// drain_fd sends SIGTERM to every worker and waits up to config.drain_timeout. Worker signals:
// SIGTERM/SIGINT drain (finish the connection in hand, accept no more), SIGUSR1 retire (the
// same, after serving what is already queued on its own --reuseport listener).
class PreforkBackend final : public core::Backend {
 public:
  PreforkBackend();
  ~PreforkBackend() override;

  int run(const core::Config& config, core::Listener& listener, int drain_fd) override;
  // Hands `next` to the master, which rolls the workers: it forks new ones with `next`, and
  // every older worker finishes the connection in hand (its next response says
  // Connection: close) and exits (nginx's reload, Apache's graceful restart).
  std::string reload(const core::Config& next) override;
  std::shared_ptr<const core::Config> config_in_force() const override { return gens_.config(); }

  // For the master: the reload handed over since the last call, if any; the fd that turns
  // readable when one is.
  std::optional<core::Config> take_reload();
  int reload_fd() const { return reload_pipe_[0]; }
  Generations& generations() { return gens_; }
  // Every worker slot of the scoreboard: pid, state (idle, reading, writing, proxying), and the
  // connections and requests it served (Apache's mod_status).
  std::string status_json() const override;

  // The master's scoreboard while run() serves (null otherwise); under board_mu_.
  void publish(const Scoreboard* board);

 private:
  mutable std::mutex board_mu_;
  const Scoreboard* board_ = nullptr;
  Generations gens_;
  std::mutex reload_mu_;
  std::optional<core::Config> pending_;  // under reload_mu_
  int reload_pipe_[2] = {-1, -1};        // a byte per reload handed over
};

std::unique_ptr<core::Backend> make_prefork_backend();

}  // namespace gearbox::backends
