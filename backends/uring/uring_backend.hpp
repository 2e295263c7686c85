// The `uring` backend: one thread, one io_uring, one C++20 coroutine per connection (Python's
// asyncio model, native). `--workers N` runs N such loops, each with its own SO_REUSEPORT
// listener, sharing nothing but the configuration and the proxy's balancer.
#pragma once

#include <memory>
#include <string>

#include "server/backend.hpp"

namespace gearbox::backends {

class UringBackend final : public core::Backend {
 public:
  int run(const core::Config& config, core::Listener& listener, int drain_fd) override;
};

std::unique_ptr<core::Backend> make_uring_backend();

// Empty when this host can run io_uring; otherwise one line saying why not.
std::string uring_unavailable();

}  // namespace gearbox::backends
