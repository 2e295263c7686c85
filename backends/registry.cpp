// The explicit list of backends main can run, in display order (no self-registering statics:
// static libraries drop them). A backend this host cannot run says why in `unavailable`.
#include <string>
#include <string_view>
#include <vector>

#include "backends/fiber/fiber_backend.hpp"
#include "backends/pool/pool_backend.hpp"
#include "backends/prefork/prefork_backend.hpp"
#include "backends/thread/thread_backend.hpp"
#include "backends/uring/uring_backend.hpp"
#include "server/backend.hpp"

namespace gearbox::core {
namespace {

std::string always_available() {
  return {};
}

}  // namespace

const std::vector<BackendInfo>& backend_registry() {
  static const std::vector<BackendInfo> kBackends = {
      {"prefork", "worker processes, one connection each, forked by a master (Apache prefork)",
       &always_available, &backends::make_prefork_backend},
      {"thread", "one OS thread per connection, blocking I/O", &always_available,
       &backends::make_thread_backend},
      {"pool", "epoll reactor handing ready connections to a fixed worker thread pool",
       &always_available, &backends::make_pool_backend},
      {"uring", "one thread, one io_uring, one C++20 coroutine per connection (--workers loops)",
       &backends::uring_unavailable, &backends::make_uring_backend},
      {"fiber", "Boost.Fiber M:N over --threads OS threads, netpoller, channels (Go's model)",
       &always_available, &backends::make_fiber_backend},
  };
  return kBackends;
}

const BackendInfo* find_backend(std::string_view name) {
  for (const BackendInfo& info : backend_registry()) {
    if (info.name == name) {
      return &info;
    }
  }
  return nullptr;
}

std::string_view default_backend() {
  return backends::uring_unavailable().empty() ? "uring" : "pool";
}

}  // namespace gearbox::core
