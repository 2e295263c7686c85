// An in-memory driver for core::Connection: byte scripts in, bytes out, a fake clock, a fake
// upstream. No sockets, no sleeps: unit tests of the core run through this.
#pragma once

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <vector>

#if defined(GEARBOX_FUZZ_HARNESS)
// The fuzz targets have no GoogleTest: a broken driver contract aborts (libFuzzer reports it).
#include <cstdlib>
#include <iostream>
namespace gearbox::test::detail {
struct AbortAfter {
  ~AbortAfter() {
    std::cerr << std::endl;
    std::abort();
  }
  template <class T>
  AbortAfter& operator<<(const T& v) {
    std::cerr << v;
    return *this;
  }
};
}  // namespace gearbox::test::detail
#define GEARBOX_HARNESS_FAILURE() \
  ::gearbox::test::detail::AbortAfter {}
#else
#include <gtest/gtest.h>
#define GEARBOX_HARNESS_FAILURE() ADD_FAILURE()
#endif

#include "server/balancer.hpp"
#include "server/buffer_pool.hpp"
#include "server/config.hpp"
#include "server/connection.hpp"

namespace gearbox::test {

class CoreHarness {
 public:
  // `owned_input`: hand client bytes over with on_client_data() (a ring driver's provided
  // buffers) instead of reading into the span the core lends (a blocking pump). The bytes handed
  // over are scribbled over right after each call, so a core that kept pointing into them
  // answers garbage.
  // `buffer_size`: of the input buffers the core takes from the harness's pool.
  // `peer_addr`: the client's address, read while the connection is built (not when it is woken:
  // the harness wakes it with the address text alone, as the ring driver does).
  explicit CoreHarness(core::Config cfg = {}, bool owned_input = false,
                       std::size_t buffer_size = core::BufferPool::kSize,
                       const sockaddr_storage* peer_addr = nullptr)
      : cfg_(std::move(cfg)), owned_input_(owned_input), buffers_(256, buffer_size) {
    ctx_.config = &cfg_;
    ctx_.driver_owns_input = owned_input;
    ctx_.buffers = &buffers_;
    if (cfg_.mode == core::Mode::kProxy) {
      upstreams_ = std::make_unique<core::Upstreams>(cfg_);
      ctx_.upstreams = upstreams_.get();
    }
    peer_.address = "127.0.0.1";
    peer_.addr = peer_addr;
    conn_ = std::make_unique<core::Connection>(ctx_, peer_, now_);
  }

  // Bytes the client sends; `piece` caps each read (0 = as much as fits).
  void send(std::string bytes) { input_ += bytes; }
  void send_eof() { eof_ = true; }
  std::size_t piece = 0;
  std::size_t write_piece = 0;  // caps each write (0 = all)
  // With owned input: hand bytes over with on_client_data() even when the core lends a span
  // mid-body (the contract allows either); false: read into the span then.
  bool hand_over_mid_body = false;
  // Bytes the client takes in all before it stops reading: past it a wanted write cannot
  // progress (EAGAIN: nothing is reported) until the window is raised. Default: never full.
  std::size_t client_window = static_cast<std::size_t>(-1);

  // Bytes the upstream answers with, and whether it then closes.
  std::string upstream_script;
  bool upstream_eof = false;
  bool upstream_refuses = false;  // connect fails
  // The first N connections come from the pool (reused) and turn out closed by the upstream:
  // EOF before any byte (the keep-alive race).
  int stale_connections = 0;
  // Upstreams (Endpoint::text) that accept and never answer (a black hole), or that reset the
  // connection once the request was written; the others answer upstream_script.
  std::vector<std::string> silent_upstreams;
  std::vector<std::string> resetting_upstreams;

  // With owned input: keep each handed-over piece unchanged while the core's writes point into
  // it (Context::driver_keeps_data, as the ring driver does), then scribble over it and free it
  // once wants().client_data_held is false: a core that wrote from it later answers garbage
  // (or ASan reports the use after free).
  void keep_handed_data() { ctx_.driver_keeps_data = true; }
  // Writes made while the core said it held handed-over bytes, and of those, the ones with a
  // piece pointing into them (zero copy).
  int held_writes() const { return held_writes_; }
  int writes_from_handed_data() const { return writes_from_handed_data_; }

  // Put the connection to sleep whenever it can (Connection::can_sleep) once it waits for
  // input, as the ring driver does, and wake it for the next event.
  bool sleep_when_idle = false;
  int sleeps() const { return sleeps_; }

