// The interface every concurrency backend implements, and the registry that finds one by name.
// The registry's explicit list lives in backends/registry.cpp (main links it).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "server/config.hpp"

namespace gearbox::core {

// A listening socket made by main before the backend starts (the bound port is then known).
struct Listener {
  int fd = -1;
  std::string address;  // as bound, e.g. "127.0.0.1:43121"
};

class Backend {
 public:
  virtual ~Backend() = default;
  // Serves until drain_fd becomes readable (main's SIGTERM/SIGINT handler writes one byte to
  // that pipe and nobody reads it, so it stays readable: every poller can watch it), then
  // stops accepting, lets in-flight requests finish within config.drain_timeout, and returns
  // the process exit status (0 = clean).
  virtual int run(const Config& config, Listener& listener, int drain_fd) = 0;
  // What the model is doing now, in its own terms, as one JSON object (the admin /status page):
  // e.g. prefork's workers and their states, pool's queue. Called from the admin thread while
  // run() serves: read only atomics. The default says nothing beyond the shared counters.
  virtual std::string status_json() const { return "{}"; }
  // SIGHUP, from main's reload thread while run() serves, with `next` already validated by main
  // (same listen address and backend). New connections get `next`; connections in flight finish
  // under the old configuration and then close. Returns an error text when the backend cannot
  // build from `next` (then nothing changed), else "".
  virtual std::string reload(const Config& next) = 0;
  // The configuration in force (the admin endpoint renders its upstreams), or null before run()
  // put one in force. Any thread.
  virtual std::shared_ptr<const Config> config_in_force() const = 0;
};

struct BackendInfo {
  std::string_view name;
  std::string_view model;  // one line for --help
  // Empty when this host can run it; otherwise why not (e.g. "io_uring is not permitted").
  std::string (*unavailable)();
  std::unique_ptr<Backend> (*make)();
};

// The explicit list of backends, in display order. Defined in backends/registry.cpp.
const std::vector<BackendInfo>& backend_registry();
const BackendInfo* find_backend(std::string_view name);
// The backend used when none is named: `uring` where this host can run it, else `pool`.
std::string_view default_backend();

}  // namespace gearbox::core
