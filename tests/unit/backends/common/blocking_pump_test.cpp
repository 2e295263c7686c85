// The blocking pump against scripted fake connections over socketpairs and a loopback
// upstream: every event answers a wanted slot, partial writes, EOF, errors, deadlines (fake
// clock), drain, upstream connect / reuse / release.
#include "backends/common/blocking_pump.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <string>
#include <thread>
#include <vector>

#include "backends/common/socket.hpp"
#include "backends/common/upstream_pool.hpp"

namespace gearbox::backends {
namespace {

using namespace std::chrono_literals;

// Records events and fails the test on any event for a slot the last wants() did not ask for.
class FakeBase {
 public:
  virtual ~FakeBase() = default;

  core::Wants wants() const {
    last_ = compute();
    ++wants_calls_;
    return last_;
  }

  void on_client_read(std::size_t n, core::TimePoint now) {
    EXPECT_FALSE(last_.client_read.empty()) << "client read not wanted";
    EXPECT_LE(n, last_.client_read.size());
    events.push_back(n == 0 ? "client_eof" : "client_read");
    client_read(n, now);
  }
  void on_client_written(std::size_t n, core::TimePoint now) {
    EXPECT_FALSE(last_.client_write.empty()) << "client write not wanted";
    std::size_t total = 0;
    for (const iovec& v : last_.client_write) {
      total += v.iov_len;
    }
    EXPECT_LE(n, total);
    if (n < total) {
      ++partial_writes;
    }
    events.push_back("client_written");
    client_written(n, now);
  }
  void on_client_error(int err, core::TimePoint now) {
    EXPECT_TRUE(!last_.client_read.empty() || !last_.client_write.empty());
    events.push_back("client_error");
    client_error = err;
    error(now);
  }
  void on_upstream_connected(bool reused, core::TimePoint now) {
    EXPECT_NE(last_.upstream_connect, nullptr) << "connect not wanted";
    EXPECT_TRUE(!reused || last_.upstream_may_reuse);
    events.push_back(reused ? "upstream_reused" : "upstream_connected");
    upstream_connected(now);
  }
  void on_upstream_connect_failed(int err, core::TimePoint now) {
    EXPECT_NE(last_.upstream_connect, nullptr) << "connect not wanted";
    events.push_back("upstream_connect_failed");
    upstream_error = err;
    error(now);
  }
  void on_upstream_read(std::size_t n, core::TimePoint now) {
    EXPECT_FALSE(last_.upstream_read.empty()) << "upstream read not wanted";
    events.push_back(n == 0 ? "upstream_eof" : "upstream_read");
    upstream_read(n, now);
  }
  void on_upstream_written(std::size_t n, core::TimePoint now) {
    EXPECT_FALSE(last_.upstream_write.empty()) << "upstream write not wanted";
    events.push_back("upstream_written");
    upstream_written(n, now);
  }
  void on_upstream_error(int err, core::TimePoint now) {
    EXPECT_TRUE(!last_.upstream_read.empty() || !last_.upstream_write.empty());
    events.push_back("upstream_error");
    upstream_error = err;
    error(now);
  }
  void on_upstream_released(core::TimePoint now) {
    EXPECT_NE(last_.release_upstream, core::Release::kNone) << "release not wanted";
    events.push_back("upstream_released");
    upstream_released(now);
  }
  void on_deadline(core::TimePoint now) {
    EXPECT_GE(now, last_.deadline) << "deadline reported early";
    events.push_back("deadline");
    deadline(now);
  }
  void on_drain(core::TimePoint now) {
    events.push_back("drain");
    drain(now);
  }

  std::vector<std::string> events;
  int partial_writes = 0;
  int client_error = 0;
  int upstream_error = 0;

