// Configuration generations: the one in force, swapped by a reload.
#include "backends/common/generation.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <new>
#include <utility>

#include "server/log.hpp"

namespace gearbox::backends {

Generation::Generation(std::shared_ptr<const core::Config> config, std::uint32_t epoch,
                       const std::atomic<std::uint32_t>* epoch_in_force)
    : config_(std::move(config)), epoch_(epoch), epoch_in_force_(epoch_in_force) {
  if (config_->mode == core::Mode::kProxy) {
    upstreams_ = std::make_unique<core::Upstreams>(*config_);
  }
}

Generation::~Generation() {
  stop_health();
}

core::Context Generation::context() const {
  core::Context ctx;
  ctx.config = config_.get();
  ctx.upstreams = upstreams_.get();
  ctx.config_epoch = epoch_in_force_;
  ctx.epoch = epoch_;
  return ctx;
}

void Generation::start_health() {
  std::lock_guard lock(health_mu_);
  if (upstreams_ != nullptr && health_ == nullptr) {
    health_ = std::make_unique<HealthChecker>(*upstreams_);
    health_->start();
  }
}

void Generation::stop_health() {
  std::unique_ptr<HealthChecker> health;
  {
    std::lock_guard lock(health_mu_);
    health = std::move(health_);
  }
  if (health != nullptr) {
    health->stop();
  }
}

Generations::Generations() {
  void* page = ::mmap(nullptr, sizeof(std::atomic<std::uint32_t>), PROT_READ | PROT_WRITE,
                      MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) {
    core::log_error("generations: mmap: %s", std::strerror(errno));
    throw std::bad_alloc();
  }
  epoch_ = new (page) std::atomic<std::uint32_t>(0);
}

// The epoch page stays mapped: after a drain timeout, connections still running (the process is
// exiting) may read it.
Generations::~Generations() = default;

std::shared_ptr<Generation> Generations::publish(const core::Config& config, bool health) {
  std::shared_ptr<Generation> old;
  std::shared_ptr<Generation> next;
  {
    std::lock_guard lock(mu_);
    std::uint32_t epoch = current_ ? current_->epoch() + 1 : 0;
    next =
        std::make_shared<Generation>(std::make_shared<const core::Config>(config), epoch, epoch_);
    if (health) {
      next->start_health();
    }
    old = std::exchange(current_, next);
    epoch_->store(epoch, std::memory_order_relaxed);
  }
  if (old != nullptr) {
    old->stop_health();
  }
  return next;
}

std::shared_ptr<Generation> Generations::start(const core::Config& config, bool health) {
  if (std::shared_ptr<Generation> now = current()) {
    return now;
  }
  return publish(config, health);
}

std::shared_ptr<Generation> Generations::current() const {
  std::lock_guard lock(mu_);
  return current_;
}

std::shared_ptr<const core::Config> Generations::config() const {
  std::lock_guard lock(mu_);
  return current_ ? current_->shared_config() : nullptr;
}

std::string ReloadingBackend::reload(const core::Config& next) {
  std::shared_ptr<Generation> g;
  try {
    g = gens_.publish(next);
  } catch (const std::exception& e) {
    return e.what();
  }
  std::lock_guard lock(pools_mu_);
  for (UpstreamPool* pool : pools_) {
    pool->configure(g->config());
  }
  return "";
}

std::shared_ptr<const core::Config> ReloadingBackend::config_in_force() const {
  return gens_.config();
}

void ReloadingBackend::track(UpstreamPool* pool) {
  std::lock_guard lock(pools_mu_);
  pools_.push_back(pool);
}

void ReloadingBackend::untrack(UpstreamPool* pool) {
  std::lock_guard lock(pools_mu_);
  std::erase(pools_, pool);
}

}  // namespace gearbox::backends
