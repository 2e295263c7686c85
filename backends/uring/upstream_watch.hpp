// The loop's idle upstream connections, watched on its ring (nginx and HAProxy watch theirs in
// their event loops): while a connection waits in the pool a receive stays armed on it, with a
// buffer from the provided-buffer ring chosen only when bytes arrive (so none is pinned). If the
// upstream closes it, resets it or sends bytes nobody asked for, that receive completes and the
// connection is known dead, without a recv(MSG_PEEK) per take. The connection that takes a live
// one adopts the armed receive as its first read of the response: no SQE, no failed first try.
#pragma once

#include <cstddef>
#include <memory>
#include <vector>

#include "backends/common/upstream_pool.hpp"
#include "backends/uring/ring.hpp"

namespace gearbox::backends::uring {

class UpstreamWatch final : public UpstreamPool::IdleWatch {
 public:
  explicit UpstreamWatch(Ring& ring) : ring_(ring) {}
  ~UpstreamWatch() override;
  UpstreamWatch(const UpstreamWatch&) = delete;
  UpstreamWatch& operator=(const UpstreamWatch&) = delete;

  // UpstreamPool::IdleWatch. Without a provided-buffer ring (or when it ran dry while the
  // connection was idle) a connection is not watched: alive() asks the socket (MSG_PEEK).
  void watch(int fd) override;
  bool alive(int fd) override;
  void discard(int fd) override;  // cancels the armed receive first: closed on its completion

  // `fd` was just taken from the pool (alive). When its receive is still armed, `reader` gets
  // its completion from now on (res and flags as from the ring, a buffer id with
  // IORING_CQE_F_BUFFER) and true is returned; cancel it with cancel(fd) until then.
  bool adopt(int fd, Resolver* reader);
  void cancel(int fd);

  // Receives not completed yet, adopted ones included (the loop waits for them before it ends).
  std::size_t in_flight() const { return in_flight_; }

 private:
  enum class State : unsigned char {
    kNone,        // not pooled (or not watched)
    kArmed,       // pooled, the receive armed: alive
    kDead,        // pooled, the receive completed: EOF, error or unasked bytes
    kUnwatched,   // pooled, no receive armed: alive() asks the socket
    kAdopted,     // taken: the receive's completion goes to the reader
    kDiscarding,  // let go while armed: closed once the cancelled receive completes
  };
  struct Entry final : Resolver {
    UpstreamWatch* owner = nullptr;
    int fd = -1;
    State state = State::kNone;
    bool in_flight = false;
    Resolver* reader = nullptr;
    void resolve(int res, unsigned flags) override;
  };
  Entry& entry(int fd);

  Ring& ring_;
  std::vector<std::unique_ptr<Entry>> entries_;  // by descriptor number
  std::size_t in_flight_ = 0;
};

}  // namespace gearbox::backends::uring
