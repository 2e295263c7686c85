// The provided-buffer ring on its own: it starts small, grows after a turn in which receives
// found it empty, and gives the kernel the most recently used buffers first, so that an idle
// server has touched the pages of only as many buffers as it ever needed at once.
#include "backends/uring/ring.hpp"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <set>
#include <vector>

namespace gearbox::backends::uring {
namespace {

using namespace std::chrono_literals;

// A single-shot receive choosing its buffer from the ring; remembers its completion.
struct Receive final : Resolver {
  int res = 1;  // not completed
  int buffer = -1;
  bool done = false;
  void resolve(int r, unsigned flags) override {
    res = r;
    done = true;
    if ((flags & IORING_CQE_F_BUFFER) != 0) {
      buffer = static_cast<int>(flags >> IORING_CQE_BUFFER_SHIFT);
    }
  }
};

class RingFillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (std::string why = io_uring_unavailable(); !why.empty()) {
      GTEST_SKIP() << "io_uring unavailable here: " << why;
    }
    ASSERT_EQ(ring_.init(256, false), 0);
    if (!ring_.has_buffers()) {
      GTEST_SKIP() << "no provided-buffer ring on this kernel";
    }
  }
  void TearDown() override {
    for (int fd : fds_) {
      ::close(fd);
    }
  }

  // n socket pairs, each with one byte waiting, and a receive on each: all complete in one turn.
  std::vector<Receive> receive_all(std::size_t n) {
    std::vector<Receive> recvs(n);
    for (std::size_t i = 0; i < n; ++i) {
      int sv[2];
      EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
      fds_.push_back(sv[0]);
      fds_.push_back(sv[1]);
      EXPECT_EQ(::write(sv[1], "x", 1), 1);
      io_uring_sqe* sqe = ring_.sqe_for(&recvs[i]);
      io_uring_prep_recv(sqe, sv[0], nullptr, Ring::kBufferSize, 0);
      sqe->flags |= IOSQE_BUFFER_SELECT;
      sqe->buf_group = Ring::kBufferGroup;
    }
    auto until = std::chrono::steady_clock::now() + 5s;
    while (ring_.outstanding() > 0 && std::chrono::steady_clock::now() < until) {
      ring_.submit_and_wait(core::Clock::now() + 100ms);
    }
    EXPECT_EQ(ring_.outstanding(), 0u);
    return recvs;
  }

  Ring ring_;
  std::vector<int> fds_;
};

TEST_F(RingFillTest, StartsSmallAndDoublesAfterReceivesFoundItEmpty) {
  EXPECT_EQ(ring_.buffer_fill(), Ring::kInitialFill);
  const std::size_t n = Ring::kInitialFill + 10;
  std::vector<Receive> recvs = receive_all(n);
  std::size_t got = 0;
  std::size_t starved = 0;
  std::set<int> ids;
  for (const Receive& r : recvs) {
    if (r.res == 1) {
      ++got;
      ids.insert(r.buffer);
    } else if (r.res == -ENOBUFS) {
      ++starved;
    } else {
      ADD_FAILURE() << "receive: " << r.res;
    }
  }
  EXPECT_EQ(got, Ring::kInitialFill);  // every buffer the ring held, each once
  EXPECT_EQ(ids.size(), got);
  EXPECT_EQ(starved, n - Ring::kInitialFill);
  for (int id : ids) {
    ring_.give_back(static_cast<unsigned>(id));
  }
  // The next turn tops the ring up to twice as many, enough for all of them now.
  std::vector<Receive> again = receive_all(n);
  EXPECT_EQ(ring_.buffer_fill(), 2 * Ring::kInitialFill);
  for (const Receive& r : again) {
    EXPECT_EQ(r.res, 1);
  }
}

TEST_F(RingFillTest, AQuietLoopKeepsUsingTheSameFewBuffers) {
  // One receive at a time, a hundred times the ring's fill: only the fill's buffers are ever
  // used, and the fill never grows (the kernel's ring is first in, first out).
  std::set<int> ids;
  for (unsigned i = 0; i < 100 * Ring::kInitialFill / 16; ++i) {
    std::vector<Receive> r = receive_all(1);
    ASSERT_EQ(r[0].res, 1);
    ids.insert(r[0].buffer);
    ring_.give_back(static_cast<unsigned>(r[0].buffer));
    for (std::size_t k = 0; k < fds_.size(); ++k) {
      ::close(fds_[k]);
    }
    fds_.clear();
  }
  EXPECT_EQ(ring_.buffer_fill(), Ring::kInitialFill);
  EXPECT_LE(ids.size(), Ring::kInitialFill);
}

}  // namespace
}  // namespace gearbox::backends::uring