  // Runs the connection until it waits for input or time.
  void run() {
    wake_if_asleep();
    for (int guard = 0; guard < 10'000'000; ++guard) {
      core::Wants w = conn_->wants();
      if (!w.client_data_held || w.done) {
        release_kept();
      }
      if (w.done) {
        closed_ = true;
        close_mode_ = w.close_mode;
        return;
      }
      if (w.client_shutdown_write) {
        shut_wr_ = true;
      }
      if (!w.client_write.empty() && output_.size() < client_window) {
        std::size_t cap = client_window - output_.size();
        if (write_piece != 0) {
          cap = std::min(cap, write_piece);
        }
        std::size_t total = 0;
        if (w.client_data_held) {
          ++held_writes_;
          writes_from_handed_data_ += points_into_kept(w.client_write) ? 1 : 0;
        }
        for (const iovec& v : w.client_write) {
          std::size_t n = std::min(v.iov_len, cap - total);
          output_.append(static_cast<const char*>(v.iov_base), n);
          total += n;
          if (total == cap) {
            break;
          }
        }
        ++client_writes_;
        conn_->on_client_written(total, now_);
        continue;
      }
      if (w.release_upstream != core::Release::kNone) {
        ++releases_;
        if (w.release_upstream == core::Release::kReuse) {
          ++reuses_;
        }
        upstream_open_ = false;
        conn_->on_upstream_released(now_);
        continue;
      }
      if (w.upstream_connect != nullptr) {
        ++connects_;
        endpoint_ = w.upstream_connect->text;
        ++connects_to_[endpoint_];
        if (upstream_refuses) {
          conn_->on_upstream_connect_failed(ECONNREFUSED, now_);
        } else {
          upstream_open_ = true;
          up_pos_ = 0;
          stale_ = stale_connections > 0;
          if (stale_) {
            --stale_connections;
          }
          conn_->on_upstream_connected(stale_, now_);
        }
        continue;
      }
      if (!w.upstream_write.empty()) {
        std::size_t total = 0;
        for (const iovec& v : w.upstream_write) {
          upstream_received_.append(static_cast<const char*>(v.iov_base), v.iov_len);
          received_by_[endpoint_].append(static_cast<const char*>(v.iov_base), v.iov_len);
          total += v.iov_len;
        }
        conn_->on_upstream_written(total, now_);
        continue;
      }
      if (w.client_data && in_pos_ < input_.size()) {
        std::size_t n = input_.size() - in_pos_;
        if (piece != 0) {
          n = std::min(n, piece);
        }
        if (owned_input_ && !w.client_read.empty() && conn_->idle()) {
          GEARBOX_HARNESS_FAILURE()
              << "a span lent between requests although the driver owns its input";
        }
        if (owned_input_ && !w.client_read.empty() && !hand_over_mid_body) {
          ++lent_reads_;  // mid-body: read into the core's span, as the ring driver does
        } else if (owned_input_) {
          std::string& bytes = ctx_.driver_keeps_data ? kept_.emplace_back() : scratch_;
          bytes.assign(input_, in_pos_, n);
          std::size_t taken = conn_->on_client_data(bytes, now_);
          if (!ctx_.driver_keeps_data) {
            std::fill(scratch_.begin(), scratch_.end(), '\xAA');
          }
          if (taken == 0 || taken > n) {
            GEARBOX_HARNESS_FAILURE() << "on_client_data took " << taken << " of " << n;
            return;
          }
          in_pos_ += taken;
          continue;
        }
        n = std::min(n, w.client_read.size());
        std::memcpy(w.client_read.data(), input_.data() + in_pos_, n);
        in_pos_ += n;
        conn_->on_client_read(n, now_);
        continue;
      }
      if (!w.upstream_read.empty() && listed(resetting_upstreams)) {
        conn_->on_upstream_error(ECONNRESET, now_);
        continue;
      }
      // A silent upstream sends nothing, ever: only a deadline moves its connection on.
      const bool silent = listed(silent_upstreams) && !stale_;
      if (!w.upstream_read.empty() && !silent && stale_) {
        stale_ = false;
        conn_->on_upstream_read(0, now_);
        continue;
      }
      if (!w.upstream_read.empty() && !silent && up_pos_ < upstream_script.size()) {
        std::size_t n = std::min(w.upstream_read.size(), upstream_script.size() - up_pos_);
        std::memcpy(w.upstream_read.data(), upstream_script.data() + up_pos_, n);
        up_pos_ += n;
        conn_->on_upstream_read(n, now_);
        continue;
      }
      if (!w.upstream_read.empty() && !silent && upstream_eof &&
          up_pos_ == upstream_script.size() && !upstream_eof_sent_) {
        upstream_eof_sent_ = true;
        conn_->on_upstream_read(0, now_);
        continue;
      }
      if (w.client_data && eof_ && !eof_sent_) {
        eof_sent_ = true;
        conn_->on_client_read(0, now_);
        continue;
      }
      if (sleep_when_idle && conn_->can_sleep()) {
        asleep_deadline_ = conn_->wants().deadline;
        conn_->sleep();
        ++sleeps_;
      }
      return;
    }
  }

