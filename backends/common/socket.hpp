// Socket plumbing shared by the drivers: listeners, accept, non-blocking connect, options.
// Every socket made here is non-blocking and close-on-exec.
#pragma once

#include <sys/socket.h>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "server/backend.hpp"
#include "server/config.hpp"
#include "server/connection.hpp"

namespace gearbox::backends {

// Parses "host:port" / "[v6]:port" with a numeric host ("localhost" means 127.0.0.1, "*" means
// 0.0.0.0). On failure returns false and sets *error to one line.
bool parse_endpoint(std::string_view text, core::Endpoint* out, std::string* error);

// Parses "host:port" / "[v6]:port", binds with SO_REUSEADDR (and SO_REUSEPORT when asked),
// listens with `backlog`, non-blocking. Listener.address is the address as bound (with the
// real port when ":0" was asked). On failure returns nullopt and sets *error to one line.
std::optional<core::Listener> open_listener(const std::string& address, int backlog, bool reuseport,
                                            std::string* error);

// One accept4(SOCK_NONBLOCK | SOCK_CLOEXEC) with TCP_NODELAY set on the new socket.
// fd >= 0: accepted, peer filled in. fd < 0: `err` is the errno: EAGAIN = nothing pending;
// see accept_should_pause() for what the caller must do with the others.
struct Accepted {
  int fd = -1;
  int err = 0;
  sockaddr_storage peer{};
  socklen_t peer_len = 0;
};
Accepted accept_client(int listen_fd);

// Out of descriptors or kernel memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the pending
// connection stays in the backlog and accepting again at once would spin the CPU on the same
// error. The caller stops watching the listener for kAcceptPause (nginx's accept back-off,
// ngx_event_accept.c). Other errors (ECONNABORTED, EPROTO, ...) concern one connection only:
// just accept again.
bool accept_should_pause(int err);
inline constexpr std::chrono::milliseconds kAcceptPause{100};

// "127.0.0.1" / "::1" (no port) and "127.0.0.1:80" / "[::1]:80".
std::string address_text(const sockaddr_storage& addr);
std::string endpoint_text(const sockaddr_storage& addr);

// Starts a non-blocking connect to `ep` (TCP_NODELAY set). Returns the fd and sets *in_progress
// (true: wait for writability, then call connect_result()). Returns -1 with errno on failure.
int connect_nonblocking(const core::Endpoint& ep, bool* in_progress);
// After the socket of an in-progress connect became writable: 0 = connected, else the errno.
int connect_result(int fd);

// Closes with SO_LINGER {1, 0}: the peer gets a reset instead of a FIN (core::CloseMode::kAbort).
void close_abort(int fd);

// Milliseconds to wait from `now` until `until`, for poll(2)/epoll_wait(2): -1 for never,
// rounded up (waking before a deadline costs an idle pass; rounding down would spin).
int wait_ms(core::TimePoint now, core::TimePoint until);

}  // namespace gearbox::backends
