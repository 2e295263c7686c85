// The ring pump: drives one core::Connection (and its upstream socket) on the loop's ring. After
// every batch of completions it reports what the core can take as events, submits an SQE for
// each wanted slot not yet in flight (one bit per slot), and files the core's deadline with the
// loop. On close it cancels whatever is in flight and reaps every CQE before the connection's
// frame and buffers are freed (STYLE.md 8: an operation owns its buffer until its completion).
#pragma once

#include <sys/socket.h>
#include <sys/uio.h>

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "backends/uring/deadline_heap.hpp"
#include "backends/uring/task.hpp"
#include "server/connection.hpp"

namespace gearbox::backends::uring {

class Loop;

class RingPump final : public DeadlineEntry {
 public:
  RingPump(Loop& loop, int client_fd);
  ~RingPump();  // detaches from the loop; nothing may be in flight any more
  RingPump(const RingPump&) = delete;
  RingPump& operator=(const RingPump&) = delete;

  // Reports every completion the core can take now as its event (asking for the wants again
  // after each), does the non-ring work the core asks for (shutdown, upstream release), submits
  // an SQE per wanted slot not in flight and files the deadline. True once the core is done (or
  // the loop gave up on it): then call cancel_all() and wait until !busy().
  bool apply(core::Connection& c);

  // Suspends until a completion, a deadline or the drain concerns this connection.
  auto next() {
    struct Await {
      RingPump& p;
      bool await_ready() const noexcept { return p.pending_; }
      void await_suspend(std::coroutine_handle<> h) noexcept { p.waiter_ = h; }
      void await_resume() const noexcept { p.pending_ = false; }
    };
    return Await{*this};
  }

  // Nothing to report and nothing in flight but the client's receive: the connection may
  // sleep (core::Connection::sleep) until next() returns. shed() then frees what a sleeping
  // connection does not need (the upstream half, spare vectors).
  bool quiet() const;
  void shed();

  // Dozing: idle and quiet, the connection waits with its core awake, in the loop's doze set
  // (Loop::doze), which puts it to sleep (put_to_sleep) when it has been there longest or the
  // loop goes quiet. The first two times a connection is idle (before its first request, and
  // after it) it sleeps at once: only one that came back dozes (a client that sends one request
  // and then holds its connection costs no more than before). undoze() (after next() returns)
  // leaves the set and says whether it slept (no longer counted asleep): then the core is to be
  // woken.
  void doze(core::Connection& c);
  bool undoze();

  // Closing: asks the kernel to cancel every operation in flight (each still completes).
  // `abort`: the core wants the client socket reset (core::CloseMode::kAbort).
  void cancel_all(bool abort);
  bool busy() const;  // some operation has not completed yet
  // After !busy(): gives back receive buffers, closes the upstream socket if one is left, and
  // says whether the client socket is to be reset (asked by cancel_all or the loop's kill).
  bool finish_and_abort_wanted();
  int client_fd() const { return fd_; }
  Loop& loop() { return loop_; }

  // --- For the loop ---------------------------------------------------------------------------
  void notify();  // something happened: resume the coroutine (once) after this turn's CQEs
  void drain() {
    drain_pending_ = true;
    notify();
  }
  void kill() {
    killed_ = true;
    notify();
  }
  // Its turn to receive again after the buffer ring was found empty (Loop::
  // take_receive_spare): the ring is tried first, unless it waited too long
  // (`overdraw`: a spare buffer past the bound).
  void buffers_freed(bool overdraw) {
    no_buffers_ = overdraw;
    overdraw_ = overdraw;
    starved_wait_ = false;
    notify();
  }
  // Out of the doze set: the core sleeps now unless something arrived for it meanwhile (then
  // it resumes awake).
  void put_to_sleep();
  std::uint8_t doze_slot() const { return doze_slot_; }
  void set_doze_slot(std::uint8_t slot) { doze_slot_ = slot; }

 private:
  enum Slot : std::uint8_t {
    kClientRead,
    kClientWrite,
    kConnect,
    kUpstreamRead,
    kUpstreamWrite,
    kSlots
  };
  struct Op final : Resolver {
    RingPump* pump = nullptr;
    Slot slot = kClientRead;
    bool in_flight = false;
    bool has_result = false;  // completed, not yet reported to the core
    bool cancelled = false;   // a cancel was asked for the operation in flight
    int res = 0;
    void resolve(int r, unsigned flags) override { pump->completed(*this, r, flags); }
  };

  // The upstream socket and its operations, allocated while the core uses an upstream
  // connection (proxy mode) and freed when the connection sleeps: an idle connection does not
  // carry them.
  struct Upstream {
    Op ops[kSlots - kConnect];
    msghdr msg{};
    char* send_copy = nullptr;
    int fd = -1;
    const core::Endpoint* ep = nullptr;
    bool connected = false;
    bool spoiled = false;  // an operation on it was cancelled: never pooled
    // The read in flight is the receive that watched the pooled connection (adopted from the
    // loop's UpstreamWatch): cancelled through it.
    bool read_adopted = false;
    int read_buffer = -1;  // the provided-ring buffer holding the read's bytes (adopted)
  };

