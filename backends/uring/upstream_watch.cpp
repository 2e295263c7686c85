// Idle pooled upstream connections watched on the ring (see upstream_watch.hpp).
#include "backends/uring/upstream_watch.hpp"

#include <unistd.h>

#include <cassert>
#include <cerrno>

namespace gearbox::backends::uring {
namespace {

// A receive's completion may carry a buffer of the provided-buffer ring: back it goes.
void give_back_buffer(Ring& ring, unsigned flags) {
  if ((flags & IORING_CQE_F_BUFFER) != 0) {
    ring.give_back(flags >> IORING_CQE_BUFFER_SHIFT);
  }
}

}  // namespace

// The loop ends only once in_flight() is 0: no entry is resolved after this.
UpstreamWatch::~UpstreamWatch() = default;

UpstreamWatch::Entry& UpstreamWatch::entry(int fd) {
  const auto i = static_cast<std::size_t>(fd);
  if (i >= entries_.size()) {
    entries_.resize(i + 1);
  }
  if (entries_[i] == nullptr) {
    entries_[i] = std::make_unique<Entry>();
    entries_[i]->owner = this;
    entries_[i]->fd = fd;
  }
  return *entries_[i];
}

void UpstreamWatch::watch(int fd) {
  Entry& e = entry(fd);
  // A connection is pooled once its exchange is over, so its last receive has completed.
  assert(!e.in_flight);
  if (!ring_.has_buffers() || e.in_flight) {
    e.state = State::kUnwatched;
    return;
  }
  io_uring_sqe* sqe = ring_.sqe_for(&e);
  io_uring_prep_recv(sqe, fd, nullptr, Ring::kBufferSize, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = Ring::kBufferGroup;
  if (ring_.features().recv_poll_first) {
    sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;  // nothing is expected: wait for readiness first
  }
  e.in_flight = true;
  ++in_flight_;
  e.state = State::kArmed;
}

bool UpstreamWatch::alive(int fd) {
  Entry& e = entry(fd);
  switch (e.state) {
    case State::kArmed:
      return true;
    case State::kUnwatched:
      return idle_socket_alive(fd);
    default:
      return false;
  }
}

void UpstreamWatch::discard(int fd) {
  Entry& e = entry(fd);
  if (e.in_flight) {
    // The armed receive holds the socket: cancelled first, closed on its completion.
    prep_cancel(ring_, &e);
    e.state = State::kDiscarding;
    return;
  }
  e.state = State::kNone;
  ::close(fd);
}

bool UpstreamWatch::adopt(int fd, Resolver* reader) {
  Entry& e = entry(fd);
  if (e.state == State::kArmed && e.in_flight) {
    e.state = State::kAdopted;
    e.reader = reader;
    return true;
  }
  e.state = State::kNone;
  return false;
}

void UpstreamWatch::cancel(int fd) {
  Entry& e = entry(fd);
  if (e.state == State::kAdopted && e.in_flight) {
    prep_cancel(ring_, &e);
  }
}

void UpstreamWatch::Entry::resolve(int res, unsigned flags) {
  in_flight = false;
  --owner->in_flight_;
  switch (state) {
    case State::kAdopted: {
      state = State::kNone;
      Resolver* r = reader;
      reader = nullptr;
      r->resolve(res, flags);  // the taker's first read of its response
      return;
    }
    case State::kArmed:
      // Completed while idle: closed, reset or bytes nobody asked for. Dead, unless the buffer
      // ring was merely empty (ENOBUFS): then nothing is known and alive() asks the socket.
      give_back_buffer(owner->ring_, flags);
      state = res == -ENOBUFS ? State::kUnwatched : State::kDead;
      return;
    case State::kDiscarding:
      give_back_buffer(owner->ring_, flags);
      state = State::kNone;
      ::close(fd);
      return;
    default:
      give_back_buffer(owner->ring_, flags);
      return;
  }
}

}  // namespace gearbox::backends::uring
