// The `uring` backend: one thread, one io_uring, one C++20 coroutine per connection (Python's
// asyncio model, native). `--workers N` runs N such loops, each with its own SO_REUSEPORT
// listener, sharing nothing but the configuration and the proxy's balancer.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "backends/common/generation.hpp"

namespace gearbox::backends {
namespace uring {

// What one loop publishes after every turn, for the admin endpoint.
struct LoopStats {
  std::atomic<std::uint64_t> turns{0};
  std::atomic<std::int64_t> in_flight{0};
  std::atomic<std::int64_t> connections{0};
  std::atomic<std::int64_t> asleep{0};            // of those, idle ones whose core state is freed
  std::atomic<std::int64_t> dozing{0};            // idle ones in the doze set, their core awake
  std::atomic<std::int64_t> receive_buffers{0};   // the provided-buffer ring's fill (grows)
  std::atomic<std::int64_t> receive_waits{0};     // receives waiting for a buffer now
  std::atomic<std::uint64_t> memory_releases{0};  // times it gave a storm's memory back
};

}  // namespace uring

class UringBackend final : public ReloadingBackend {
 public:
  int run(const core::Config& config, core::Listener& listener, int drain_fd) override;
  // Per loop: turns so far and per second since the last call, ring operations in flight, and
  // connections served.
  std::string status_json() const override;

 private:
  std::unique_ptr<uring::LoopStats[]> stats_;  // one per loop, made before the loops start
  std::atomic<int> loops_{0};
  mutable std::mutex rate_mu_;
  mutable std::vector<std::uint64_t> last_turns_;
  mutable std::chrono::steady_clock::time_point last_at_{};
};

std::unique_ptr<core::Backend> make_uring_backend();

// Empty when this host can run io_uring; otherwise one line saying why not.
std::string uring_unavailable();

}  // namespace gearbox::backends