 protected:
  virtual core::Wants compute() const = 0;
  virtual void client_read(std::size_t, core::TimePoint) { ADD_FAILURE() << "client_read"; }
  virtual void client_written(std::size_t, core::TimePoint) { ADD_FAILURE() << "written"; }
  virtual void upstream_connected(core::TimePoint) { ADD_FAILURE() << "upstream_connected"; }
  virtual void upstream_read(std::size_t, core::TimePoint) { ADD_FAILURE() << "up read"; }
  virtual void upstream_written(std::size_t, core::TimePoint) { ADD_FAILURE() << "up written"; }
  virtual void upstream_released(core::TimePoint) { ADD_FAILURE() << "released"; }
  virtual void error(core::TimePoint) { ADD_FAILURE() << "error"; }
  virtual void deadline(core::TimePoint) { ADD_FAILURE() << "deadline"; }
  virtual void drain(core::TimePoint) { ADD_FAILURE() << "drain"; }

 private:
  mutable core::Wants last_;
  mutable int wants_calls_ = 0;
};

// Echoes the client's bytes back, one buffer at a time (read only after the write finished),
// then shuts down writing and is done on EOF.
class EchoFake : public FakeBase {
 public:
  explicit EchoFake(std::size_t buffer, bool stop_on_drain = true)
      : buf_(buffer), stop_on_drain_(stop_on_drain) {}
  bool done = false;

 protected:
  core::Wants compute() const override {
    core::Wants w;
    if (done) {
      w.done = true;
      w.close_mode = abort_ ? core::CloseMode::kAbort : core::CloseMode::kGraceful;
    } else if (sent_ < filled_) {
      iov_[0] = iovec{const_cast<char*>(buf_.data()) + sent_, (filled_ - sent_) / 2};
      iov_[1] = iovec{const_cast<char*>(buf_.data()) + sent_ + iov_[0].iov_len,
                      filled_ - sent_ - iov_[0].iov_len};
      w.client_write = std::span<const iovec>(iov_, iov_[0].iov_len == 0 ? 0 : 2);
      if (iov_[0].iov_len == 0) {
        w.client_write = std::span<const iovec>(iov_ + 1, 1);
      }
    } else if (eof_) {
      w.client_shutdown_write = true;
      w.done = true;
    } else {
      w.client_read = std::span<char>(const_cast<char*>(buf_.data()), buf_.size());
    }
    return w;
  }
  void client_read(std::size_t n, core::TimePoint) override {
    if (n == 0) {
      eof_ = true;
    }
    filled_ = n;
    sent_ = 0;
  }
  void client_written(std::size_t n, core::TimePoint) override {
    sent_ += n;
    if (sent_ == filled_) {
      sent_ = filled_ = 0;
    }
  }
  void error(core::TimePoint) override {
    done = true;
    abort_ = true;
  }
  void drain(core::TimePoint) override {
    if (stop_on_drain_ && filled_ == 0) {
      done = true;
    }
  }

 private:
  std::vector<char> buf_;
  std::size_t filled_ = 0;
  std::size_t sent_ = 0;
  bool stop_on_drain_;
  bool eof_ = false;
  bool abort_ = false;
  mutable iovec iov_[2] = {};
};

struct SocketPair {
  SocketPair() {
    int fds[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds), 0);
    server = fds[0];
    peer = fds[1];
    int small = 4096;
    ::setsockopt(server, SOL_SOCKET, SO_SNDBUF, &small, sizeof small);
    ::setsockopt(peer, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  }
  ~SocketPair() {
    if (peer >= 0) {
      ::close(peer);
    }
  }
  int server = -1;  // handed to the pump, which closes it
  int peer = -1;
};

void set_blocking(int fd) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) & ~O_NONBLOCK);
}

std::string pattern(std::size_t n) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i) {
    s[i] = static_cast<char>('a' + (i * 7 + i / 251) % 26);
  }
  return s;
}