  Op& op(Slot s) { return s < kConnect ? ops_[s] : upstream().ops[s - kConnect]; }
  Upstream& upstream();  // allocated on first use
  template <class F>
  void each_op(F f) const;  // the client's operations, then the upstream's (if allocated)
  int ufd() const { return up_ ? up_->fd : -1; }
  void completed(Op& op, int res, unsigned flags);
  bool step(core::Connection& c, core::Wants& w, core::TimePoint now);
  bool release_upstream(core::Connection& c, core::Wants& w, core::TimePoint now);
  bool start_connect(core::Connection& c, const core::Wants& w, core::TimePoint now);
  void submit(const core::Wants& w);
  void arm_receive(const core::Wants& w);  // the client's receive the core wants
  void submit_send(Op& op, int fd, std::span<const iovec> iov);
  char*& send_copy(Slot slot) { return slot == kClientWrite ? send_copy_ : upstream().send_copy; }
  void cancel(Op& op);
  void drop_upstream_result(Op& op);
  void drop_input();
  void pop_input();
  void release_held();
  void give_receive_buffer(char* data, int buffer_id);
  bool has_input() const { return input_.size() > held_; }

  // The members are laid out for a small frame (a sleeping connection is its frame): the
  // descriptor in the deadline entry's padding, the flags together at the end (the rarely
  // touched ones as bits: the frame stays in a 352-byte heap chunk).
  const int fd_;
  Loop& loop_;
  Op ops_[kConnect];  // client read and write
  std::coroutine_handle<> waiter_;

 public:
  RingPump* prev = nullptr;  // the loop's list of live connections (for the drain)
  RingPump* next_conn = nullptr;

 private:
  // Received client bytes the core has not taken yet, oldest first (they wait for it to want a
  // read). A multishot receive may complete several times before the coroutine runs. The first
  // held_ were taken whole, and are kept until the core's writes no longer point into them
  // (Wants::client_data_held: an echoed body is sent from the buffer it was received in).
  struct Input {
    char* data;
    std::size_t begin;
    std::size_t end;
    int buffer_id;  // from the provided-buffer ring; kSpare: a spare buffer (Loop's)
  };
  static constexpr int kSpare = -1;
  // Held receives at which a multishot receive is cancelled: the core is not reading, and the
  // client must not fill the loop's buffer ring (backpressure, as with single-shot receives).
  static constexpr std::size_t kHoldLimit = 4;
  std::vector<Input> input_;  // oldest first (rarely more than one: taken from the front)
  char* spare_ = nullptr;     // spare buffer lent to the receive in flight

  // A write of several small pieces (a proxied response head and its body) goes out as one
  // send from a copy in a spare buffer, held until its completion: cheaper than a sendmsg.
  static constexpr std::size_t kCoalesceMax = 2048;
  char* send_copy_ = nullptr;           // of the client write
  std::unique_ptr<msghdr> client_msg_;  // of a client sendmsg, allocated on first use
  std::unique_ptr<Upstream> up_;
  core::Connection* dozing_ = nullptr;  // in the loop's doze set (doze())

  int client_err_ = 0;  // receive error, not yet reported
  bool pending_ = false;
  bool multishot_ = false;  // the receive in flight is multishot
  // The receive in flight reads into the span the core lends mid-body (Wants::client_read):
  // its bytes are already where the core wants them, reported as on_client_read().
  bool lent_read_ = false;
  bool client_eof_ = false;  // EOF received, not yet reported
  bool slept_ = false;       // put to sleep while dozing; undoze() reports it
  bool drain_pending_ : 1 = false;
  bool killed_ : 1 = false;
  bool shut_ : 1 = false;
  bool abort_ : 1 = false;         // reset the client socket when closing it
  bool no_buffers_ : 1 = false;    // the ring was empty: the next receive uses a spare buffer
  bool starved_wait_ : 1 = false;  // in the loop's queue for a buffer (buffers_freed())
  bool overdraw_ : 1 = false;      // it waited too long: a spare past the loop's bound
  std::uint8_t held_ = 0;          // input_'s first entries, taken and kept for the core
  std::uint8_t rests_ = 0;         // times it was idle (up to 2): only one that came back dozes
  std::uint8_t doze_slot_ = 0;     // its place in the loop's doze set while dozing_
};

// The coroutine of one accepted client connection: runs its core::Connection with a RingPump
// until done, then cancels and reaps what is in flight and closes the socket.
// `accepted` is read before the coroutine first suspends only.
struct Accepted {
  Loop& loop;
  int fd;
  const sockaddr_storage& peer;
};
Detached serve_connection(const Accepted& accepted);

}  // namespace gearbox::backends::uring