  // Moves the fake clock and reports the deadline when it passed.
  void advance(core::Duration d) {
    now_ += d;
    wake_if_asleep();
    if (conn_->wants().deadline <= now_) {
      conn_->on_deadline(now_);
    }
    run();
  }

  core::TimePoint deadline() const {
    return conn_->asleep() ? asleep_deadline_ : conn_->wants().deadline;
  }
  core::TimePoint now() const { return now_; }
  const std::string& output() const { return output_; }
  const std::string& upstream_received() const { return upstream_received_; }
  bool closed() const { return closed_; }
  bool shut_wr() const { return shut_wr_; }
  core::CloseMode close_mode() const { return close_mode_; }
  int connects() const { return connects_; }
  int connects_to(const std::string& endpoint) const {
    auto it = connects_to_.find(endpoint);
    return it == connects_to_.end() ? 0 : it->second;
  }
  std::string received_by(const std::string& endpoint) const {
    auto it = received_by_.find(endpoint);
    return it == received_by_.end() ? std::string() : it->second;
  }
  int reuses() const { return reuses_; }
  core::Connection& conn() {
    wake_if_asleep();
    return *conn_;
  }
  bool asleep() const { return conn_->asleep(); }
  // The connection's context (it is read at each event: e.g. set config_epoch here).
  core::Context& context() { return ctx_; }
  int client_writes() const { return client_writes_; }
  int lent_reads() const { return lent_reads_; }  // owned input: reads into a lent span
  // Input buffers given back to the pool and not taken again.
  std::size_t free_buffers() const { return buffers_.free_count(); }

 private:
  void wake_if_asleep() {
    if (conn_->asleep()) {
      conn_->wake(ctx_, core::Peer{peer_.address, nullptr}, asleep_deadline_, now_);
    }
  }
  void release_kept() {
    for (std::string& bytes : kept_) {
      std::fill(bytes.begin(), bytes.end(), '\xAA');
    }
    kept_.clear();
  }
  bool points_into_kept(std::span<const iovec> iov) const {
    for (const iovec& v : iov) {
      const char* p = static_cast<const char*>(v.iov_base);
      for (const std::string& bytes : kept_) {
        if (p >= bytes.data() && p < bytes.data() + bytes.size()) {
          return true;
        }
      }
    }
    return false;
  }
  bool listed(const std::vector<std::string>& endpoints) const {
    return std::find(endpoints.begin(), endpoints.end(), endpoint_) != endpoints.end();
  }

  core::Config cfg_;
  core::Context ctx_;
  core::Peer peer_;
  std::unique_ptr<core::Upstreams> upstreams_;
  bool owned_input_ = false;
  core::BufferPool buffers_;  // outlives conn_
  std::string scratch_;
  std::list<std::string> kept_;  // handed over, kept for the core (keep_handed_data)
  core::TimePoint now_ = core::TimePoint{} + std::chrono::hours(1);
  std::unique_ptr<core::Connection> conn_;
  std::string input_;
  std::size_t in_pos_ = 0;
  bool eof_ = false;
  bool eof_sent_ = false;
  std::string output_;
  std::string upstream_received_;
  std::size_t up_pos_ = 0;
  bool upstream_eof_sent_ = false;
  bool upstream_open_ = false;
  bool stale_ = false;
  bool closed_ = false;
  bool shut_wr_ = false;
  core::CloseMode close_mode_ = core::CloseMode::kGraceful;
  int connects_ = 0;
  std::string endpoint_;  // of the upstream connection open now
  std::map<std::string, int> connects_to_;
  std::map<std::string, std::string> received_by_;
  int releases_ = 0;
  int reuses_ = 0;
  int client_writes_ = 0;
  int lent_reads_ = 0;
  int held_writes_ = 0;
  int writes_from_handed_data_ = 0;
  int sleeps_ = 0;
  core::TimePoint asleep_deadline_ = core::kNever;
};

}  // namespace gearbox::test
