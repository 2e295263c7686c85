// Socket plumbing shared by the drivers: listeners, accept, non-blocking connect, options.
#pragma once

#include <optional>
#include <string>

#include "server/backend.hpp"
#include "server/config.hpp"

namespace gearbox::backends {

// Parses "host:port" / "[v6]:port", binds with SO_REUSEADDR (and SO_REUSEPORT when asked),
// listens with `backlog`, non-blocking. On failure returns nullopt and sets *error to one line.
std::optional<core::Listener> open_listener(const std::string& address, int backlog,
                                            bool reuseport, std::string* error);

}  // namespace gearbox::backends
