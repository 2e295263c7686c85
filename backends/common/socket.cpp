// Socket plumbing shared by the drivers: address parsing, listeners, accept, connect, close.
#include "backends/common/socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>
#include <algorithm>
#include <climits>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace gearbox::backends {
namespace {

void set_nodelay(int fd) {
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

std::string errno_text(int err) {
  return std::strerror(err);
}

}  // namespace

bool parse_endpoint(std::string_view text, core::Endpoint* out, std::string* error) {
  std::string_view host;
  std::string_view port;
  bool bracketed = false;
  if (!text.empty() && text.front() == '[') {
    std::size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      *error = "bad address '" + std::string(text) + "': expected [v6]:port";
      return false;
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
    bracketed = true;
  } else {
    std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
      *error = "bad address '" + std::string(text) + "': expected host:port";
      return false;
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    *error = "bad port in address '" + std::string(text) + "'";
    return false;
  }
  std::string host_text(host);
  if (!bracketed && (host_text == "localhost" || host_text.empty())) {
    host_text = host_text.empty() ? "0.0.0.0" : "127.0.0.1";
  }
  if (!bracketed && host_text == "*") {
    host_text = "0.0.0.0";
  }
  core::Endpoint ep;
  if (bracketed) {
    auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ep.addr);
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons(static_cast<std::uint16_t>(value));
    if (::inet_pton(AF_INET6, host_text.c_str(), &sin6->sin6_addr) != 1) {
      *error = "bad IPv6 address in '" + std::string(text) + "'";
      return false;
    }
    ep.len = sizeof(sockaddr_in6);
  } else {
    auto* sin = reinterpret_cast<sockaddr_in*>(&ep.addr);
    sin->sin_family = AF_INET;
    sin->sin_port = htons(static_cast<std::uint16_t>(value));
    if (::inet_pton(AF_INET, host_text.c_str(), &sin->sin_addr) != 1) {
      *error = "bad IPv4 address in '" + std::string(text) + "' (numeric addresses only)";
      return false;
    }
    ep.len = sizeof(sockaddr_in);
  }
  ep.text = endpoint_text(ep.addr);
  *out = std::move(ep);
  return true;
}

std::optional<core::Listener> open_listener(const std::string& address, int backlog, bool reuseport,
                                            std::string* error) {
  core::Endpoint ep;
  if (!parse_endpoint(address, &ep, error)) {
    return std::nullopt;
  }
  int family = ep.addr.ss_family;
  int fd = ::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    *error = "socket(): " + errno_text(errno);
    return std::nullopt;
  }
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (reuseport && ::setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    *error = "SO_REUSEPORT: " + errno_text(errno);
    ::close(fd);
    return std::nullopt;
  }
  if (family == AF_INET6) {
    ::setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) != 0) {
    *error = "bind " + address + ": " + errno_text(errno);
    ::close(fd);
    return std::nullopt;
  }
  if (::listen(fd, backlog) != 0) {
    *error = "listen " + address + ": " + errno_text(errno);
    ::close(fd);
    return std::nullopt;
  }
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
    *error = "getsockname: " + errno_text(errno);
    ::close(fd);
    return std::nullopt;
  }
  core::Listener listener;
  listener.fd = fd;
  listener.address = endpoint_text(bound);
  return listener;
}

Accepted accept_client(int listen_fd) {
  Accepted a;
  a.peer_len = sizeof a.peer;
  for (;;) {
    a.fd = ::accept4(listen_fd, reinterpret_cast<sockaddr*>(&a.peer), &a.peer_len,
                     SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (a.fd >= 0) {
      set_nodelay(a.fd);
      return a;
    }
    if (errno != EINTR) {
      a.err = errno == EWOULDBLOCK ? EAGAIN : errno;
      return a;
    }
  }
}

bool accept_should_pause(int err) {
  return err == EMFILE || err == ENFILE || err == ENOBUFS || err == ENOMEM;
}

std::string address_text(const sockaddr_storage& addr) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(addr).sin_addr, buf, sizeof buf);
  } else if (addr.ss_family == AF_INET6) {
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(addr).sin6_addr, buf, sizeof buf);
  }
  return buf;
}

std::string endpoint_text(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET) {
    return address_text(addr) + ":" +
           std::to_string(ntohs(reinterpret_cast<const sockaddr_in&>(addr).sin_port));
  }
  if (addr.ss_family == AF_INET6) {
    std::string text = "[";
    text.append(address_text(addr));
    text.append("]:");
    text.append(std::to_string(ntohs(reinterpret_cast<const sockaddr_in6&>(addr).sin6_port)));
    return text;
  }
  return "?";
}

int connect_nonblocking(const core::Endpoint& ep, bool* in_progress) {
  *in_progress = false;
  int fd = ::socket(ep.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    return -1;
  }
  set_nodelay(fd);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&ep.addr), ep.len) == 0) {
    return fd;
  }
  // An interrupted connect goes on in the background, like EINPROGRESS (connect(2)).
  if (errno == EINPROGRESS || errno == EINTR) {
    *in_progress = true;
    return fd;
  }
  int err = errno;
  ::close(fd);
  errno = err;
  return -1;
}

int connect_result(int fd) {
  int err = 0;
  socklen_t len = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0) {
    return errno;
  }
  return err;
}

void close_abort(int fd) {
  linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  ::close(fd);
}

int wait_ms(core::TimePoint now, core::TimePoint until) {
  if (until == core::kNever) {
    return -1;
  }
  if (until <= now) {
    return 0;
  }
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(until - now).count() + 1;
  return static_cast<int>(std::min<long long>(ms, INT_MAX));
}

}  // namespace gearbox::backends