// Regression (issue 10): after a read shorter than the span, the socket is empty, so the next
// pass must not spend a read(2) on EAGAIN; it waits for readiness first.
TEST(BlockingPump, ShortReadWaitsForReadinessInsteadOfReadingAgain) {
  SocketPair sp;
  EchoFake fake(1024);
  ASSERT_EQ(::write(sp.peer, "0123456789", 10), 10);
  PumpState st(PumpSetup{sp.server, -1, nullptr, nullptr});
  pump_begin(fake, st);
  EXPECT_TRUE(pump_pass(fake, st, core::Clock::now()));
  EXPECT_EQ(fake.events.front(), "client_read");
  EXPECT_TRUE(st.c_rd_again) << "a short read must mark the client socket drained";
  pump_finish(st);
}

TEST(BlockingPump, EchoesOneMebibyteWithPartialWritesThenEof) {
  SocketPair sp;
  set_blocking(sp.peer);
  const std::string payload = pattern(1 << 20);
  std::thread writer([&] {
    std::size_t off = 0;
    while (off < payload.size()) {
      ssize_t n = ::write(sp.peer, payload.data() + off, payload.size() - off);
      ASSERT_GT(n, 0);
      off += static_cast<std::size_t>(n);
    }
    ::shutdown(sp.peer, SHUT_WR);
  });
  EchoFake conn(64 * 1024);
  PollIo io;
  std::thread server([&] { pump(conn, io, PumpSetup{sp.server, -1, nullptr, nullptr}); });
  std::string got;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(sp.peer, buf, sizeof buf);
    ASSERT_GE(n, 0);
    if (n == 0) {
      break;
    }
    got.append(buf, static_cast<std::size_t>(n));
  }
  writer.join();
  server.join();
  EXPECT_EQ(got.size(), payload.size());
  EXPECT_TRUE(got == payload);
  EXPECT_GT(conn.partial_writes, 0) << "the 4 KiB send buffer should force partial writes";
  EXPECT_EQ(conn.events.back(), "client_eof");
}

TEST(BlockingPump, WriteToVanishedPeerIsClientErrorNotSigpipe) {
  SocketPair sp;
  ::close(sp.peer);
  sp.peer = -1;
  class Writer : public FakeBase {
   protected:
    core::Wants compute() const override {
      core::Wants w;
      if (failed_) {
        w.done = true;
        w.close_mode = core::CloseMode::kAbort;
        return w;
      }
      iov_ = iovec{const_cast<char*>(data_), sizeof data_};
      w.client_write = std::span<const iovec>(&iov_, 1);
      return w;
    }
    void error(core::TimePoint) override { failed_ = true; }

   private:
    bool failed_ = false;
    char data_[16] = "hello";
    mutable iovec iov_{};
  } conn;
  PollIo io;
  pump(conn, io, PumpSetup{sp.server, -1, nullptr, nullptr});
  ASSERT_EQ(conn.events.size(), 1u);
  EXPECT_EQ(conn.events[0], "client_error");
  EXPECT_EQ(conn.client_error, EPIPE);
}

// A clock that jumps to the deadline when nothing is ready: deadlines without sleeping.
struct FakeClockIo {
  core::TimePoint t = core::TimePoint{} + 1000s;
  int waits = 0;
  core::TimePoint now() const { return t; }
  int wait(pollfd* fds, nfds_t n, core::TimePoint deadline) {
    ++waits;
    int r = ::poll(fds, n, 0);
    if (r == 0 && deadline != core::kNever) {
      t = deadline;
    }
    return r;
  }
};

class IdleReader : public FakeBase {
 public:
  explicit IdleReader(core::TimePoint deadline) : deadline_(deadline) {}
  bool timed_out = false;
  bool drained = false;

 protected:
  core::Wants compute() const override {
    core::Wants w;
    if (timed_out || drained) {
      w.done = true;
      w.close_mode = core::CloseMode::kAbort;
      return w;
    }
    w.client_read = std::span<char>(const_cast<char*>(buf_), sizeof buf_);
    w.deadline = deadline_;
    return w;
  }
  void deadline(core::TimePoint) override { timed_out = true; }
  void drain(core::TimePoint) override { drained = true; }

