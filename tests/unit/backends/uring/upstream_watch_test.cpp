// UpstreamWatch on a real ring, under ASan in `make test`: an idle pooled connection's armed
// receive tells a close, a reset and bytes sent unasked from a live connection without a
// syscall; a taker adopts the armed receive (its completion, buffer and bytes); a connection
// let go while armed is closed only once its cancelled receive completed.
#include "backends/uring/upstream_watch.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>

#include "backends/uring/ring.hpp"

namespace gearbox::backends::uring {
namespace {

using namespace std::chrono_literals;

bool is_open(int fd) {
  return ::fcntl(fd, F_GETFD) != -1;
}

struct Reader final : Resolver {
  int calls = 0;
  int res = 0;
  unsigned flags = 0;
  void resolve(int r, unsigned f) override {
    ++calls;
    res = r;
    flags = f;
  }
};

class UpstreamWatchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = io_uring_unavailable(); !why.empty()) {
      GTEST_SKIP() << "io_uring unavailable here: " << why;
    }
    ASSERT_EQ(ring_.init(64, false), 0);
    if (!ring_.has_buffers()) {
      GTEST_SKIP() << "no provided-buffer ring: idle connections are not watched here";
    }
    int fds[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    pooled_ = fds[0];
    upstream_ = fds[1];
  }
  void TearDown() override {
    if (upstream_ >= 0) {
      ::close(upstream_);
    }
  }
  // One loop turn: submits what was prepared and resolves what completes within `wait`.
  void turn(std::chrono::milliseconds wait = 200ms) {
    ring_.submit_and_wait(core::Clock::now() + wait);
  }

  Ring ring_;
  int pooled_ = -1;
  int upstream_ = -1;
};

TEST_F(UpstreamWatchTest, QuietConnectionStaysAliveAndIsClosedOnceItsReceiveIsCancelled) {
  UpstreamWatch watch(ring_);
  watch.watch(pooled_);
  turn(20ms);
  EXPECT_TRUE(watch.alive(pooled_));
  EXPECT_EQ(watch.in_flight(), 1u);
  watch.discard(pooled_);
  EXPECT_TRUE(is_open(pooled_)) << "closed while the kernel still held a receive on it";
  for (int i = 0; i < 10 && watch.in_flight() > 0; ++i) {
    turn();
  }
  EXPECT_EQ(watch.in_flight(), 0u);
  EXPECT_FALSE(is_open(pooled_));
  EXPECT_EQ(ring_.outstanding(), 0u);
}

TEST_F(UpstreamWatchTest, BytesSentUnaskedMakeItDead) {
  UpstreamWatch watch(ring_);
  watch.watch(pooled_);
  turn(20ms);
  ASSERT_EQ(::write(upstream_, "HTTP/1.1 408", 12), 12);
  turn();
  EXPECT_EQ(watch.in_flight(), 0u);
  EXPECT_FALSE(watch.alive(pooled_));
  watch.discard(pooled_);
  EXPECT_FALSE(is_open(pooled_));  // nothing in flight: closed at once
}

TEST_F(UpstreamWatchTest, CloseAndResetMakeItDead) {
  UpstreamWatch watch(ring_);
  watch.watch(pooled_);
  turn(20ms);
  ::shutdown(upstream_, SHUT_WR);
  turn();
  EXPECT_FALSE(watch.alive(pooled_));
  watch.discard(pooled_);
  EXPECT_FALSE(is_open(pooled_));
}

TEST_F(UpstreamWatchTest, TakerAdoptsTheArmedReceiveAndGetsTheResponseBytes) {
  UpstreamWatch watch(ring_);
  watch.watch(pooled_);
  turn(20ms);
  ASSERT_TRUE(watch.alive(pooled_));
  Reader reader;
  ASSERT_TRUE(watch.adopt(pooled_, &reader));
  ASSERT_EQ(::write(upstream_, "HTTP/1.1 200 OK\r\n", 17), 17);
  turn();
  ASSERT_EQ(reader.calls, 1);
  ASSERT_EQ(reader.res, 17);
  ASSERT_NE(reader.flags & IORING_CQE_F_BUFFER, 0u);
  const unsigned id = reader.flags >> IORING_CQE_BUFFER_SHIFT;
  EXPECT_EQ(std::string(ring_.buffer(id), 17), "HTTP/1.1 200 OK\r\n");
  ring_.give_back(id);
  EXPECT_EQ(watch.in_flight(), 0u);
  EXPECT_TRUE(is_open(pooled_));  // the taker's now
  ::close(pooled_);
}

TEST_F(UpstreamWatchTest, AdoptedReceiveCancelledReachesTheTakerOnce) {
  UpstreamWatch watch(ring_);
  watch.watch(pooled_);
  turn(20ms);
  Reader reader;
  ASSERT_TRUE(watch.adopt(pooled_, &reader));
  watch.cancel(pooled_);
  for (int i = 0; i < 10 && reader.calls == 0; ++i) {
    turn();
  }
  EXPECT_EQ(reader.calls, 1);
  EXPECT_EQ(reader.res, -ECANCELED);
  EXPECT_EQ(watch.in_flight(), 0u);
  EXPECT_EQ(ring_.outstanding(), 0u);
  ::close(pooled_);
}

TEST_F(UpstreamWatchTest, DeadConnectionIsNotAdopted) {
  UpstreamWatch watch(ring_);
  watch.watch(pooled_);
  turn(20ms);
  ::shutdown(upstream_, SHUT_WR);
  turn();
  Reader reader;
  EXPECT_FALSE(watch.adopt(pooled_, &reader));
  EXPECT_EQ(reader.calls, 0);
  ::close(pooled_);
}

}  // namespace
}  // namespace gearbox::backends::uring
