// The `thread` backend: one OS thread per connection, each running the blocking pump with
// poll(2) (Apache's worker-less mpm, Java's classic servlet containers). Thread count capped.
#pragma once

#include <memory>

#include "backends/common/generation.hpp"

namespace gearbox::backends {

class ThreadBackend final : public ReloadingBackend {
 public:
  int run(const core::Config& config, core::Listener& listener, int drain_fd) override;
};

std::unique_ptr<core::Backend> make_thread_backend();

}  // namespace gearbox::backends
