// The `fiber` backend: Go's model with Boost.Fiber. --threads OS threads share every fiber
// (M:N, one shared ready queue); one fiber per connection runs the blocking pump in straight-line
// style, parking on a netpoller (one epoll set) instead of blocking its thread; connections travel
// from the acceptor fiber to the threads through buffered channels, whose closing ends them.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

#include <memory>

#include "backends/common/generation.hpp"

namespace gearbox::backends {

// What the fibers are doing, written by the fibers and read by status_json().
struct FiberStats {
  static constexpr int kMaxThreads = 64;  // threads beyond are not shown per thread
  std::atomic<int> threads{0};
  std::atomic<int> fibers{0};  // connection fibers alive
  std::atomic<int> parked{0};  // of those, parked on the netpoller (waiting for I/O or a timer)
  std::atomic<int> channel_depth[kMaxThreads] = {};       // accepted, not yet launched
  std::atomic<std::uint64_t> launched[kMaxThreads] = {};  // connection fibers started there
};

class FiberBackend final : public ReloadingBackend {
 public:
  int run(const core::Config& config, core::Listener& listener, int drain_fd) override;
  // Connection fibers by state (parked on the netpoller, or ready/running) and, per scheduler
  // thread, the depth of its accept channel and the fibers it launched.
  std::string status_json() const override;

 private:
  FiberStats stats_;
};

std::unique_ptr<core::Backend> make_fiber_backend();

}  // namespace gearbox::backends
