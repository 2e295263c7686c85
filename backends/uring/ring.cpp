// The ring: set-up with feature detection and fallbacks, the loop turn's one submit-and-wait,
// CQE dispatch to resolvers, and the provided-buffer ring.
#include "backends/uring/ring.hpp"

#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>

namespace gearbox::backends::uring {
namespace {

constexpr unsigned kCqeBatch = 256;

// Waits up to 1 s for one CQE with user_data `tag` during the start-up probes; -ETIME if none.
int probe_wait(io_uring* ring, __u64 tag, unsigned* flags) {
  for (;;) {
    __kernel_timespec ts{1, 0};
    io_uring_cqe* cqe = nullptr;
    int r = io_uring_wait_cqe_timeout(ring, &cqe, &ts);
    if (r < 0) {
      return r == -EINTR ? r : -ETIME;
    }
    const __u64 data = cqe->user_data;
    const int res = cqe->res;
    *flags = cqe->flags;
    io_uring_cqe_seen(ring, cqe);
    if (data == tag) {
      return res;
    }
  }
}

// Cancels the probe operation `tag` and reaps everything it still produces.
void probe_cancel(io_uring* ring, __u64 tag) {
  io_uring_sqe* sqe = io_uring_get_sqe(ring);
  if (sqe == nullptr) {
    return;
  }
  io_uring_prep_cancel64(sqe, tag, 0);
  io_uring_sqe_set_data64(sqe, 99);
  io_uring_submit(ring);
  for (int i = 0; i < 4; ++i) {
    __kernel_timespec ts{0, 200'000'000};
    io_uring_cqe* cqe = nullptr;
    if (io_uring_wait_cqe_timeout(ring, &cqe, &ts) < 0) {
      return;
    }
    const bool last = cqe->user_data == tag && (cqe->flags & IORING_CQE_F_MORE) == 0;
    io_uring_cqe_seen(ring, cqe);
    if (last) {
      return;
    }
  }
}

}  // namespace

std::string RingFeatures::describe() const {
  std::string out;
  auto add = [&](bool on, const char* name) {
    if (on) {
      out += out.empty() ? "" : " ";
      out += name;
    }
  };
  add(defer_taskrun, "single_issuer+defer_taskrun");
  add(coop_taskrun, "coop_taskrun");
  add(sqpoll, "sqpoll");
  add(registered_fd, "registered_ring_fd");
  add(ext_arg, "ext_arg_wait");
  add(buf_ring, "provided_buffer_ring");
  add(multishot_accept, "multishot_accept");
  add(multishot_recv, "multishot_recv");
  add(multishot_recv_limit, "multishot_recv_limit");
  add(recv_poll_first, "recv_poll_first");
  return out.empty() ? "none" : out;
}

Ring::~Ring() {
  if (buf_ring_ != nullptr) {
    io_uring_unregister_buf_ring(&ring_, kBufferGroup);
    ::munmap(buf_ring_, buffer_count_ * sizeof(io_uring_buf));
    ::munmap(buffers_, static_cast<std::size_t>(buffer_count_) * kBufferSize);
  }
  if (live_) {
    io_uring_queue_exit(&ring_);
  }
}

int Ring::init(unsigned entries, bool sqpoll, bool basic, unsigned buffers) {
  buffer_count_ = buffers;
  struct Attempt {
    unsigned flags;
    bool defer, coop, poll;
  };
  std::vector<Attempt> attempts;
  if (sqpoll && !basic) {
    attempts.push_back({IORING_SETUP_SQPOLL | IORING_SETUP_SINGLE_ISSUER, false, false, true});
    attempts.push_back({IORING_SETUP_SQPOLL, false, false, true});
  }
  if (!basic) {
    attempts.push_back(
        {IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN, true, false, false});
    attempts.push_back({IORING_SETUP_COOP_TASKRUN, false, true, false});
  }
  attempts.push_back({0, false, false, false});
  int err = -ENOSYS;
  for (const Attempt& a : attempts) {
    io_uring_params p{};
    // A CQ four times the SQ: 10,000 connections can complete in one turn without overflow.
    p.flags = a.flags | IORING_SETUP_CQSIZE;
    p.cq_entries = entries * 4;
    if (a.poll) {
      p.sq_thread_idle = 1000;
    }
    err = io_uring_queue_init_params(entries, &ring_, &p);
    if (err == 0) {
      live_ = true;
      features_.defer_taskrun = a.defer;
      features_.coop_taskrun = a.coop;
      features_.sqpoll = a.poll;
      features_.ext_arg = (p.features & IORING_FEAT_EXT_ARG) != 0;
      break;
    }
  }
  if (!live_) {
    return err;
  }
  if (basic) {
    return 0;
  }
  features_.registered_fd = !features_.sqpoll && io_uring_register_ring_fd(&ring_) == 1;
  setup_buffer_ring();
  probe_multishot();
  features_.recv_poll_first = features_.multishot_recv;
  return 0;
}

void Ring::setup_buffer_ring() {
  const std::size_t ring_bytes = buffer_count_ * sizeof(io_uring_buf);
  void* ring_mem =
      ::mmap(nullptr, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (ring_mem == MAP_FAILED) {
    return;
  }
  // The buffers themselves: untouched pages cost nothing until a receive lands in them.
  const std::size_t data_bytes = static_cast<std::size_t>(buffer_count_) * kBufferSize;
  void* data =
      ::mmap(nullptr, data_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (data == MAP_FAILED) {
    ::munmap(ring_mem, ring_bytes);
    return;
  }
  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<__u64>(ring_mem);
  reg.ring_entries = buffer_count_;
  reg.bgid = kBufferGroup;
  if (io_uring_register_buf_ring(&ring_, &reg, 0) != 0) {
    ::munmap(ring_mem, ring_bytes);
    ::munmap(data, data_bytes);
    return;
  }
  buf_ring_ = static_cast<io_uring_buf_ring*>(ring_mem);
  buffers_ = static_cast<char*>(data);
  io_uring_buf_ring_init(buf_ring_);
  fill_ = std::min(kInitialFill, buffer_count_);
  spare_.reserve(buffer_count_);
  lent_.assign(buffer_count_, false);
  for (unsigned i = buffer_count_; i-- > 0;) {
    spare_.push_back(static_cast<unsigned short>(i));  // buffer 0 on top
  }
  refill();
  features_.buf_ring = true;
}

void Ring::give_back(unsigned id) {
  // The caller held `id`: at least one buffer is neither in the kernel's ring nor spare. A
  // miscount here could overfill the kernel's ring and hand one buffer to two receives.
  assert(id < buffer_count_ && in_ring_ + spare_.size() < buffer_count_);
  spare_.push_back(static_cast<unsigned short>(id));  // on top: the next refill() takes it first
  lent_[id] = false;
}

void Ring::release_idle_buffers() {
  if (buf_ring_ == nullptr || features_.sqpoll) {
    return;
  }
  unsigned run = 0;  // idle buffers before `id`, not released yet
  for (unsigned id = 0; id <= buffer_count_; ++id) {
    if (id < buffer_count_ && !lent_[id]) {
      ++run;
    } else if (run > 0) {
      ::madvise(buffer(id - run), static_cast<std::size_t>(run) * kBufferSize, MADV_DONTNEED);
      run = 0;
    }
  }
}

void Ring::refill() {
  if (starved_) {
    fill_ = std::min(fill_ * 2, buffer_count_);
    starved_ = false;
  }
  const int mask = io_uring_buf_ring_mask(buffer_count_);
  int added = 0;
  while (in_ring_ < fill_ && !spare_.empty()) {
    const unsigned short id = spare_.back();
    spare_.pop_back();
    io_uring_buf_ring_add(buf_ring_, buffer(id), kBufferSize, id, mask, added++);
    ++in_ring_;
  }
  if (added > 0) {
    io_uring_buf_ring_advance(buf_ring_, added);
  }
}

// Multishot accept (5.19) and multishot receive (6.0) are tried for real on a private AF_UNIX
// pair: an old kernel answers -EINVAL, or completes without IORING_CQE_F_MORE.
void Ring::probe_multishot() {
  int lfd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (lfd < 0) {
    return;
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  socklen_t len = sizeof(sa_family_t);  // autobind: a unique abstract name
  if (::bind(lfd, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(lfd, 4) != 0) {
    ::close(lfd);
    return;
  }
  len = sizeof addr;
  ::getsockname(lfd, reinterpret_cast<sockaddr*>(&addr), &len);

  constexpr __u64 kAccept = 1;
  unsigned flags = 0;
  int server = -1;
  int client = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  io_uring_prep_multishot_accept(sqe, lfd, nullptr, nullptr, SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, kAccept);
  io_uring_submit(&ring_);
  if (client >= 0 && ::connect(client, reinterpret_cast<sockaddr*>(&addr), len) == 0) {
    server = probe_wait(&ring_, kAccept, &flags);
    features_.multishot_accept = server >= 0 && (flags & IORING_CQE_F_MORE) != 0;
  }
  if (!features_.multishot_accept || (flags & IORING_CQE_F_MORE) != 0) {
    probe_cancel(&ring_, kAccept);
  }
  if (server >= 0 && buf_ring_ != nullptr) {
    int n = probe_receive(server, client, 2, 0, &flags);
    features_.multishot_recv = n == 1 && (flags & IORING_CQE_F_MORE) != 0;
  }
  if (server >= 0 && features_.multishot_recv) {
    // With a total limit of one byte, a receive of one byte is its last (no F_MORE); a kernel
    // without limits refuses the field (-EINVAL) or goes on (F_MORE).
    int n = probe_receive(server, client, 3, 1, &flags);
    features_.multishot_recv_limit = n == 1 && (flags & IORING_CQE_F_MORE) == 0;
  }
  if (server >= 0) {
    ::close(server);
  }
  if (client >= 0) {
    ::close(client);
  }
  ::close(lfd);
}

// Arms a multishot receive on `server` (with a total limit of `limit` bytes unless 0), sends it
// one byte from `client` and returns what the receive's first CQE says (its flags in *flags);
// the receive is cancelled (and reaped) if it is still armed.
int Ring::probe_receive(int server, int client, __u64 tag, unsigned limit, unsigned* flags) {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  io_uring_prep_recv_multishot(sqe, server, nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = kBufferGroup;
  if (limit != 0) {
    limit_multishot(sqe, limit);
  }
  io_uring_sqe_set_data64(sqe, tag);
  io_uring_submit(&ring_);
  *flags = IORING_CQE_F_MORE;  // unknown: cancelled below
  int n = -EIO;
  char byte = 'x';
  if (::write(client, &byte, 1) == 1) {
    n = probe_wait(&ring_, tag, flags);
    if ((*flags & IORING_CQE_F_BUFFER) != 0) {
      --in_ring_;
      give_back(*flags >> IORING_CQE_BUFFER_SHIFT);
    }
  }
  if ((*flags & IORING_CQE_F_MORE) != 0) {
    probe_cancel(&ring_, tag);
  }
  return n;
}

io_uring_sqe* Ring::sqe_for(Resolver* r) {
  io_uring_sqe* sqe = free_sqe();
  io_uring_sqe_set_data(sqe, r);
  ++outstanding_;
  return sqe;
}

io_uring_sqe* Ring::sqe_ignored() {
  io_uring_sqe* sqe = free_sqe();
  io_uring_sqe_set_data64(sqe, kIgnoredUserData);
  return sqe;
}

io_uring_sqe* Ring::free_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  while (sqe == nullptr) {
    // SQ full within one turn (thousands of connections woke at once): hand these over now.
    io_uring_submit(&ring_);
    sqe = io_uring_get_sqe(&ring_);
  }
  return sqe;
}

void Ring::run_ready() {
  while (!ready_.empty()) {
    running_.swap(ready_);
    for (std::coroutine_handle<> h : running_) {
      h.resume();
    }
    running_.clear();
  }
}

void Ring::submit_and_wait(core::TimePoint deadline) {
  if (buf_ring_ != nullptr) {
    refill();
  }
  io_uring_cqe* cqe = nullptr;
  int r;
  if (deadline == core::kNever) {
    r = io_uring_submit_and_wait(&ring_, 1);
  } else {
    auto left = deadline - core::Clock::now();
    auto ns = std::max<std::int64_t>(
        0, std::chrono::duration_cast<std::chrono::nanoseconds>(left).count());
    __kernel_timespec ts{ns / 1'000'000'000, ns % 1'000'000'000};
    // With IORING_FEAT_EXT_ARG the timeout rides on io_uring_enter itself; without it liburing
    // queues a timeout SQE whose CQE carries LIBURING_UDATA_TIMEOUT (skipped below).
    r = io_uring_submit_and_wait_timeout(&ring_, &cqe, 1, &ts, nullptr);
  }
  (void)r;  // -ETIME, -EINTR: nothing ready; the CQ is looked at either way
  resolve_ready();
}

void Ring::resolve_ready() {
  // CQEs are copied out and the CQ advanced before any resolver runs: a resolver may queue new
  // SQEs (and submit them when the SQ is full) without the CQ moving under this loop.
  io_uring_cqe* cqes[kCqeBatch];
  struct Done {
    __u64 data;
    int res;
    unsigned flags;
  } done[kCqeBatch];
  for (;;) {
    unsigned n = io_uring_peek_batch_cqe(&ring_, cqes, kCqeBatch);
    if (n == 0) {
      return;
    }
    for (unsigned i = 0; i < n; ++i) {
      done[i] = {cqes[i]->user_data, cqes[i]->res, cqes[i]->flags};
      if ((done[i].flags & IORING_CQE_F_BUFFER) != 0) {
        --in_ring_;  // the kernel took a buffer out of its ring
        lent_[done[i].flags >> IORING_CQE_BUFFER_SHIFT] = true;
      } else if (done[i].res == -ENOBUFS) {
        starved_ = true;
      }
    }
    io_uring_cq_advance(&ring_, n);
    for (unsigned i = 0; i < n; ++i) {
      if (done[i].data == kIgnoredUserData || done[i].data == LIBURING_UDATA_TIMEOUT) {
        continue;
      }
      if ((done[i].flags & IORING_CQE_F_MORE) == 0) {
        --outstanding_;
      }
      reinterpret_cast<Resolver*>(done[i].data)->resolve(done[i].res, done[i].flags);
    }
    if (n < kCqeBatch) {
      return;
    }
  }
}

std::string io_uring_unavailable() {
  static const std::string why = [] {
    io_uring ring{};
    int err = io_uring_queue_init(4, &ring, 0);
    if (err < 0) {
      std::string text = std::string("io_uring_setup: ") + std::strerror(-err);
      if (FILE* f = std::fopen("/proc/sys/kernel/io_uring_disabled", "r")) {
        int value = 0;
        if (std::fscanf(f, "%d", &value) == 1 && value != 0) {
          text += " (kernel.io_uring_disabled=" + std::to_string(value) + ")";
        } else if (err == -EPERM) {
          text += " (a seccomp filter?)";
        }
        std::fclose(f);
      } else if (err == -EPERM) {
        text += " (a seccomp filter?)";
      }
      return text;
    }
    // Set-up alone proves little under a seccomp filter that only blocks io_uring_enter.
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_nop(sqe);
    io_uring_cqe* cqe = nullptr;
    std::string text;
    int r = io_uring_submit_and_wait(&ring, 1);
    if (r < 0) {
      text = std::string("io_uring_enter: ") + std::strerror(-r);
    } else if (io_uring_peek_cqe(&ring, &cqe) != 0) {
      text = "io_uring_enter: a NOP did not complete";
    } else {
      io_uring_cqe_seen(&ring, cqe);
    }
    io_uring_queue_exit(&ring);
    return text;
  }();
  return why;
}

}  // namespace gearbox::backends::uring
