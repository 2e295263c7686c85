// The configuration in force, and what a backend builds from it for new connections: the
// balancer (core::Upstreams) and its active health checker. A reload (SIGHUP, validated by main
// first) publishes the next generation; a connection keeps the one it was accepted under (it
// holds a reference) and, once that is superseded, answers its next request with
// Connection: close (core::Context::config_epoch), so the client reconnects into the new one.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backends/common/health_check.hpp"
#include "backends/common/upstream_pool.hpp"
#include "server/backend.hpp"
#include "server/balancer.hpp"
#include "server/config.hpp"
#include "server/connection.hpp"

namespace gearbox::backends {

class Generation {
 public:
  // Builds the balancer in proxy mode. Throws std::invalid_argument when the routes do not fit
  // the groups.
  Generation(std::shared_ptr<const core::Config> config, std::uint32_t epoch,
             const std::atomic<std::uint32_t>* epoch_in_force);
  ~Generation();  // stops the health checker
  Generation(const Generation&) = delete;
  Generation& operator=(const Generation&) = delete;

  const core::Config& config() const { return *config_; }
  const std::shared_ptr<const core::Config>& shared_config() const { return config_; }
  core::Upstreams* upstreams() const { return upstreams_.get(); }
  std::uint32_t epoch() const { return epoch_; }

  // The context of a connection accepted now: config, balancer, epoch. The driver adds its own
  // fields (buffers, driver_owns_input).
  core::Context context() const;

  // The active health checker of this generation's balancer, in the process that serves with it
  // (a prefork worker starts its own after fork). Idempotent; stop_health() joins.
  void start_health();
  void stop_health();

 private:
  std::shared_ptr<const core::Config> config_;
  std::unique_ptr<core::Upstreams> upstreams_;
  std::mutex health_mu_;
  std::unique_ptr<HealthChecker> health_;
  std::uint32_t epoch_;
  const std::atomic<std::uint32_t>* epoch_in_force_;
};

// The generation in force. The epoch word lives in a MAP_SHARED page made at construction (in
// main, before any fork), so prefork workers of an old generation see a reload too.
class Generations {
 public:
  Generations();
  ~Generations();
  Generations(const Generations&) = delete;
  Generations& operator=(const Generations&) = delete;

  // Makes `config` the generation in force: the first from run(), later ones from reloads. The
  // one it replaces stops its health checker at once (its connections keep their balancer).
  // `health`: start the new generation's checker here (false in a prefork master: its workers
  // start theirs). Throws as Generation's constructor does; then nothing changed.
  std::shared_ptr<Generation> publish(const core::Config& config, bool health = true);

  // run()'s first generation: publishes `config` unless a reload (a SIGHUP that came between
  // the listening line and run()) already put a newer one in force.
  std::shared_ptr<Generation> start(const core::Config& config, bool health = true);

  // The generation for a connection accepted now. Any thread.
  std::shared_ptr<Generation> current() const;
  // The epoch in force: cheaper than current() to tell whether it changed.
  std::uint32_t epoch() const { return epoch_->load(std::memory_order_relaxed); }
  // The configuration in force (the admin endpoint renders its upstreams), or null before run().
  std::shared_ptr<const core::Config> config() const;

 private:
  std::atomic<std::uint32_t>* epoch_ = nullptr;  // in the shared page
  mutable std::mutex mu_;                        // publish() against current()
  std::shared_ptr<Generation> current_;
};

// The reload of the backends that serve in one process (thread, pool, uring, fiber): run()
// publishes the first generation and takes current() per accepted connection; reload()
// publishes the next and gives the upstream pools their new limits.
class ReloadingBackend : public core::Backend {
 public:
  std::string reload(const core::Config& next) override;
  std::shared_ptr<const core::Config> config_in_force() const override;

 protected:
  // The pools reload() reconfigures, while run() serves (each under its own mutex).
  void track(UpstreamPool* pool);
  void untrack(UpstreamPool* pool);

  Generations gens_;

 private:
  std::mutex pools_mu_;
  std::vector<UpstreamPool*> pools_;
};

}  // namespace gearbox::backends