 private:
  core::TimePoint deadline_;
  char buf_[64] = {};
};

TEST(BlockingPump, DeadlineIsReportedOnceReachedAndNotBefore) {
  SocketPair sp;
  FakeClockIo io;
  IdleReader conn(io.t + 5s);
  pump(conn, io, PumpSetup{sp.server, -1, nullptr, nullptr});
  ASSERT_EQ(conn.events, std::vector<std::string>{"deadline"});
  EXPECT_EQ(io.t, core::TimePoint{} + 1005s);
  EXPECT_EQ(io.waits, 1);
  char c;
  EXPECT_EQ(::read(sp.peer, &c, 1), 0) << "the pump closed the client";
}

TEST(BlockingPump, DrainFdReadableCallsOnDrainOnceAndMarksContext) {
  SocketPair sp;
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  ASSERT_EQ(::write(pipe_fds[1], "x", 1), 1);
  core::Context ctx;
  PollIo io;
  IdleReader conn(core::kNever);
  pump(conn, io, PumpSetup{sp.server, pipe_fds[0], &ctx, nullptr});
  EXPECT_EQ(conn.events, std::vector<std::string>{"drain"});
  EXPECT_TRUE(ctx.draining);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

TEST(BlockingPump, DrainDuringTransferIsReportedOnlyOnce) {
  SocketPair sp;
  set_blocking(sp.peer);
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  ASSERT_EQ(::write(pipe_fds[1], "x", 1), 1);
  const std::string payload = pattern(200'000);
  std::thread writer([&] {
    ASSERT_EQ(::send(sp.peer, payload.data(), payload.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(payload.size()));
    ::shutdown(sp.peer, SHUT_WR);
  });
  EchoFake conn(1000, /*stop_on_drain=*/false);
  PollIo io;
  core::Context ctx;
  std::thread server([&] { pump(conn, io, PumpSetup{sp.server, pipe_fds[0], &ctx, nullptr}); });
  std::string got;
  char buf[4096];
  ssize_t n;
  while ((n = ::read(sp.peer, buf, sizeof buf)) > 0) {
    got.append(buf, static_cast<std::size_t>(n));
  }
  writer.join();
  server.join();
  EXPECT_TRUE(got == payload);
  int drains = 0;
  for (const std::string& e : conn.events) {
    drains += e == "drain" ? 1 : 0;
  }
  EXPECT_EQ(drains, 1);
  ::close(pipe_fds[0]);
  ::close(pipe_fds[1]);
}

// A one-request proxy: connect (reuse allowed), send "ping", read "pong", release for reuse,
// write "pong" to the client, done.
class PingProxy : public FakeBase {
 public:
  explicit PingProxy(const core::Endpoint& ep) : ep_(ep) {}
  enum class Step { kConnect, kSend, kRecv, kRelease, kAnswer, kDone } step = Step::kConnect;

 protected:
  core::Wants compute() const override {
    core::Wants w;
    switch (step) {
      case Step::kConnect:
        w.upstream_connect = &ep_;
        w.upstream_may_reuse = true;
        break;
      case Step::kSend:
        iov_ = iovec{const_cast<char*>("ping") + sent_, 4 - sent_};
        w.upstream_write = std::span<const iovec>(&iov_, 1);
        break;
      case Step::kRecv:
        w.upstream_read = std::span<char>(buf_ + got_, 4 - got_);
        break;
      case Step::kRelease:
        w.release_upstream = error_ ? core::Release::kDiscard : core::Release::kReuse;
        break;
      case Step::kAnswer:
        iov_ = iovec{buf_, 4};
        w.client_write = std::span<const iovec>(&iov_, 1);
        break;
      case Step::kDone:
        w.done = true;
        break;
    }
    return w;
  }
  void upstream_connected(core::TimePoint) override { step = Step::kSend; }
  void upstream_written(std::size_t n, core::TimePoint) override {
    sent_ += n;
    if (sent_ == 4) {
      step = Step::kRecv;
    }
  }
  void upstream_read(std::size_t n, core::TimePoint) override {
    got_ += n;
    if (n == 0) {
      error_ = true;
      step = Step::kRelease;
    } else if (got_ == 4) {
      step = Step::kRelease;
    }
  }
  void upstream_released(core::TimePoint) override { step = error_ ? Step::kDone : Step::kAnswer; }
  void client_written(std::size_t, core::TimePoint) override { step = Step::kDone; }
  void error(core::TimePoint) override {
    error_ = true;
    step = step == Step::kConnect ? Step::kDone : Step::kRelease;
  }

 private:
  const core::Endpoint& ep_;
  std::size_t sent_ = 0;
  std::size_t got_ = 0;
  bool error_ = false;
  mutable char buf_[4] = {};
  mutable iovec iov_{};
};

// Accepts connections and answers every "ping" with "pong" until the listener is closed.
class PongServer {
 public:
  PongServer() {
    std::string error;
    auto listener = open_listener("127.0.0.1:0", 16, false, &error);
    EXPECT_TRUE(listener.has_value()) << error;
    fd_ = listener->fd;
    EXPECT_TRUE(parse_endpoint(listener->address, &endpoint, &error)) << error;
    thread_ = std::thread([this] { serve(); });
  }
  ~PongServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  core::Endpoint endpoint;
  std::atomic<int> accepted{0};

 private:
  void serve() {
    std::vector<int> conns;
    while (!stop_) {
      std::vector<pollfd> fds{{fd_, POLLIN, 0}};
      for (int c : conns) {
        fds.push_back({c, POLLIN, 0});
      }
      ::poll(fds.data(), fds.size(), 10);
      Accepted a = accept_client(fd_);
      if (a.fd >= 0) {
        ++accepted;
        conns.push_back(a.fd);
      }
      for (int c : conns) {
        char buf[4];
        if (::recv(c, buf, 4, MSG_DONTWAIT) == 4) {
          ::send(c, "pong", 4, MSG_NOSIGNAL);
        }
      }
    }
    for (int c : conns) {
      ::close(c);
    }
  }
  int fd_ = -1;
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

std::string drain_peer(int fd) {
  std::string got;
  char buf[64];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0) {
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

TEST(BlockingPump, UpstreamExchangeThenReleasedConnectionIsReused) {
  PongServer upstream;
  UpstreamPool pool(4, 60s);
  PollIo io;
  for (int round = 0; round < 2; ++round) {
    SocketPair sp;
    set_blocking(sp.peer);
    PingProxy conn(upstream.endpoint);
    pump(conn, io, PumpSetup{sp.server, -1, nullptr, &pool});
    EXPECT_EQ(drain_peer(sp.peer), "pong");
    EXPECT_EQ(conn.events.front(), round == 0 ? "upstream_connected" : "upstream_reused");
    EXPECT_EQ(pool.idle_count(upstream.endpoint), 1u);
  }
  EXPECT_EQ(upstream.accepted.load(), 1);
}

TEST(BlockingPump, ConnectRefusedIsConnectFailed) {
  core::Endpoint closed;
  {
    PongServer gone;  // a port that was just free: nothing listens once `gone` is destroyed
    closed = gone.endpoint;
  }
  SocketPair sp;
  PingProxy conn(closed);
  PollIo io;
  pump(conn, io, PumpSetup{sp.server, -1, nullptr, nullptr});
  EXPECT_EQ(conn.events, std::vector<std::string>{"upstream_connect_failed"});
  EXPECT_EQ(conn.upstream_error, ECONNREFUSED);
}

}  // namespace
}  // namespace gearbox::backends
