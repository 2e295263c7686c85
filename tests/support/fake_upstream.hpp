// A scripted upstream inside the test process: a listening socket on 127.0.0.1:0 and one thread
// per accepted connection running a test-supplied handler, with counters of connections and
// request heads, so proxy tests can assert exactly what reached the upstream.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace gearbox::test {

class FakeUpstream;

// One accepted connection, as seen by a handler. Every read gives up at its timeout, at EOF,
// and when the upstream is being stopped.
class FakeConnection {
 public:
  FakeConnection(FakeUpstream& owner, int fd) : owner_(owner), fd_(fd) {}

  // Reads up to and including the CRLF CRLF ending a request head and returns it (body bytes
  // already received stay buffered); counts one request and records its request line.
  // nullopt on EOF, error or timeout before a whole head.
  std::optional<std::string> read_head(
      std::chrono::milliseconds timeout = std::chrono::milliseconds{5000});
  // Reads exactly `n` more bytes (buffered ones first); what arrived on EOF/timeout otherwise.
  std::string read_exact(std::size_t n,
                         std::chrono::milliseconds timeout = std::chrono::milliseconds{5000});
  // Returns buffered bytes, or waits for at least one; "" on EOF, error or timeout.
  std::string read_some(std::chrono::milliseconds timeout = std::chrono::milliseconds{5000});
  // Waits until the peer closes (or the upstream stops, or the timeout); drops bytes received.
  void wait_for_close(std::chrono::milliseconds timeout = std::chrono::milliseconds{10000});
  // Writes every byte; false on error.
  bool send(std::string_view bytes);
  // Closes now (with `reset`, SO_LINGER 0 so the peer gets a RST). Reads then return nothing.
  void close(bool reset = false);
  int fd() const { return fd_; }

 private:
  // Receives more into buffer_; false on EOF, error, timeout or stop.
  bool fill(std::chrono::steady_clock::time_point deadline);

  FakeUpstream& owner_;
  int fd_;
  std::string buffer_;
};

// The listening side. Not copyable; the destructor stops it.
class FakeUpstream {
 public:
  using Handler = std::function<void(FakeConnection&)>;

  FakeUpstream() = default;
  ~FakeUpstream();
  FakeUpstream(const FakeUpstream&) = delete;
  FakeUpstream& operator=(const FakeUpstream&) = delete;

  // Listens on 127.0.0.1:0 and starts accepting; `handler` runs once per connection on its own
  // thread, and the connection is closed when it returns. False (and a GoogleTest failure) if
  // the socket cannot be set up. Call once.
  bool start(Handler handler);
  // Stops accepting, shuts every open connection down (handlers' reads return), joins threads.
  void stop();

  int port() const { return port_; }
  // Connections accepted so far.
  int connections() const { return connections_.load(); }
  // Request heads read by handlers so far (FakeConnection::read_head).
  int requests() const { return requests_.load(); }
  // Request lines of those heads, in the order they were read.
  std::vector<std::string> request_lines() const;
  // The whole heads (up to and including the blank line), in the order they were read.
  std::vector<std::string> request_heads() const;
  bool stopping() const { return stopping_.load(); }

 private:
  friend class FakeConnection;
  void accept_loop();
  void record_request(std::string head);

  int listen_fd_ = -1;
  int port_ = 0;
  Handler handler_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> connections_{0};
  std::atomic<int> requests_{0};
  mutable std::mutex mutex_;
  std::vector<std::string> heads_;
  std::vector<int> open_fds_;
  std::vector<std::thread> threads_;
  std::thread acceptor_;
};

// A handler that answers every request on the connection with `response` (a whole response,
// head and body; request bodies announced by Content-Length are read and dropped) and closes
// after `max_requests` requests (0 = never).
FakeUpstream::Handler fixed_response_handler(std::string response, int max_requests = 0);

}  // namespace gearbox::test
