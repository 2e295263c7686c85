// The client half of the per-connection state machine: events in, wants out. The request
// handling itself lives in Connection::State (connection_state.hpp); no I/O here.
#include "server/connection.hpp"

#include "server/connection_state.hpp"

namespace gearbox::core {

// --- Connection ------------------------------------------------------------------------------

Connection::Connection(Context& ctx, Peer peer, TimePoint now)
    : s_(std::make_unique<State>(ctx, std::move(peer), now)) {}

Connection::~Connection() {
  if (s_ == nullptr && asleep_metrics_ != nullptr) {
    metrics::Shard* m = asleep_metrics_;
    m->idle.fetch_sub(1, std::memory_order_relaxed);
    m->open.fetch_sub(1, std::memory_order_relaxed);
  }
}

bool Connection::can_sleep() const {
  return s_ != nullptr && s_->can_sleep();
}

void Connection::sleep() {
  assert(can_sleep());
  s_->asleep = true;
  asleep_metrics_ = s_->counted_idle ? s_->metrics : nullptr;
  asleep_trusted_ = s_->proxy != nullptr && s_->proxy->client_trusted();
  s_.reset();
}

void Connection::wake(Context& ctx, Peer peer, TimePoint deadline, TimePoint now) {
  assert(asleep());
  s_ = std::make_unique<State>(ctx, std::move(peer), deadline, asleep_trusted_, now);
  asleep_metrics_ = nullptr;
}

Wants Connection::wants() const {
  const State& s = *s_;
  Wants w;
  if (s.done) {
    w.done = true;
    w.close_mode = s.close_mode;
    return w;
  }
  if (s.want_client_read) {
    w.client_data = true;
    if (!s.ctx.driver_owns_input || s.lend_body_read()) {
      w.client_read = {s.in + s.in_end, s.in_size() - s.in_end};
    }
  }
  w.client_write = s.to_client.pending();
  w.client_data_held = s.data_held;
  w.client_shutdown_write = s.shut_wr;
  if (s.proxy) {
    s.proxy->fill_wants(w);
  }
  w.deadline = s.deadline();
  return w;
}

void Connection::on_client_read(std::size_t n, TimePoint now) {
  State& s = *s_;
  s.body_read_lent = false;  // the read into the lent span (if any) is over
  if (n == 0) {
    // EOF. Between requests or while lingering it is the normal end. While a proxied exchange
    // is in flight the client gave up (nginx: "client prematurely closed connection") and the
    // upstream request is abandoned; after a complete echo request it only half-closed.
    if (s.shut_wr) {
      s.finish_if_possible();
    } else if (s.proxy && s.proxy->tunnelling()) {
      s.proxy->on_client_eof(now);
    } else if (s.proxy && s.proxy->active()) {
      s.abort();
    } else if (s.request == State::Request::kIdle && s.to_client.empty()) {
      s.begin_close();
      s.shut_wr = true;
      s.finish_if_possible();
    } else if (s.request == State::Request::kComplete) {
      s.client_eof = true;
      s.keep_alive = false;
    } else {
      s.abort();
    }
    s.update(now);
    return;
  }
  if (s.shut_wr) {
    s.update(now);  // lingering: dropped
    return;
  }
  s.in_end += n;
  if (s.metrics != nullptr) {
    s.metrics->bytes_in.fetch_add(n, std::memory_order_relaxed);
  }
  s.update(now);
}

std::size_t Connection::on_client_data(std::span<const char> bytes, TimePoint now) {
  State& s = *s_;
  s.body_read_lent = false;  // the driver hands its own bytes: no read into a span is in flight
  if (bytes.empty()) {
    return 0;
  }
  if (s.shut_wr) {
    s.update(now);  // lingering: dropped
    return bytes.size();
  }
  s.ext = {bytes.data(), bytes.size()};
  if (s.upgrade_pending || (s.proxy && s.proxy->tunnelling())) {
    s.spill_ext();  // bytes for the tunnel (or ignored): they are kept, not parsed
  }
  s.update(now);
  const std::size_t taken = bytes.size() - s.ext.size();
  s.ext = {};
  if (s.metrics != nullptr) {
    s.metrics->bytes_in.fetch_add(taken, std::memory_order_relaxed);  // the rest comes again
  }
  return taken;
}

bool Connection::holds_buffers() const {
  return s_->in != nullptr || (s_->proxy && s_->proxy->holds_buffer());
}

void Connection::on_client_written(std::size_t n, TimePoint now) {
  State& s = *s_;
  s.exchange_bytes_out += s.written(n);
  if (s.metrics != nullptr) {
    s.metrics->bytes_out.fetch_add(n, std::memory_order_relaxed);
  }
  s.send_deadline = s.to_client.empty() ? kNever : now + s.cfg.send_timeout;
  s.update(now);
}

void Connection::on_client_error(int err, TimePoint now) {
  (void)err;
  State& s = *s_;
  s.count_error(metrics::ErrorKind::kReset);
  s.abort();
  s.update(now);
}

void Connection::on_deadline(TimePoint now) {
  State& s = *s_;
  if (s.delay_deadline <= now) {
    s.on_delay_over();
  }
  if (s.send_deadline <= now) {
    s.send_deadline = kNever;
    s.count_error(metrics::ErrorKind::kTimeout);
    s.abort();  // the client stopped reading
  }
  if (s.client_deadline <= now) {
    s.client_deadline = kNever;
    if (s.shut_wr) {
      s.finish_if_possible();
    } else if (s.request == State::Request::kHead) {
      s.fail(408);
    } else if (s.request == State::Request::kIdle) {
      s.begin_close();
      s.shut_wr = true;
      s.finish_if_possible();
    } else if (s.request == State::Request::kBody) {
      s.fail(408);
    }
  }
  if (s.proxy) {
    s.proxy->on_deadline(now);
  }
  s.update(now);
}

void Connection::on_drain(TimePoint now) {
  State& s = *s_;
  s.draining = true;
  s.keep_alive = false;
  if (s.request == State::Request::kIdle && s.to_client.empty() && !s.closing) {
    s.begin_close();
    s.shut_wr = true;
    s.finish_if_possible();
  }
  s.update(now);
}

bool Connection::idle() const {
  return s_->request == State::Request::kIdle && s_->to_client.empty() && !s_->closing;
}

void Connection::on_upstream_connected(bool reused, TimePoint now) {
  s_->proxy->on_connected(reused, now);
  s_->update(now);
}
void Connection::on_upstream_connect_failed(int err, TimePoint now) {
  s_->proxy->on_connect_failed(err, now);
  s_->update(now);
}
void Connection::on_upstream_read(std::size_t n, TimePoint now) {
  s_->proxy->on_read(n, now);
  s_->update(now);
}
void Connection::on_upstream_written(std::size_t n, TimePoint now) {
  s_->proxy->on_written(n, now);
  s_->update(now);
}
void Connection::on_upstream_error(int err, TimePoint now) {
  s_->proxy->on_error(err, now);
  s_->update(now);
}
void Connection::on_upstream_released(TimePoint now) {
  s_->proxy->on_released(now);
  if (s_->closing && s_->close_mode == CloseMode::kAbort) {
    s_->finish_if_possible();
  }
  s_->update(now);
}

}  // namespace gearbox::core
