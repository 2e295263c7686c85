// The in-process scripted upstream: accept thread, per-connection handler threads, counters.
#include "tests/support/fake_upstream.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

namespace gearbox::test {
namespace {

using Clock = std::chrono::steady_clock;

// Content-Length value of a request head, 0 when absent (test heads are well formed).
std::size_t content_length(std::string_view head) {
  std::string lower(head);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  std::size_t at = lower.find("\r\ncontent-length:");
  if (at == std::string::npos) {
    return 0;
  }
  return static_cast<std::size_t>(std::strtoull(lower.c_str() + at + 17, nullptr, 10));
}

}  // namespace

bool FakeConnection::fill(Clock::time_point deadline) {
  if (fd_ < 0) {
    return false;
  }
  char buf[65536];
  while (!owner_.stopping()) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return false;
    }
    pollfd p{fd_, POLLIN, 0};
    int n = ::poll(&p, 1, static_cast<int>(std::min<long>(left.count(), 100)));
    if (n < 0 && errno != EINTR) {
      return false;
    }
    if (n <= 0) {
      continue;
    }
    ssize_t got = ::recv(fd_, buf, sizeof buf, 0);
    if (got > 0) {
      buffer_.append(buf, static_cast<std::size_t>(got));
      return true;
    }
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) {
      continue;
    }
    return false;
  }
  return false;
}

std::optional<std::string> FakeConnection::read_head(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    std::size_t end = buffer_.find("\r\n\r\n");
    if (end != std::string::npos) {
      std::string head = buffer_.substr(0, end + 4);
      buffer_.erase(0, end + 4);
      owner_.record_request(head);
      return head;
    }
    if (!fill(deadline)) {
      return std::nullopt;
    }
  }
}

std::string FakeConnection::read_exact(std::size_t n, std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (buffer_.size() < n && fill(deadline)) {
  }
  std::string out = buffer_.substr(0, std::min(n, buffer_.size()));
  buffer_.erase(0, out.size());
  return out;
}

std::string FakeConnection::read_some(std::chrono::milliseconds timeout) {
  if (buffer_.empty()) {
    fill(Clock::now() + timeout);
  }
  std::string out;
  out.swap(buffer_);
  return out;
}

void FakeConnection::wait_for_close(std::chrono::milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  while (fill(deadline)) {
    buffer_.clear();
  }
}

bool FakeConnection::send(std::string_view bytes) {
  while (!bytes.empty() && fd_ >= 0) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
  return bytes.empty();
}

void FakeConnection::close(bool reset) {
  if (fd_ < 0) {
    return;
  }
  std::lock_guard lock(owner_.mutex_);
  std::erase(owner_.open_fds_, fd_);
  if (reset) {
    linger l{1, 0};
    ::setsockopt(fd_, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  ::close(fd_);
  fd_ = -1;
}

FakeUpstream::~FakeUpstream() {
  stop();
}

bool FakeUpstream::start(Handler handler) {
  handler_ = std::move(handler);
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) {
    ADD_FAILURE() << "socket: " << std::strerror(errno);
    return false;
  }
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listen_fd_, 128) != 0 ||
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ADD_FAILURE() << "fake upstream listen: " << std::strerror(errno);
    ::close(listen_fd_);
    listen_fd_ = -1;
    return false;
  }
  port_ = ntohs(addr.sin_port);
  acceptor_ = std::thread([this] { accept_loop(); });
  return true;
}

void FakeUpstream::accept_loop() {
  while (!stopping_.load()) {
    int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) {
        continue;
      }
      return;
    }
    std::lock_guard lock(mutex_);
    if (stopping_.load()) {
      ::close(fd);
      return;
    }
    connections_.fetch_add(1);
    open_fds_.push_back(fd);
    threads_.emplace_back([this, fd] {
      FakeConnection conn(*this, fd);
      handler_(conn);
      conn.close();
    });
  }
}

void FakeUpstream::stop() {
  if (listen_fd_ < 0) {
    return;
  }
  stopping_.store(true);
  ::shutdown(listen_fd_, SHUT_RDWR);
  if (acceptor_.joinable()) {
    acceptor_.join();
  }
  std::vector<std::thread> threads;
  {
    std::lock_guard lock(mutex_);
    for (int fd : open_fds_) {
      ::shutdown(fd, SHUT_RDWR);
    }
    threads.swap(threads_);
  }
  for (auto& t : threads) {
    t.join();
  }
  ::close(listen_fd_);
  listen_fd_ = -1;
}

void FakeUpstream::record_request(std::string head) {
  std::lock_guard lock(mutex_);
  heads_.push_back(std::move(head));
  requests_.fetch_add(1);
}

std::vector<std::string> FakeUpstream::request_lines() const {
  std::lock_guard lock(mutex_);
  std::vector<std::string> lines;
  for (const std::string& head : heads_) {
    lines.push_back(head.substr(0, head.find("\r\n")));
  }
  return lines;
}

std::vector<std::string> FakeUpstream::request_heads() const {
  std::lock_guard lock(mutex_);
  return heads_;
}

FakeUpstream::Handler fixed_response_handler(std::string response, int max_requests) {
  return [response = std::move(response), max_requests](FakeConnection& conn) {
    for (int served = 0; max_requests == 0 || served < max_requests; ++served) {
      auto head = conn.read_head();
      if (!head) {
        return;
      }
      std::size_t length = content_length(*head);
      if (length > 0) {
        conn.read_exact(length);
      }
      if (!conn.send(response)) {
        return;
      }
    }
  };
}

}  // namespace gearbox::test
