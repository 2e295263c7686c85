// The ring pump of one connection (see ring_pump.hpp) and the coroutine that runs it.
#include "backends/uring/ring_pump.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <climits>
#include <cstring>

#include "backends/common/socket.hpp"
#include "backends/uring/loop.hpp"

namespace gearbox::backends::uring {

// An adopted upstream receive (one ring buffer) must fit the span the core lends for it.
static_assert(Ring::kBufferSize <= Loop::kInputBufferSize);

RingPump::RingPump(Loop& loop, int client_fd) : fd_(client_fd), loop_(loop) {
  for (int i = 0; i < kConnect; ++i) {
    ops_[i].pump = this;
    ops_[i].slot = static_cast<Slot>(i);
  }
  // Accepted while the loop began draining: this one drains too.
  drain_pending_ = loop.draining();
  loop_.attach(this);
}

RingPump::~RingPump() {
  assert(!busy());
  if (starved_wait_) {
    loop_.forget_starved(this);
  }
  loop_.deadlines().remove(this);
  loop_.detach(this);
}

void RingPump::notify() {
  pending_ = true;
  if (waiter_) {
    std::coroutine_handle<> h = waiter_;
    waiter_ = {};
    loop_.ring().schedule(h);
  }
}

RingPump::Upstream& RingPump::upstream() {
  if (!up_) {
    up_ = std::make_unique<Upstream>();
    for (int i = kConnect; i < kSlots; ++i) {
      up_->ops[i - kConnect].pump = this;
      up_->ops[i - kConnect].slot = static_cast<Slot>(i);
    }
  }
  return *up_;
}

template <class F>
void RingPump::each_op(F f) const {
  for (const Op& op : ops_) {
    f(op);
  }
  if (up_) {
    for (const Op& op : up_->ops) {
      f(op);
    }
  }
}

bool RingPump::busy() const {
  bool any = false;
  each_op([&](const Op& op) { any = any || op.in_flight; });
  return any;
}

bool RingPump::quiet() const {
  // The receive must be armed: a connection whose receive ended (ENOBUFS, a hold cancel) needs
  // its coroutine to arm another.
  const Op& read = ops_[kClientRead];
  if (!read.in_flight || read.cancelled || pending_ || drain_pending_ || killed_ ||
      !input_.empty() || client_eof_ || client_err_ != 0 || ufd() >= 0 || send_copy_ != nullptr) {
    return false;
  }
  bool still = true;
  each_op([&](const Op& op) {
    still = still && !op.has_result && (!op.in_flight || op.slot == kClientRead);
  });
  return still;
}

void RingPump::shed() {
  assert(quiet());
  up_.reset();
  client_msg_.reset();
  std::vector<Input>().swap(input_);  // its memory too ("input_ = {}" kept the capacity)
}

void RingPump::doze(core::Connection& c) {
  assert(dozing_ == nullptr && !slept_);
  dozing_ = &c;
  if (rests_ < 2) {
    ++rests_;
    put_to_sleep();
    return;
  }
  loop_.doze(this);
}

bool RingPump::undoze() {
  if (dozing_ != nullptr) {
    loop_.leave_doze(this);
    dozing_ = nullptr;
  }
  const bool slept = slept_;
  if (slept) {
    slept_ = false;
    loop_.count_asleep(-1);
  }
  return slept;
}

void RingPump::put_to_sleep() {
  core::Connection& c = *dozing_;
  dozing_ = nullptr;
  if (!quiet() || !c.can_sleep()) {
    return;  // bytes, a deadline or the drain came: its coroutine runs next, awake
  }
  c.sleep();
  shed();
  loop_.count_asleep(1);
  slept_ = true;
}

void RingPump::completed(Op& op, int res, unsigned flags) {
  if ((flags & IORING_CQE_F_MORE) == 0) {
    op.in_flight = false;
  }
  op.cancelled = op.cancelled && op.in_flight;
  if ((op.slot == kClientWrite || op.slot == kUpstreamWrite) && send_copy(op.slot) != nullptr) {
    loop_.give_spare_buffer(send_copy(op.slot));
    send_copy(op.slot) = nullptr;
  }
  if (op.slot == kClientRead && lent_read_) {
    // Into the core's lent span: the bytes wait there until the core takes client data again.
    lent_read_ = false;
    if (res > 0) {
      op.has_result = true;
      op.res = res;
    } else if (res == 0) {
      client_eof_ = true;
    } else if (res != -ECANCELED) {
      client_err_ = -res;
    }
  } else if (op.slot == kClientRead) {
    // Received bytes are the pump's until the core takes them (they may wait a while: the core
    // wants no read while it writes a response).
    Input in{nullptr, 0, res > 0 ? static_cast<std::size_t>(res) : 0, kSpare};
    if ((flags & IORING_CQE_F_BUFFER) != 0) {
      in.buffer_id = static_cast<int>(flags >> IORING_CQE_BUFFER_SHIFT);
      in.data = loop_.ring().buffer(static_cast<unsigned>(in.buffer_id));
    } else if (spare_ != nullptr && !op.in_flight) {
      in.data = spare_;
      spare_ = nullptr;
    }
    if (in.data != nullptr && in.end == 0) {
      give_receive_buffer(in.data, in.buffer_id);  // no bytes in it: straight back
    } else if (in.data != nullptr) {
      input_.push_back(in);
    }
    if (multishot_ && op.in_flight && input_.size() - held_ >= kHoldLimit) {
      cancel(op);
    }
    if (res <= 0) {
      if (res == 0) {
        client_eof_ = true;
      } else if (res == -ENOBUFS) {
        no_buffers_ = true;  // every ring buffer is held: this one receive uses a spare
      } else if (res != -ECANCELED) {
        client_err_ = -res;
      }
    }
  } else if (op.slot == kUpstreamRead && res == -ENOBUFS) {
    // The adopted receive found the buffer ring empty: an ordinary read follows (submit()).
    up_->read_adopted = false;
  } else {
    if (op.slot == kUpstreamRead) {
      up_->read_adopted = false;
      if ((flags & IORING_CQE_F_BUFFER) != 0) {
        up_->read_buffer = static_cast<int>(flags >> IORING_CQE_BUFFER_SHIFT);
      }
    }
    op.has_result = true;
    op.res = res;
  }
  notify();
}

void RingPump::drop_upstream_result(Op& op) {
  op.has_result = false;
  if (op.slot == kUpstreamRead && up_->read_buffer >= 0) {
    loop_.ring().give_back(static_cast<unsigned>(up_->read_buffer));
    up_->read_buffer = -1;
  }
}

void RingPump::pop_input() {
  const Input in = input_[held_];
  input_.erase(input_.begin() + held_);
  give_receive_buffer(in.data, in.buffer_id);
}

void RingPump::release_held() {
  for (std::size_t i = 0; i < held_; ++i) {
    give_receive_buffer(input_[i].data, input_[i].buffer_id);
  }
  input_.erase(input_.begin(), input_.begin() + held_);
  held_ = 0;
}

void RingPump::give_receive_buffer(char* data, int buffer_id) {
  if (buffer_id >= 0) {
    loop_.ring().give_back(static_cast<unsigned>(buffer_id));
  } else {
    loop_.give_receive_spare(data);
  }
}

void RingPump::drop_input() {
  release_held();
  while (has_input()) {
    pop_input();
  }
}

bool RingPump::apply(core::Connection& c) {
  const core::TimePoint now = loop_.now();
  core::Wants w = c.wants();
  while (!w.done && !killed_ && step(c, w, now)) {
  }
  if (w.done || killed_) {
    loop_.deadlines().remove(this);
    return true;
  }
  submit(w);
  loop_.deadlines().set(this, w.deadline);
  return false;
}

// Reports one event (true, `w` asked again) or finds nothing to report (false). Completions of
// operations the core no longer wants are dropped: it withdrew them (an abort cleared its
// output, a release gave the upstream socket up), except received bytes, which wait.
bool RingPump::step(core::Connection& c, core::Wants& w, core::TimePoint now) {
  auto refresh = [&] {
    w = c.wants();
    return true;
  };
  if (held_ != 0 && !w.client_data_held) {
    release_held();  // the core's writes no longer point into them
  }
  if (w.client_shutdown_write && !shut_) {
    ::shutdown(fd_, SHUT_WR);
    shut_ = true;
  }
  if (client_err_ != 0) {
    int err = client_err_;
    client_err_ = 0;
    c.on_client_error(err, now);
    return refresh();
  }
  if (w.release_upstream != core::Release::kNone) {
    if (release_upstream(c, w, now)) {
      return refresh();
    }
  } else if (w.upstream_connect != nullptr) {
    Op& op = this->op(kConnect);
    if (op.has_result) {
      op.has_result = false;
      if (op.res == 0) {
        up_->connected = true;
        c.on_upstream_connected(false, now);
      } else {
        ::close(up_->fd);
        up_->fd = -1;
        up_->ep = nullptr;
        c.on_upstream_connect_failed(-op.res, now);
      }
      return refresh();
    }
    if (ufd() < 0 && start_connect(c, w, now)) {
      return refresh();
    }
  }
  if (Op& op = ops_[kClientWrite]; op.has_result) {
    op.has_result = false;
    if (!w.client_write.empty() && op.res != -ECANCELED) {
      if (op.res >= 0) {
        c.on_client_written(static_cast<std::size_t>(op.res), now);
      } else {
        c.on_client_error(-op.res, now);
      }
      return refresh();
    }
  }
  if (Op* op_ptr = up_ ? &op(kUpstreamWrite) : nullptr; op_ptr != nullptr && op_ptr->has_result) {
    Op& op = *op_ptr;
    op.has_result = false;
    if (!w.upstream_write.empty() && op.res != -ECANCELED) {
      if (op.res >= 0) {
        c.on_upstream_written(static_cast<std::size_t>(op.res), now);
      } else {
        c.on_upstream_error(-op.res, now);
      }
      return refresh();
    }
  }
  if (w.client_data) {
    if (Op& op = ops_[kClientRead]; op.has_result) {
      op.has_result = false;  // a read into the lent span (nothing else reads meanwhile)
      c.on_client_read(static_cast<std::size_t>(op.res), now);
      return refresh();
    }
    if (has_input()) {
      // The core parses the received bytes where they are and copies only what it keeps; a
      // lent span (a core not told that the driver owns its input) gets them copied in.
      Input& in = input_[held_];
      std::size_t n = in.end - in.begin;
      bool handed = w.client_read.empty();
      if (handed) {
        n = c.on_client_data({in.data + in.begin, n}, now);
      } else {
        n = std::min(w.client_read.size(), n);
        std::memcpy(w.client_read.data(), in.data + in.begin, n);
        c.on_client_read(n, now);
      }
      in.begin += n;
      if (in.begin == in.end && handed) {
        ++held_;  // given back by the next step unless the core's writes point into it
      } else if (in.begin == in.end) {
        pop_input();
      }
      return refresh();
    }
    if (client_eof_) {
      client_eof_ = false;
      c.on_client_read(0, now);
      return refresh();
    }
  }
  if (Op* op_ptr = up_ ? &op(kUpstreamRead) : nullptr;
      op_ptr != nullptr && op_ptr->has_result && !w.upstream_read.empty()) {
    Op& op = *op_ptr;
    if (const int buffer = up_->read_buffer; buffer >= 0) {
      // The adopted receive's bytes are in a ring buffer (at most Ring::kBufferSize, no more
      // than the core's empty upstream buffer lends): copied where the core wants them.
      const std::size_t n =
          std::min(static_cast<std::size_t>(std::max(op.res, 0)), w.upstream_read.size());
      std::memcpy(w.upstream_read.data(), loop_.ring().buffer(static_cast<unsigned>(buffer)), n);
      assert(op.res <= 0 || n == static_cast<std::size_t>(op.res));
      op.res = op.res < 0 ? op.res : static_cast<int>(n);
    }
    drop_upstream_result(op);
    if (op.res >= 0) {
      c.on_upstream_read(static_cast<std::size_t>(op.res), now);
    } else if (op.res != -ECANCELED) {
      c.on_upstream_error(-op.res, now);
    }
    return refresh();
  }
  if (drain_pending_) {
    drain_pending_ = false;
    c.on_drain(now);
    return refresh();
  }
  if (w.deadline <= now) {
    c.on_deadline(now);
    return refresh();
  }
  return false;
}

// The core lets its upstream socket go: once nothing is in flight on it (cancelled first if
// need be), it goes back to the loop's pool or is closed, and the core hears of it.
bool RingPump::release_upstream(core::Connection& c, core::Wants& w, core::TimePoint now) {
  Upstream& up = upstream();
  bool in_flight = false;
  for (Op& op : up.ops) {
    if (op.in_flight) {
      in_flight = true;
      up.spoiled = true;
      cancel(op);
    }
  }
  if (in_flight) {
    return false;  // the cancelled operations complete first
  }
  for (Op& op : up.ops) {
    drop_upstream_result(op);
  }
  if (up.fd >= 0) {
    UpstreamPool* pool = loop_.pool();
    if (w.release_upstream == core::Release::kReuse && pool != nullptr && up.connected &&
        !up.spoiled) {
      pool->put(*up.ep, up.fd, now);
    } else {
      ::close(up.fd);
    }
  }
  up.fd = -1;
  up.ep = nullptr;
  up.connected = false;
  up.spoiled = false;
  c.on_upstream_released(now);
  return true;
}

// A pooled connection when one may serve (reported at once), else a new socket whose connect
// goes on the ring (reported on completion). True when an event was reported.
bool RingPump::start_connect(core::Connection& c, const core::Wants& w, core::TimePoint now) {
  const core::Endpoint& ep = *w.upstream_connect;
  Upstream& up = upstream();
  UpstreamPool* pool = loop_.pool();
  if (w.upstream_may_reuse && pool != nullptr) {
    int fd = pool->take(ep, now);
    if (fd >= 0) {
      up.fd = fd;
      up.ep = &ep;
      up.connected = true;
      // The receive that watched it while idle is still armed: it reads the response.
      Op& read = op(kUpstreamRead);
      if (loop_.upstream_watch().adopt(fd, &read)) {
        read.in_flight = true;
        up.read_adopted = true;
      }
      c.on_upstream_connected(true, now);
      return true;
    }
  }
  int fd = ::socket(ep.addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    c.on_upstream_connect_failed(errno, now);
    return true;
  }
  int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  up.fd = fd;
  up.ep = &ep;
  Op& op = this->op(kConnect);
  io_uring_prep_connect(loop_.ring().sqe_for(&op), fd, reinterpret_cast<const sockaddr*>(&ep.addr),
                        ep.len);
  op.in_flight = true;
  return false;
}

void RingPump::submit_send(Op& op, int fd, std::span<const iovec> iov) {
  static_assert(kCoalesceMax <= Loop::kSpareBufferSize);
  io_uring_sqe* sqe = loop_.ring().sqe_for(&op);
  std::size_t total = 0;
  for (const iovec& v : iov) {
    total += v.iov_len;
  }
  // MSG_NOSIGNAL: a reset peer gives EPIPE, never SIGPIPE.
  if (iov.size() == 1) {
    io_uring_prep_send(sqe, fd, iov[0].iov_base, iov[0].iov_len, MSG_NOSIGNAL);
  } else if (total <= kCoalesceMax) {
    char* copy = loop_.take_spare_buffer();
    std::size_t at = 0;
    for (const iovec& v : iov) {
      std::memcpy(copy + at, v.iov_base, v.iov_len);
      at += v.iov_len;
    }
    send_copy(op.slot) = copy;
    io_uring_prep_send(sqe, fd, copy, total, MSG_NOSIGNAL);
  } else {
    if (op.slot == kClientWrite && !client_msg_) {
      client_msg_ = std::make_unique<msghdr>();
    }
    msghdr& msg = op.slot == kClientWrite ? *client_msg_ : upstream().msg;
    msg = msghdr{};
    msg.msg_iov = const_cast<iovec*>(iov.data());
    msg.msg_iovlen = std::min<std::size_t>(iov.size(), IOV_MAX);
    io_uring_prep_sendmsg(sqe, fd, &msg, MSG_NOSIGNAL);
  }
  op.in_flight = true;
}

void RingPump::arm_receive(const core::Wants& w) {
  Ring& ring = loop_.ring();
  Op& op = ops_[kClientRead];
  multishot_ = false;
  if (!w.client_read.empty()) {
    io_uring_prep_recv(ring.sqe_for(&op), fd_, w.client_read.data(), w.client_read.size(), 0);
    lent_read_ = true;
  } else if (ring.has_buffers() && !no_buffers_) {
    // The kernel picks the buffer when bytes arrive: a connection waiting for its next
    // request pins none. A multishot receive stays armed across requests.
    io_uring_sqe* sqe = ring.sqe_for(&op);
    multishot_ = ring.features().multishot_recv;
    if (multishot_) {
      io_uring_prep_recv_multishot(sqe, fd_, nullptr, 0, 0);
      if (ring.features().multishot_recv_limit) {
        Ring::limit_multishot(sqe, Ring::kMultishotLimit);  // re-armed when it ends
      }
    } else {
      io_uring_prep_recv(sqe, fd_, nullptr, Ring::kBufferSize, 0);
    }
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = Ring::kBufferGroup;
  } else {
    // No buffer ring, or it was empty (ENOBUFS): a spare buffer, unless too many receives that
    // found it empty have one already; then this one waits its turn (buffers_freed()).
    spare_ = loop_.take_receive_spare(this, overdraw_);
    overdraw_ = false;
    if (spare_ == nullptr) {
      starved_wait_ = true;
      return;
    }
    no_buffers_ = false;
    io_uring_prep_recv(ring.sqe_for(&op), fd_, spare_, Loop::kSpareBufferSize, 0);
  }
  op.in_flight = true;
}

void RingPump::submit(const core::Wants& w) {
  Ring& ring = loop_.ring();
  Op& read = ops_[kClientRead];
  if (read.in_flight && multishot_ && !w.client_read.empty()) {
    // Mid-body the core lends its own buffer: the rest of the body is read into it (one copy
    // less, reads as large as its free end) once the multishot receive is done; what it still
    // receives meanwhile is handed over first.
    cancel(read);
  }
  if (w.client_data && !read.in_flight && !read.has_result && !has_input() && !client_eof_ &&
      client_err_ == 0 && !starved_wait_) {
    arm_receive(w);
  }
  if (Op& op = ops_[kClientWrite]; !w.client_write.empty() && !op.in_flight && !op.has_result) {
    submit_send(op, fd_, w.client_write);
  }
  if (ufd() >= 0 && up_->connected && w.release_upstream == core::Release::kNone) {
    if (Op& op = this->op(kUpstreamWrite);
        !w.upstream_write.empty() && !op.in_flight && !op.has_result) {
      submit_send(op, up_->fd, w.upstream_write);
    }
    if (Op& op = this->op(kUpstreamRead);
        !w.upstream_read.empty() && !op.in_flight && !op.has_result) {
      io_uring_sqe* sqe = ring.sqe_for(&op);
      io_uring_prep_recv(sqe, up_->fd, w.upstream_read.data(), w.upstream_read.size(), 0);
      if (this->op(kUpstreamWrite).in_flight && ring.features().recv_poll_first) {
        // The request is being sent in this very batch: its response cannot be there yet, so
        // the receive waits for readiness at once instead of failing a first try (EAGAIN).
        sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
      }
      op.in_flight = true;
    }
  }
}

void RingPump::cancel(Op& op) {
  if (!op.in_flight || op.cancelled) {
    return;
  }
  op.cancelled = true;
  if (op.slot == kUpstreamRead && up_->read_adopted) {
    loop_.upstream_watch().cancel(up_->fd);
  } else {
    prep_cancel(loop_.ring(), &op);
  }
}

void RingPump::cancel_all(bool abort) {
  abort_ = abort;
  for (Op& op : ops_) {
    cancel(op);
  }
  if (up_) {
    for (Op& op : up_->ops) {
      cancel(op);
    }
  }
}

bool RingPump::finish_and_abort_wanted() {
  assert(!busy());
  drop_input();
  if (up_) {
    drop_upstream_result(op(kUpstreamRead));
    if (up_->fd >= 0) {
      ::close(up_->fd);
      up_->fd = -1;
    }
  }
  if (spare_ != nullptr) {
    give_receive_buffer(spare_, kSpare);
    spare_ = nullptr;
  }
  return killed_ || abort_;
}

Detached serve_connection(const Accepted& accepted) {
  // `accepted` is the caller's: it is read before the first suspension only. (A coroutine
  // keeps its parameters in its frame: one reference here, where the loop, the descriptor and
  // the address took 24 bytes.)
  RingPump pump(accepted.loop, accepted.fd);
  {
    std::shared_ptr<LoopContext> ctx = pump.loop().context();  // the configuration in force now
    const std::string who = address_text(accepted.peer);
    core::Connection conn(ctx->ctx, core::Peer{who, &accepted.peer}, pump.loop().now());
    while (!pump.apply(conn)) {
      if (conn.can_sleep() && pump.quiet()) {
        // Idle between requests with only the receive armed. It dozes first: its core stays
        // awake in the loop's doze set, so that a client that sends its next request soon (a
        // keep-alive client under load does, within a round trip) finds it as it left it, with
        // nothing freed and allocated again (the state, the parsers, the upstream half: 9
        // allocations per request in echo mode and 21 proxied, profiled; 6-7% of the server's
        // CPU at 64 connections). The loop puts a dozer to sleep once 128 others dozed after
        // it, or when nothing dozed for 50 ms: then the core's state and the pump's upstream
        // half are freed until the next bytes, the idle deadline (filed with the loop) or the
        // drain wake it, as nginx frees a keep-alive connection's request, and an idle
        // keep-alive connection is held in its frame alone. The loop does it without resuming
        // the coroutine. (A doze timed per connection, tried at 50 ms, cost an extra resume and
        // deadline move per request once requests came further apart.)
        const core::TimePoint deadline = conn.wants().deadline;
        pump.doze(conn);
        co_await pump.next();
        if (pump.undoze()) {
          // The core kept its trusted-proxy verdict: the address text is all it needs again.
          conn.wake(ctx->ctx, core::Peer{who, nullptr}, deadline, pump.loop().now());
        }
        continue;
      }
      co_await pump.next();
    }
    // Nothing the kernel still writes into, or reads from, may be freed before its CQE.
    pump.cancel_all(conn.wants().close_mode == core::CloseMode::kAbort);
    while (pump.busy()) {
      co_await pump.next();
    }
    if (pump.finish_and_abort_wanted()) {
      linger lg{1, 0};  // reset instead of FIN (core::CloseMode::kAbort)
      ::setsockopt(pump.client_fd(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
    }
  }
  pump.loop().close_socket(pump.client_fd());
}

}  // namespace gearbox::backends::uring
