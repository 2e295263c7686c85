// The proxy half of a connection (see proxy.hpp). Request bytes flow client -> upstream only
// when the previous upstream write completed; response bytes upstream -> client likewise
// (STYLE.md: backpressure is explicit and pull-based, as h2o's proxy).
#include "server/proxy.hpp"

#include <cerrno>
#include <cstring>

#include "server/balancer.hpp"
#include "server/connection_state.hpp"
#include "server/log.hpp"
#include "server/proxy_rewrite.hpp"
#include "server/routing.hpp"

namespace gearbox::core {
namespace {

// The largest request body (as framed upstream) kept to be sent again to the next server;
// nginx keeps client_body_buffer_size in memory and the rest in a file, gearbox keeps no file.
constexpr std::size_t kReplayBodyMax = 64 * 1024;

}  // namespace

ProxyLeg::ProxyLeg(Connection::State& s, bool client_trusted)
    : s_(s), parser_(s.cfg.limits), client_trusted_(client_trusted) {}

ProxyLeg::~ProxyLeg() {
  give_buffer(s_.ctx.buffers, in_);
}

void ProxyLeg::release_buffer() {
  if (in_ != nullptr && up_ == Up::kNone && in_begin_ == in_end_ && s_.to_client.empty()) {
    give_buffer(s_.ctx.buffers, in_);
    in_ = nullptr;
  }
}

void ProxyLeg::count_upstream(metrics::Counter metrics::UpstreamServerCounters::*counter) {
  if (metrics::Shard* m = s_.metrics; m != nullptr) {
    std::size_t i = metrics::server_index(s_.cfg, group_, server_);
    if (i < metrics::kMaxServers) {
      (m->upstream[i].*counter).fetch_add(1, std::memory_order_relaxed);
    }
  }
}

const UpstreamGroup& ProxyLeg::group() const {
  return s_.cfg.groups[group_];
}

// --- Request side ----------------------------------------------------------------------------

void ProxyLeg::on_request_head(TimePoint now) {
  const http::RequestHead& h = s_.parser.head();
  exchange_ = true;
  tried_ = 0;
  attempts_ = 0;
  first_try_ = now;
  stale_retried_ = false;
  body_held_ = http::is_idempotent(h.method_kind);
  replay_.clear();
  head_queued_ = body_started_ = request_sent_ = request_ended_ = false;
  response_begun_ = response_head_sent_ = response_done_ = upstream_eof_ = false;
  counted_ = false;
  timed_out_ = false;
  response_in_body_ = false;
  connected_at_ = head_at_ = ended_at_ = TimePoint{};
  const RouteMatch* route = s_.ctx.upstreams->router().match(h.target);
  if (route == nullptr) {
    fail_exchange(Router::routable(h.target) ? 404 : 400);
    return;
  }
  group_ = route->group;
  target_.clear();
  Router::write_target(target_, *route, h.target, h.method_kind == http::Method::kOptions);
  parser_.expect(h.method_kind);
  connect_next(now);
}

void ProxyLeg::connect_next(TimePoint now) {
  if (up_ != Up::kNone) {
    retry_pending_ = true;  // the previous connection is being released first
    return;
  }
  const UpstreamGroup& g = group();
  // nginx's proxy_next_upstream_tries / _timeout: the first try always happens.
  const bool out_of_tries = g.next_upstream_tries > 0 && attempts_ >= g.next_upstream_tries;
  const bool out_of_time =
      g.next_upstream_timeout.count() > 0 && now - first_try_ >= g.next_upstream_timeout;
  Upstreams& ups = *s_.ctx.upstreams;
  const std::size_t pick = attempts_ > 0 && (out_of_tries || out_of_time)
                               ? Upstreams::kNone
                               : ups.pick(group_, now, tried_);
  if (pick == Upstreams::kNone) {
    fail_exchange(timed_out_ ? 504 : 502);
    return;
  }
  if (attempts_ > 0) {
    count_upstream(&metrics::UpstreamServerCounters::retries);  // passed on from server_
  }
  ++attempts_;
  server_ = pick;
  tried_ |= std::uint64_t{1} << (server_ % 64);
  endpoint_ = &g.servers[server_].endpoint;
  may_reuse_ = !stale_retried_;
  up_ = Up::kConnecting;
  timer_ = Timer::kConnect;
  deadline_ = now + g.connect_timeout;
}

// The request can be sent again from its start: nothing of its body went upstream, or all of
// it is held in replay_.
bool ProxyLeg::request_replayable() const {
  return !body_started_ || (request_ended_ && body_held_);
}

// After a failure before the response head reached the client: may the request go to another
// server although it was (perhaps) received by this one? Only an idempotent one (RFC 9110
// §9.2.2), as nginx since 1.9.13; the tries and time left are checked by connect_next().
bool ProxyLeg::may_fail_over() const {
  return exchange_ && !response_done_ && !response_head_sent_ &&
         http::is_idempotent(s_.parser.head().method_kind) && request_replayable();
}

void ProxyLeg::send_request_head() {
  const http::RequestHead& h = s_.parser.head();
  const UpstreamGroup& g = group();
  RequestRewrite rw;
  rw.client_address = s_.peer.address;
  rw.client_trusted = client_trusted_;
  // RFC 9112 §3.2.2: the authority of an absolute-form target overrides the received Host.
  // It only names the host: where to connect was chosen by the route, never by the target.
  rw.client_host = Router::authority(h.target);
  std::string_view client_host =
      rw.client_host.empty() ? h.headers.get("Host").value_or("") : rw.client_host;
  rw.host = g.host ? std::string_view(*g.host) : client_host;
  rw.framing = h.framing;
  rw.content_length = h.content_length;
  rw.upgrade = h.upgrade;
  rw.strip_expect = true;  // 100-continue is answered to the client by the core itself
  head_.clear();
  write_upstream_request_head(head_, h, target_, rw);
  to_upstream_.clear();
  to_upstream_.push(head_);
  if (body_started_) {
    // A retry: the body sent to the failed server goes again (request_replayable()).
    to_upstream_.push(replay_);
  }
  head_queued_ = true;
  body_in_queue_ = false;
}

bool ProxyLeg::request_sink_ready() const {
  // Parse more of the client's request only once the upstream is connected and nothing from
  // the client's buffer is still waiting to be written (it would move under the write).
  return up_ == Up::kConnected && head_queued_ && !body_in_queue_ &&
         to_upstream_.bytes() <= head_.size();
}

void ProxyLeg::on_request_body(std::string_view piece, TimePoint now) {
  (void)now;
  if (!exchange_ || response_done_ || up_ != Up::kConnected) {
    return;  // the upstream answered early or is gone: the rest of the body is dropped
  }
  body_started_ = true;
  body_in_queue_ = true;
  const bool chunked = s_.parser.head().framing == http::Framing::kChunked;
  std::string_view header;
  if (chunked) {
    header = http::chunk_header(chunk_, piece.size());
    to_upstream_.push(header);
    to_upstream_.push(piece);
    to_upstream_.push(http::kCrlf);
  } else {
    to_upstream_.push(piece);
  }
  if (body_held_) {
    const std::size_t framed = header.size() + piece.size() + (chunked ? http::kCrlf.size() : 0);
    if (replay_.size() + framed + http::kLastChunk.size() > kReplayBodyMax) {
      body_held_ = false;  // too big to keep: this request will not be sent again
      replay_.clear();
    } else {
      replay_.append(header).append(piece).append(chunked ? http::kCrlf : std::string_view());
    }
  }
  if (timer_ != Timer::kSend) {
    timer_ = Timer::kSend;
    deadline_ = now + group().send_timeout;
  }
}

void ProxyLeg::on_request_end(TimePoint now) {
  request_ended_ = true;
  if (!exchange_ || response_done_) {
    return;
  }
  if (s_.parser.head().framing == http::Framing::kChunked && up_ == Up::kConnected) {
    to_upstream_.push(http::kLastChunk);
    body_started_ = true;
    if (body_held_) {
      replay_.append(http::kLastChunk);
    }
  }
  if (to_upstream_.empty() && up_ == Up::kConnected) {
    request_sent_ = true;
    timer_ = Timer::kRead;
    deadline_ = now + group().read_timeout;
  }
}

void ProxyLeg::on_written(std::size_t n, TimePoint now) {
  to_upstream_.consume(n);
  if (!to_upstream_.empty()) {
    deadline_ = now + group().send_timeout;
    return;
  }
  body_in_queue_ = false;
  if (tunnel_) {
    return;
  }
  if (request_ended_ && !request_sent_) {
    request_sent_ = true;
  }
  if (!response_done_) {
    // Waiting for the upstream now (or still streaming the body: progress either way).
    timer_ = Timer::kRead;
    deadline_ = now + group().read_timeout;
  }
}

// --- Connecting and failing over -------------------------------------------------------------

void ProxyLeg::on_connected(bool reused, TimePoint now) {
  up_ = Up::kConnected;
  connected_at_ = now;
  if (in_ == nullptr) {
    in_ = take_buffer(s_.ctx.buffers);
  }
  reused_ = reused;
  if (!counted_) {
    s_.ctx.upstreams->on_request_start(group_, server_);
    counted_ = true;
  }
  // Per upstream connection: a retried request starts over on the new one.
  in_begin_ = in_end_ = 0;
  upstream_eof_ = false;
  response_begun_ = false;
  response_in_body_ = false;
  request_sent_ = false;
  parser_.reset();  // a failed try may have left part of a response head in it
  parser_.expect(s_.parser.head().method_kind);
  send_request_head();
  timer_ = Timer::kSend;
  deadline_ = now + group().send_timeout;
}

void ProxyLeg::on_connect_failed(int err, TimePoint now) {
  up_ = Up::kNone;
  timer_ = Timer::kNone;
  deadline_ = kNever;
  s_.ctx.upstreams->on_failure(group_, server_, now);
  log_warn("upstream %s: connect failed: %s", endpoint_->text.c_str(), std::strerror(err));
  if (!exchange_) {
    return;
  }
  // Nothing was sent: any request may go to the next server (nginx's proxy_next_upstream
  // error; non-idempotent requests are only held back once sent).
  timed_out_ = false;
  connect_next(now);
}

// The attempt ended before its response was complete. `retryable`: the server failed (reset,
// early close), as opposed to answering nonsense.
void ProxyLeg::upstream_failed(const char* what, int err, bool retryable, TimePoint now) {
  const bool nothing_back = !response_begun_;
  if (endpoint_ != nullptr) {
    log_warn("upstream %s: %s%s%s", endpoint_->text.c_str(), what, err ? ": " : "",
             err ? std::strerror(err) : "");
  }
  release(Release::kDiscard);
  if (tunnel_) {
    return;
  }
  if (response_head_sent_) {
    // Mid-response: never present a truncated response as complete.
    s_.cut(client_framing_ == http::Framing::kUntilClose);
    return;
  }
  // The keep-alive race: a pooled connection the upstream had closed before it saw our
  // request. Retried once on a fresh connection when the request can be sent again; not a
  // try nor a failure of the server (nginx's rule for cached connections).
  const bool stale = nothing_back && reused_;
  if (stale && !stale_retried_ && request_replayable() && exchange_ && !response_done_) {
    stale_retried_ = true;
    retry_pending_ = true;
    --attempts_;
    tried_ &= ~(std::uint64_t{1} << (server_ % 64));
    return;
  }
  timed_out_ = false;
  if (retryable) {
    if (!stale) {
      s_.ctx.upstreams->on_failure(group_, server_, now);
    }
    if (may_fail_over()) {
      retry_pending_ = true;  // the next server, once this connection is released
      return;
    }
  }
  fail_exchange(502);
}

void ProxyLeg::fail_exchange(int status) {
  log_warn("proxy: answering %d for %s %s", status, s_.parser.head().method.c_str(),
           s_.parser.head().target.c_str());
  response_done_ = true;
  exchange_ = false;
  if (up_ != Up::kNone) {
    release(Release::kDiscard);
  }
  s_.handler = Connection::State::Handler::kNone;
  s_.fail(status);
}

void ProxyLeg::release(Release how) {
  if (counted_) {
    s_.ctx.upstreams->on_request_end(group_, server_);
    counted_ = false;
  }
  timer_ = Timer::kNone;
  deadline_ = kNever;
  if (up_ == Up::kNone || up_ == Up::kReleasing) {
    return;
  }
  up_ = Up::kReleasing;
  release_ = how;
  to_upstream_.clear();
  body_in_queue_ = false;
}

void ProxyLeg::on_released(TimePoint now) {
  up_ = Up::kNone;
  release_ = Release::kNone;
  in_begin_ = in_end_ = 0;
  if (retry_pending_) {
    retry_pending_ = false;
    connect_next(now);
  }
}

void ProxyLeg::abandon() {
  exchange_ = false;
  retry_pending_ = false;
  if (up_ != Up::kNone) {
    release(Release::kDiscard);
  }
}

void ProxyLeg::on_client_eof(TimePoint now) {
  (void)now;
  client_eof_ = true;
}

// --- Response side ---------------------------------------------------------------------------

void ProxyLeg::on_read(std::size_t n, TimePoint now) {
  if (n == 0) {
    upstream_eof_ = true;
    if (tunnel_) {
      return;
    }
    if (!response_begun_) {
      upstream_failed("closed the connection before responding", 0, true, now);
      return;
    }
    return;  // handled in step(): feed_eof once the buffered bytes are parsed
  }
  response_begun_ = true;
  in_begin_ = 0;
  in_end_ = n;
  if (!tunnel_) {
    timer_ = Timer::kRead;
    deadline_ = now + group().read_timeout;
  }
}

void ProxyLeg::on_error(int err, TimePoint now) {
  if (tunnel_) {
    release(Release::kDiscard);
    s_.begin_close();
    return;
  }
  upstream_failed("error", err, true, now);
}

bool ProxyLeg::step(TimePoint now) {
  if (tunnel_) {
    return step_tunnel(now);
  }
  // Parse on only once the client got what was queued, except while what is queued was queued
  // by this very update from the response head on (not lent yet): the body bytes that came in
  // the same read join the head, so head and body go out in one write.
  if (up_ != Up::kConnected || !exchange_ || response_done_ ||
      (!s_.to_client.empty() && !(output_unlent_ && s_.to_client.free_pieces() >= 4))) {
    return false;
  }
  if (in_begin_ == in_end_ && upstream_eof_) {
    http::ParseStep st = parser_.feed_eof();
    if (st.kind == http::ParseStep::Kind::kEnd) {
      on_response_end(now);
    } else {
      upstream_failed("closed the connection mid-response", 0, true, now);
    }
    return true;
  }
  if (in_begin_ == in_end_ && !response_in_body_) {
    return false;
  }
  std::string_view input(in_ + in_begin_, in_end_ - in_begin_);
  http::ParseStep st = parser_.feed(input);
  in_begin_ += st.consumed;
  if (input.empty() && st.kind == http::ParseStep::Kind::kNeedMore) {
    return false;  // a head without a body would have ended here: more bytes are needed
  }
  if (!st.body.empty() && response_head_sent_) {
    if (client_framing_ == http::Framing::kChunked) {
      output_unlent_ = false;  // resp_chunk_ is in the queue: no second chunk may join
      s_.to_client.push(http::chunk_header(resp_chunk_, st.body.size()));
      s_.to_client.push(st.body);
      s_.to_client.push(http::kCrlf);
    } else {
      s_.to_client.push(st.body);
    }
  }
  switch (st.kind) {
    case http::ParseStep::Kind::kNeedMore:
    case http::ParseStep::Kind::kData:
      break;
    case http::ParseStep::Kind::kHead:
      response_in_body_ = true;
      on_response_head(now);
      break;
    case http::ParseStep::Kind::kEnd:
      response_in_body_ = false;
      if (parser_.head().status < 200) {
        parser_.expect(
            s_.parser.head().method_kind);  // interim response dropped; the final follows
        break;
      }
      on_response_end(now);
      break;
    case http::ParseStep::Kind::kUpgrade: {
      if (parser_.head().status == 101 && s_.parser.head().upgrade) {
        tunnel_ = true;
        timer_ = Timer::kNone;
        deadline_ = kNever;
        s_.response_complete = true;
        s_.keep_alive = false;
      } else {
        upstream_failed("switched protocols unasked", 0, false, now);
      }
      break;
    }
    case http::ParseStep::Kind::kError:
      upstream_failed("sent an invalid response", 0, false, now);
      break;
  }
  return true;
}

void ProxyLeg::on_response_head(TimePoint now) {
  const http::ResponseHead& r = parser_.head();
  s_.ctx.upstreams->on_success(group_, server_);  // it answers: passive health resets
  if (r.status < 200 && r.status != 101) {
    return;  // 1xx: dropped (we answered 100-continue to the client ourselves)
  }
  head_at_ = now;
  if (metrics::Shard* m = s_.metrics; m != nullptr) {
    std::size_t i = metrics::server_index(s_.cfg, group_, server_);
    if (i < metrics::kMaxServers) {
      m->upstream[i].head_latency.observe(now - connected_at_);
    }
  }
  const http::RequestHead& req = s_.parser.head();
  ResponseRewrite rw;
  const bool head_req = req.method_kind == http::Method::kHead;
  const bool http10 = req.version_minor == 0;
  rw.client_http10 = http10;
  if (r.status == 101) {
    rw.upgrade = true;
    rw.framing = http::Framing::kNone;
  } else if (!http::response_has_body(head_req, r.status)) {
    rw.framing = http::Framing::kNone;
  } else if (r.framing == http::Framing::kLength) {
    rw.framing = http::Framing::kLength;
    rw.content_length = r.content_length;
  } else if (!http10) {
    rw.framing = http::Framing::kChunked;  // chunked or until-close: re-framed as chunks
  } else {
    rw.framing = http::Framing::kUntilClose;
    s_.keep_alive = false;
  }
  rw.close = !s_.keep_alive && r.status != 101;
  client_framing_ = rw.framing;
  s_.client_head.clear();
  s_.fixed_valid = false;
  write_client_response_head(s_.client_head, r, rw);
  s_.response_head_size = s_.client_head.size();
  s_.response_status = r.status;
  s_.to_client.push(s_.client_head);
  output_unlent_ = r.status != 101;
  s_.response_started = true;
  response_head_sent_ = true;
}

void ProxyLeg::on_response_end(TimePoint now) {
  ended_at_ = now;
  if (client_framing_ == http::Framing::kChunked) {
    s_.to_client.push(http::kLastChunk);
  }
  response_done_ = true;
  exchange_ = false;
  s_.response_complete = true;
  const http::ResponseHead& r = parser_.head();
  const bool reusable = request_sent_ && r.keep_alive && r.framing != http::Framing::kUntilClose &&
                        in_begin_ == in_end_ && !upstream_eof_;
  release(reusable ? Release::kReuse : Release::kDiscard);
  if (!request_ended_) {
    // The upstream answered before the request body was read: the rest of it is not worth
    // reading, the connection closes after this response.
    s_.keep_alive = false;
    s_.begin_close();
  }
}

// --- Tunnel (after 101 Switching Protocols) --------------------------------------------------

bool ProxyLeg::step_tunnel(TimePoint now) {
  (void)now;
  bool moved = false;
  if (up_ == Up::kConnected && to_upstream_.empty() && s_.in_begin < s_.in_end) {
    to_upstream_.push({s_.in + s_.in_begin, s_.in_end - s_.in_begin});
    s_.in_begin = s_.in_end;
    body_in_queue_ = true;
    moved = true;
  }
  if (s_.to_client.empty() && in_begin_ < in_end_) {
    s_.to_client.push({in_ + in_begin_, in_end_ - in_begin_});
    in_begin_ = in_end_;
    moved = true;
  }
  if (s_.to_client.empty() && in_begin_ == in_end_) {
    in_begin_ = in_end_ = 0;
  }
  // Either side's end ends the tunnel once what it sent has been passed on.
  if (upstream_eof_ && in_begin_ == in_end_ && s_.to_client.empty() && !s_.closing) {
    release(Release::kDiscard);
    s_.begin_close();
    moved = true;
  }
  if (client_eof_ && to_upstream_.empty() && up_ == Up::kConnected) {
    release(Release::kDiscard);
    s_.begin_close();
    moved = true;
  }
  return moved;
}

bool ProxyLeg::wants_client_read() const {
  if (tunnel_) {
    return !client_eof_ && up_ == Up::kConnected && to_upstream_.empty() &&
           s_.in_begin == s_.in_end;
  }
  // While the response is awaited, watch the client so that its going away is noticed
  // (nginx: "client prematurely closed connection"); what it sends is kept for later.
  return active() && request_ended_ && !client_eof_ && !body_in_queue_;
}

// --- Wants and timers ------------------------------------------------------------------------

void ProxyLeg::fill_wants(Wants& w) const {
  switch (up_) {
    case Up::kNone:
      break;
    case Up::kConnecting:
      w.upstream_connect = endpoint_;
      w.upstream_may_reuse = may_reuse_;
      break;
    case Up::kConnected:
      w.upstream_write = to_upstream_.pending();
      if ((tunnel_ && !upstream_eof_ && s_.to_client.empty() && in_begin_ == in_end_) ||
          (!tunnel_ && exchange_ && !response_done_ && !upstream_eof_ && in_begin_ == in_end_ &&
           s_.to_client.empty())) {
        // in_begin_ == in_end_: restart at 0. The buffer comes from the client's pool.
        w.upstream_read = {in_, buffer_size(s_.ctx.buffers)};
      }
      break;
    case Up::kReleasing:
      w.release_upstream = release_;
      break;
  }
}

void ProxyLeg::on_deadline(TimePoint now) {
  if (deadline_ > now) {
    return;
  }
  const Timer t = timer_;
  timer_ = Timer::kNone;
  deadline_ = kNever;
  switch (t) {
    case Timer::kNone:
      break;
    case Timer::kConnect:
      s_.ctx.upstreams->on_failure(group_, server_, now);
      log_warn("upstream %s: connect timed out", endpoint_->text.c_str());
      release(Release::kDiscard);
      timed_out_ = true;
      retry_pending_ = exchange_;  // the next server, once this attempt is released
      break;
    case Timer::kSend:
    case Timer::kRead:
      log_warn("upstream %s: %s timed out", endpoint_->text.c_str(),
               t == Timer::kSend ? "send" : "read");
      release(Release::kDiscard);
      if (response_head_sent_) {
        s_.cut(client_framing_ == http::Framing::kUntilClose);
        break;
      }
      // A server that does not take or answer a whole request counts as failed (passive
      // health: the next requests skip it); a read timeout while the client is still sending
      // its body may be the client's doing and does not.
      if (t == Timer::kSend || request_sent_) {
        s_.ctx.upstreams->on_failure(group_, server_, now);
      }
      timed_out_ = true;
      if (may_fail_over()) {
        retry_pending_ = true;
      } else {
        fail_exchange(504);
      }
      break;
  }
}

void ProxyLeg::describe(AccessRecord& r) const {
  if (endpoint_ == nullptr || attempts_ == 0) {
    return;
  }
  r.upstream = endpoint_->text;
  auto since_first_try = [this](TimePoint t) {
    return t == TimePoint{} ? std::chrono::nanoseconds(-1) : t - first_try_;
  };
  r.upstream_connect = since_first_try(connected_at_);
  r.upstream_header = since_first_try(head_at_);
  r.upstream_response = since_first_try(ended_at_);
}

}  // namespace gearbox::core
