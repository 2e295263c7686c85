// One io_uring and what its owner needs around it: set-up with the best flags this kernel takes
// (and a record of which), SQEs on demand, one submit-and-wait per loop turn that resolves every
// ready CQE, the queue of coroutines to resume, and a ring of provided receive buffers.
#pragma once

#include <liburing.h>

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "backends/uring/task.hpp"
#include "server/connection.hpp"

namespace gearbox::backends::uring {

// What the ring was set up with. Each feature is detected at start-up and has a fallback.
struct RingFeatures {
  bool defer_taskrun = false;  // IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
  bool coop_taskrun = false;   // IORING_SETUP_COOP_TASKRUN (when DEFER_TASKRUN is refused)
  bool sqpoll = false;         // IORING_SETUP_SQPOLL (asked for with --sqpoll)
  bool registered_fd = false;  // io_uring_register_ring_fd: io_uring_enter without fdget
  bool ext_arg = false;        // IORING_FEAT_EXT_ARG: the wait's timeout needs no SQE
  bool buf_ring = false;       // io_uring_register_buf_ring: receive buffers chosen at completion
  bool multishot_accept = false;
  bool multishot_recv = false;  // with the buffer ring
  // A multishot receive ends itself once it received a total of bytes (sqe->optlen, in recent
  // kernels only: probed): it takes the start of a request, never a whole large body.
  bool multishot_recv_limit = false;
  // IORING_RECVSEND_POLL_FIRST (5.19): a receive waits for readiness before its first try.
  // Implied by multishot receive (6.0), which is probed for real.
  bool recv_poll_first = false;
  std::string describe() const;  // "defer_taskrun buf_ring ..." for the start-up log line
};

class Ring final : public Scheduler {
 public:
  // Receive buffers of the provided-buffer ring (group kBufferGroup). As large as the core's
  // input buffer, so that a request (a 4 KiB POST with its head) arrives in one completion and
  // is answered in one send. A buffer's pages cost memory only once bytes landed in them: a
  // small request touches its first page only, whatever the size.
  // The kernel takes buffers from its ring first in, first out, so every buffer the ring holds
  // is touched in turn. It holds only as many as this loop needs (kInitialFill at first,
  // doubled after a turn in which a receive found it empty, up to kBufferCount); the others
  // wait in a last-in, first-out stack, the most recently used given to the kernel first. A
  // burst of connections whose requests arrive together grows it to the most at once: 1,024
  // buffers' first pages were 4 MiB (4 KiB per connection at 1,000 idle ones); 256 serve
  // 10,000 busy connections as fast (a receive that finds them all in use takes a spare buffer
  // or waits its turn: Loop::take_receive_spare).
  static constexpr unsigned kBufferCount = 256;  // power of two
  static constexpr unsigned kInitialFill = 64;
  static constexpr unsigned kBufferSize = 16 * 1024;
  static constexpr unsigned short kBufferGroup = 0;
  // Bytes after which a multishot receive ends itself (multishot_recv_limit): the rest of a
  // large body is read into the core's own buffer, without a copy out of ring buffers. Four
  // buffers' worth: at one, a keep-alive client of 4 KiB echoes re-armed its receive every
  // fourth request (an SQE and a poll arm each); A/B per CPU-second, one buffer's worth against
  // four: echo-4k 169,452 / 171,326, echo-256k 8,612 / 10,651.
  static constexpr unsigned kMultishotLimit = 4 * kBufferSize;

  // The total limit of a multishot receive: sqe->optlen in newer kernel headers, the same field
  // as file_index (unused by receives) in liburing 2.3's.
  static void limit_multishot(io_uring_sqe* sqe, unsigned bytes) { sqe->file_index = bytes; }

  Ring() = default;
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  // Sets the ring up, trying the best flags first. 0 or a negative errno (nothing usable).
  // `basic`: none of the optional features (the fallback path everywhere; tests use it).
  // `buffers`: the most buffers the provided-buffer ring may hold (a power of two; tests make
  // it small to find it empty).
  int init(unsigned entries, bool sqpoll, bool basic = false, unsigned buffers = kBufferCount);
  const RingFeatures& features() const { return features_; }

  io_uring_sqe* sqe_for(Resolver* r) override;
  io_uring_sqe* sqe_ignored() override;
  // Operations whose last CQE has not been resolved yet (0 when the loop may stop).
  std::size_t outstanding() const { return outstanding_; }
  void schedule(std::coroutine_handle<> h) override { ready_.push_back(h); }

  // Resumes queued coroutines (and those they queue) until none is left.
  void run_ready();
  bool has_ready() const { return !ready_.empty(); }

  // One loop turn's I/O: submits the SQEs prepared so far and waits until a CQE is ready or
  // `deadline` passed, then resolves every ready CQE (their resolvers queue coroutines).
  void submit_and_wait(core::TimePoint deadline);

  // The provided-buffer ring. After a CQE with IORING_CQE_F_BUFFER, the buffer's id is
  // flags >> IORING_CQE_BUFFER_SHIFT; the receiver owns it until give_back().
  bool has_buffers() const { return buf_ring_ != nullptr; }
  char* buffer(unsigned id) { return buffers_ + static_cast<std::size_t>(id) * kBufferSize; }
  void give_back(unsigned id);
  // How many buffers the kernel's ring is kept filled with now (it grows on demand). A buffer
  // given back goes to the kernel at the next turn.
  unsigned buffer_fill() const { return fill_; }
  unsigned buffers_in_ring() const { return in_ring_; }  // the kernel may take them now
  // Gives the pages of every buffer not lent out (in the kernel's ring or spare) back to the
  // system; they are touched again, zeroed, as receives land in them. Safe only because the
  // kernel fills a provided buffer in this thread's own calls (the receive's issue and its task
  // work, run in io_uring_enter with DEFER_TASKRUN, at a syscall's return without): not with
  // SQPOLL, whose kernel thread fills them (nothing is released then).
  void release_idle_buffers();

 private:
  void setup_buffer_ring();
  // Once per turn, before the wait: tops the kernel's ring up to fill_ (grown first if a
  // receive starved) from the stack of buffers given back, most recent first, in one advance.
  void refill();
  void probe_multishot();
  int probe_receive(int server, int client, __u64 tag, unsigned limit, unsigned* flags);
  void resolve_ready();
  io_uring_sqe* free_sqe();

  io_uring ring_{};
  bool live_ = false;
  RingFeatures features_;
  std::size_t outstanding_ = 0;
  std::vector<std::coroutine_handle<>> ready_;
  std::vector<std::coroutine_handle<>> running_;
  io_uring_buf_ring* buf_ring_ = nullptr;
  unsigned buffer_count_ = kBufferCount;
  char* buffers_ = nullptr;
  unsigned fill_ = kInitialFill;
  unsigned in_ring_ = 0;               // buffers the kernel holds
  std::vector<unsigned short> spare_;  // the others not in use, the most recent last
  std::vector<bool> lent_;             // per buffer: handed out by a CQE, not given back yet
  bool starved_ = false;               // a receive found the ring empty this turn
};

// Why io_uring cannot be used here ("" when it can): set-up refused (ENOSYS, EPERM from
// kernel.io_uring_disabled or a seccomp filter) or a NOP that does not complete.
std::string io_uring_unavailable();

}  // namespace gearbox::backends::uring
