// The proxy half of a connection: one upstream exchange at a time, relayed both ways with
// backpressure, plus the tunnel after an Upgrade. Decides routing, retries, 502/504 and reuse;
// the driver only opens, reads, writes and releases the upstream socket.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "http/parser.hpp"
#include "http/serializer.hpp"
#include "server/access_log.hpp"
#include "server/connection.hpp"
#include "server/metrics.hpp"
#include "server/out_queue.hpp"

namespace gearbox::core {

class ProxyLeg {
 public:
  // `client_trusted`: the peer is one of the configured trusted proxies.
  ProxyLeg(Connection::State& s, bool client_trusted);
  ~ProxyLeg();

  // Driven by the client half.
  bool step(TimePoint now);  // one move; false when nothing can happen until an event
  bool request_sink_ready() const;
  void on_request_head(TimePoint now);
  void on_request_body(std::string_view piece, TimePoint now);
  void on_request_end(TimePoint now);
  void on_client_eof(TimePoint now);
  bool exchange_finished() const { return response_done_; }
  bool wants_client_read() const;  // read the client although no request is being parsed
  bool active() const { return exchange_ && !response_done_; }
  bool tunnelling() const { return tunnel_; }
  // A queued upstream write points into the client's input buffer.
  bool uses_client_buffer() const { return body_in_queue_ || (tunnel_ && !to_upstream_.empty()); }
  bool holds_buffer() const { return in_ != nullptr; }
  // Gives the upstream input buffer back once no upstream connection is held and nothing queued
  // for the client points into it.
  void release_buffer();
  // The wants are about to lend the queued output: nothing may join it any more.
  void seal_output() { output_unlent_ = false; }
  void abandon();  // the client side failed: drop the upstream connection
  bool released() const { return up_ == Up::kNone; }
  bool client_trusted() const { return client_trusted_; }
  void fill_wants(Wants& w) const;
  TimePoint deadline() const { return deadline_; }
  void on_deadline(TimePoint now);
  // The upstream and its timings for the exchange's access-log line (nothing when none was
  // tried).
  void describe(AccessRecord& r) const;

  // Upstream events.
  void on_connected(bool reused, TimePoint now);
  void on_connect_failed(int err, TimePoint now);
  void on_read(std::size_t n, TimePoint now);
  void on_written(std::size_t n, TimePoint now);
  void on_error(int err, TimePoint now);
  void on_released(TimePoint now);

 private:
  enum class Up : std::uint8_t { kNone, kConnecting, kConnected, kReleasing };

  void connect_next(TimePoint now);
  void send_request_head();
  void upstream_failed(const char* what, int err, bool retryable, TimePoint now);
  bool may_fail_over() const;
  void fail_exchange(int status);
  void release(Release how);
  void on_response_head(TimePoint now);
  void on_response_end(TimePoint now);
  bool step_tunnel(TimePoint now);
  bool request_replayable() const;
  const UpstreamGroup& group() const;
  void count_upstream(metrics::Counter metrics::UpstreamServerCounters::*counter);

  Connection::State& s_;
  http::ResponseParser parser_;
  const bool client_trusted_;  // the peer is a trusted proxy (its X-Forwarded-For is kept)
  char* in_ = nullptr;         // upstream input buffer, held while an upstream connection is
  std::size_t in_begin_ = 0;
  std::size_t in_end_ = 0;

  Up up_ = Up::kNone;
  Release release_ = Release::kNone;
  const Endpoint* endpoint_ = nullptr;
  bool may_reuse_ = true;
  bool reused_ = false;

  // The exchange in progress.
  bool exchange_ = false;
  std::size_t group_ = 0;
  std::size_t server_ = 0;
  std::uint64_t tried_ = 0;  // servers of the group already tried for this request
  int attempts_ = 0;         // servers tried (next_upstream_tries), the keep-alive retry aside
  TimePoint first_try_{};    // when the first was (next_upstream_timeout)
  // When this request's connection became ready, its response head arrived and the response
  // ended (TimePoint{} = not yet), since first_try_: the access log's timings.
  TimePoint connected_at_{};
  TimePoint head_at_{};
  TimePoint ended_at_{};
  bool stale_retried_ = false;
  bool counted_ = false;  // on_request_start was reported to the balancer
  std::string target_;    // origin-form target after routing
  bool head_queued_ = false;
  bool body_started_ = false;  // body bytes were queued upstream: replay needs replay_
  // An idempotent request keeps a copy of the body it sent (framed as sent, up to
  // kReplayBodyMax), so that it can go to the next server after a failure (RFC 9110 §9.2.2).
  bool body_held_ = false;
  std::string replay_;
  bool request_sent_ = false;    // the whole request was written upstream
  bool request_ended_ = false;   // the client request was entirely parsed
  bool response_begun_ = false;  // a byte of the response arrived
  bool response_head_sent_ = false;
  bool output_unlent_ = false;  // the queued response head (+ body) is not lent yet: more may join
  bool response_done_ = false;
  bool upstream_eof_ = false;
  http::Framing client_framing_ = http::Framing::kNone;
  bool tunnel_ = false;
  bool client_eof_ = false;
  bool retry_pending_ = false;     // connect again once the failed connection is released
  bool timed_out_ = false;         // the last failure was a timeout: 504 rather than 502
  bool response_in_body_ = false;  // the response head was parsed; feed even without bytes

  OutQueue to_upstream_;
  bool body_in_queue_ = false;  // to_upstream_ points into the client's buffer
  std::string head_;            // request head sent upstream
  char chunk_[http::kChunkHeaderMax];
  char resp_chunk_[http::kChunkHeaderMax];

  enum class Timer : std::uint8_t { kNone, kConnect, kSend, kRead };
  Timer timer_ = Timer::kNone;
  TimePoint deadline_ = kNever;
};

}  // namespace gearbox::core
