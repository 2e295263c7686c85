// The `fiber` backend: Go's model with Boost.Fiber. --threads OS threads share every fiber
// (M:N, one shared ready queue); one fiber per connection runs the blocking pump in straight-line
// style, parking on a netpoller (one epoll set) instead of blocking its thread; connections travel
// from the acceptor fiber to the threads through buffered channels, whose closing ends them.
#pragma once

#include <memory>

#include "server/backend.hpp"

namespace gearbox::backends {

class FiberBackend final : public core::Backend {
 public:
  int run(const core::Config& config, core::Listener& listener, int drain_fd) override;
};

std::unique_ptr<core::Backend> make_fiber_backend();

}  // namespace gearbox::backends
