// The state behind core::Connection, shared by its client half (connection.cpp) and its proxy
// half (proxy.cpp). Private to the core: nothing outside server/ includes it.
#pragma once

#include <algorithm>
#include <cassert>
#include <cstring>
#include <memory>
#include <optional>
#include <string>

#include "http/error.hpp"
#include "http/parser.hpp"
#include "http/serializer.hpp"
#include "server/access_log.hpp"
#include "server/buffer_pool.hpp"
#include "server/connection.hpp"
#include "server/cpu_burn.hpp"
#include "server/echo.hpp"
#include "server/http_date.hpp"
#include "server/log.hpp"
#include "server/metrics.hpp"
#include "server/out_queue.hpp"
#include "server/proxy.hpp"
#include "server/proxy_rewrite.hpp"

namespace gearbox::core {

// After the last response of a connection, how long unread input is drained before the close
// (nginx's lingering close): a close with unread data would send RST and could destroy the
// response in flight (RFC 9112 §9.6).
inline constexpr Duration kLingerTime{2'000};
inline constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

// The client half. The proxy half (ProxyLeg) is a member and reaches back through `conn`.
struct Connection::State {
  State(Context& c, Peer p, TimePoint now) : State(c, std::move(p), std::nullopt) {
    // The first request's head must arrive within the header timeout of the accept (nginx's
    // client_header_timeout).
    client_deadline = now + cfg.header_timeout;
    if (metrics != nullptr) {
      metrics->open.fetch_add(1, std::memory_order_relaxed);
      set_idle(true);
    }
    update(now);
  }
  // A connection woken from sleep (Connection::wake): idle at a request boundary, already
  // counted open and idle, its idle deadline still running, its peer trusted or not as it was
  // found when the connection was accepted.
  State(Context& c, Peer p, TimePoint idle_deadline, bool peer_trusted, TimePoint now)
      : State(c, std::move(p), peer_trusted) {
    client_deadline = idle_deadline;
    counted_idle = metrics != nullptr;
    update(now);
  }
  // An exchange cut short (reset, abort, client gone) still gets its access-log line.
  ~State() {
    end_exchange(last_now);
    if (metrics != nullptr && !asleep) {
      set_idle(false);
      metrics->open.fetch_sub(1, std::memory_order_relaxed);
    }
    give_buffer(ctx.buffers, in);
  }
  State(const State&) = delete;
  State& operator=(const State&) = delete;

 private:
  // What both constructors build alike. The trusted-proxy check reads peer.addr when no
  // verdict is given.
  State(Context& c, Peer p, std::optional<bool> peer_trusted)
      : ctx(c),
        cfg(*c.config),
        peer(std::move(p)),
        parser(cfg.limits),
        proxy(cfg.mode == Mode::kProxy
                  ? std::make_unique<ProxyLeg>(
                        *this, peer_trusted ? *peer_trusted
                                            : peer.addr != nullptr &&
                                                  is_trusted(*peer.addr, cfg.trusted_proxies))
                  : nullptr) {}

 public:
  // --- What is happening on the client side --------------------------------------------------
  enum class Request : std::uint8_t {
    kIdle,      // between requests: nothing of the next one received
    kHead,      // part of a head received
    kBody,      // head done, body being read
    kComplete,  // the whole request was parsed; the next one waits for this exchange's end
  };
  enum class Handler : std::uint8_t { kNone, kEchoBody, kDelay, kProxy };

  Context& ctx;
  const Config& cfg;
  Peer peer;
  http::RequestParser parser;
  // The input buffer, from ctx.buffers, held only while it has bytes to keep (see
  // release_input()); null otherwise.
  char* in = nullptr;
  std::size_t in_begin = 0;  // first unparsed byte
  std::size_t in_end = 0;    // end of the bytes read
  // Bytes on_client_data() is handing over (the driver's memory, valid during that call only):
  // parsed in place while a head is parsed, copied into `in` (spill_ext) before anything could
  // point into them (a body piece) and before the call returns.
  std::string_view ext;
  // The free end of `in` was offered as Wants::client_read to a driver that owns its input
  // (mid-body: lend_body_read()). The driver may have a read in flight into it, so `in` is kept
  // (never given back, never moved) until that read is reported: on_client_read() (or
  // on_client_data(), the driver's sign that it took no span) clears it.
  bool body_read_lent = false;
  // A queued write points into bytes on_client_data() handed over (ctx.driver_keeps_data: an
  // echoed body piece written from the driver's memory); cleared once to_client is empty.
  bool data_held = false;

  Request request = Request::kIdle;
  Handler handler = Handler::kNone;
  bool response_started = false;   // a byte of this exchange's response was queued
  bool response_complete = false;  // this exchange's response is entirely queued
  bool keep_alive = true;          // this exchange may be followed by another
  bool upgrade_pending = false;    // the parser saw an upgrade: the stream is no longer HTTP
  bool continue_pending = false;   // 100 Continue owed before the first body read
  bool draining = false;
  bool client_eof = false;         // the client half-closed after a complete request
  bool echo_head_pending = false;  // the echo's 200 head is built but not yet queued
  int response_status = 0;         // for the access log
  TimePoint last_now{};            // the time of the event being handled (for Date)

  // The exchange being served, for its access-log line: from its first byte to its end.
  bool exchange_open = false;  // a request began and its line is not written yet
  TimePoint exchange_start{};
  std::uint64_t exchange_bytes_out = 0;  // bytes written to the client since it began
  std::size_t response_head_size = 0;    // of those, the response head's

  // This thread's metric shard (null when no arena is installed), and whether this connection
  // is counted in its idle gauge.
  metrics::Shard* metrics = metrics::local();
  bool counted_idle = false;
  bool asleep = false;  // freed by Connection::sleep(): the gauges keep counting it

  // Idle at a request boundary and holding nothing but this state (Connection::can_sleep).
  bool can_sleep() const {
    return request == Request::kIdle && want_client_read && !closing && !done && !draining &&
           in == nullptr && to_client.empty() && !upgrade_pending && !client_eof &&
           !continue_pending && !exchange_open && send_deadline == kNever &&
           delay_deadline == kNever && keep_alive && !superseded() &&
           (!proxy || (proxy->released() && !proxy->holds_buffer() && !proxy->active() &&
                       proxy->deadline() == kNever));
  }

  OutQueue to_client;
  // Pipelining: a response the core makes whole (respond_text, respond_echo_head) is copied
  // into `batch` while more requests wait in the input, instead of being lent alone, and the
  // batch is lent as one write when the parse stops (the end of update) or something else is
  // queued: sixteen pipelined requests in one read are one write, not sixteen. Bounded by
  // kBatchMax; never in proxy mode. While lent (batch_unwritten > 0) it is not appended to.
  static constexpr std::size_t kBatchMax = 16 * 1024;
  std::string batch;
  std::size_t batch_unwritten = 0;  // bytes of the lent batch not written yet
  std::string client_head;          // response head (or whole small response) being written
  // What shapes a small fixed response (respond_text). While client_head holds the one built
  // for `fixed` (fixed_valid), the same answer within the same Date second is reused as is;
  // whoever else writes client_head clears fixed_valid.
  struct FixedResponse {
    int status;
    std::string_view body;
    std::int64_t date_second;
    bool keep_alive, http10, head;
    bool operator==(const FixedResponse&) const = default;
  };
  FixedResponse fixed{};
  std::size_t fixed_head_size = 0;
  bool fixed_valid = false;
  char client_chunk[http::kChunkHeaderMax];

  // Closing: stop parsing, flush, shut the write side, drain input until EOF or the deadline.
  bool closing = false;
  bool shut_wr = false;
  bool done = false;
  CloseMode close_mode = CloseMode::kGraceful;

  bool want_client_read = false;
  TimePoint client_deadline = kNever;  // header / idle / body / linger
  TimePoint send_deadline = kNever;    // write progress to the client
  TimePoint delay_deadline = kNever;   // echo /delay

  std::unique_ptr<ProxyLeg> proxy;

  // --- Output --------------------------------------------------------------------------------

  // Every write the core queues goes through here (the proxy's own response bytes aside: no
  // batch is ever open in proxy mode), so that an open batch goes out first.
  void queue(std::string_view bytes) {
    flush_batch();
    to_client.push(bytes);
  }

  // A whole response (in memory of its own, reused for the next one): into the batch when more
  // input waits (or a batch is open already) and it fits, else queued.
  void queue_whole(std::string_view response) {
    const bool more_input = in_begin < in_end || !ext.empty();
    if (!proxy && batch_unwritten == 0 && to_client.empty() && (more_input || !batch.empty()) &&
        batch.size() + response.size() <= kBatchMax) {
      batch.append(response);
      exchange_bytes_out += response.size();  // counted now: written after its exchange ended
      return;
    }
    queue(response);
  }

  // Lends the open batch as the next write (always first: nothing is queued while it is open).
  void flush_batch() {
    if (!batch.empty() && batch_unwritten == 0) {
      assert(to_client.empty());
      to_client.push(batch);
      batch_unwritten = batch.size();
    }
  }

  // n bytes were written: those of the batch were counted in their exchanges already. Returns
  // the bytes that belong to the exchange under way.
  std::size_t written(std::size_t n) {
    to_client.consume(n);
    data_held = data_held && !to_client.empty();
    const std::size_t batched = std::min(n, batch_unwritten);
    if (batched > 0) {
      batch_unwritten -= batched;
      if (batch_unwritten == 0) {
        batch.clear();
      }
    }
    return n - batched;
  }

  // --- Driving -------------------------------------------------------------------------------

  // Runs the machine as far as it goes without I/O, then recomputes what it wants.
  void update(TimePoint now) {
    last_now = now;
    for (int guard = 0; guard < 1'000'000; ++guard) {
      if (!step(now)) {
        break;
      }
    }
    if (!ext.empty()) {
      spill_ext();  // what was handed over and not parsed is kept (as much as fits)
    }
    flush_batch();  // the parse stopped: what was batched is written now
    // The send timeout runs while bytes wait for the client, from the moment they are queued
    // (a write that cannot move a single byte must time out too: nginx arms send_timeout
    // whenever output is left), restarted by each write that moves some (on_client_written).
    if (to_client.empty()) {
      send_deadline = kNever;
    } else if (send_deadline == kNever) {
      send_deadline = now + cfg.send_timeout;
    }
    recompute_wants();
  }

  // The input buffer's size (the worker's pool chooses it).
  std::size_t in_size() const { return buffer_size(ctx.buffers); }

  // Copies handed-over bytes into the input buffer, as many as fit after the unparsed ones.
  void spill_ext() {
    if (closing && !shut_wr && close_mode == CloseMode::kAbort) {
      ext = {};
      return;
    }
    if (in == nullptr) {
      in = take_buffer(ctx.buffers);
      in_begin = in_end = 0;
    }
    if (in_begin == in_end) {
      in_begin = in_end = 0;
    } else if (in_size() - in_end < ext.size() && in_begin > 0 && !input_lent()) {
      std::memmove(in, in + in_begin, in_end - in_begin);
      in_end -= in_begin;
      in_begin = 0;
    }
    const std::size_t n = std::min(ext.size(), in_size() - in_end);
    std::memcpy(in + in_end, ext.data(), n);
    in_end += n;
    ext.remove_prefix(n);
  }

  // Some queued write points into the input buffer (an echoed or proxied body piece, tunnel
  // bytes): it may be neither moved nor given back.
  bool input_lent() const { return !to_client.empty() || (proxy && proxy->uses_client_buffer()); }

  // Gives the input buffer back when nothing in it is needed: no unparsed byte, no queued
  // write into it. Only when the driver hands its own bytes; a lent span needs the buffer.
  void release_input() {
    if (in != nullptr && ctx.driver_owns_input && in_begin == in_end && !input_lent() &&
        !body_read_lent && !lend_body_read()) {
      give_buffer(ctx.buffers, in);
      in = nullptr;
      in_begin = in_end = 0;
    }
  }

  // A driver that owns its input still gets a span to read into while a request body is being
  // read: its bytes land in the buffer the core needs for them anyway (a body piece must point
  // into memory of its own), one copy less than a provided buffer copied in, and reads as large
  // as the buffer's free end. Between requests no span is lent and no buffer held.
  bool lend_body_read() const {
    return ctx.driver_owns_input && want_client_read && request == Request::kBody && !closing;
  }

  // One move; false when nothing more can happen until an event.
  bool step(TimePoint now) {
    if (done) {
      return false;
    }
    if (proxy && proxy->step(now)) {
      return true;
    }
    if (closing) {
      return step_closing(now);
    }
    if (request == Request::kComplete) {
      return maybe_finish_exchange(now);
    }
    if (!sink_ready()) {
      return false;
    }
    const bool have_input = in_begin < in_end || !ext.empty();
    // After a head, feed even an empty input once: a message without a body ends there.
    if (!have_input && request != Request::kBody) {
      return false;  // need input
    }
    if (upgrade_pending) {
      return false;  // bytes after an upgrade belong to the tunnel (proxy) or are ignored
    }
    if (continue_pending && have_input) {
      // Body bytes already arrived: the client did not wait, no 100 is owed (RFC 9110 §10.1.1).
      continue_pending = false;
    }
    if (in_begin == in_end && !ext.empty() && request == Request::kBody && !echo_from_ext()) {
      spill_ext();  // body pieces must point into our own buffer: they outlive this call
    }
    const bool in_place = in_begin == in_end && !ext.empty();
    std::string_view input = in_place ? ext : std::string_view(in + in_begin, in_end - in_begin);
    if (request == Request::kIdle && !exchange_open) {
      begin_exchange(now);
    }
    http::ParseStep st = parser.feed(input);
    if (in_place) {
      ext.remove_prefix(st.consumed);
    } else {
      in_begin += st.consumed;
    }
    if (input.empty() && st.kind == http::ParseStep::Kind::kNeedMore) {
      return false;
    }
    if (request == Request::kIdle && parser.in_head()) {
      request = Request::kHead;
      client_deadline = now + cfg.header_timeout;
    }
    if (!st.body.empty()) {
      data_held = data_held || in_place;  // the piece is written from the driver's bytes
      on_body(st.body, now);
    }
    switch (st.kind) {
      case http::ParseStep::Kind::kNeedMore:
      case http::ParseStep::Kind::kData:
        break;
      case http::ParseStep::Kind::kHead:
        on_head(now);
        break;
      case http::ParseStep::Kind::kEnd:
        on_request_end(now);
        break;
      case http::ParseStep::Kind::kUpgrade:
        upgrade_pending = true;
        keep_alive = false;
        if (request != Request::kComplete) {
          on_request_end(now);
        }
        break;
      case http::ParseStep::Kind::kError:
        fail(http::status_of(st.error));
        break;
    }
    return true;
  }

  // An echoed body piece in bytes being handed over is written from there, not copied first,
  // when the driver keeps them until the write is done (Context::driver_keeps_data).
  bool echo_from_ext() const { return ctx.driver_keeps_data && handler == Handler::kEchoBody; }

  // Where parsed request bytes go must have room before more is parsed (backpressure).
  bool sink_ready() const {
    if (handler == Handler::kProxy) {
      return proxy->request_sink_ready();
    }
    return to_client.empty();
  }

  // A reload put a newer configuration in force than the one this connection serves with.
  bool superseded() const {
    return ctx.config_epoch != nullptr &&
           ctx.config_epoch->load(std::memory_order_relaxed) != ctx.epoch;
  }

  void on_head(TimePoint now) {
    const http::RequestHead& h = parser.head();
    request = Request::kBody;  // kEnd follows at once when there is no body
    client_deadline = now + cfg.body_timeout;
    keep_alive = h.keep_alive && !draining && !superseded() && !ctx.close_after_exchange;
    response_started = false;
    response_complete = false;
    continue_pending = h.expect_continue && h.framing != http::Framing::kNone;
    if (h.method_kind == http::Method::kConnect) {
      // Any 2xx to CONNECT tells the client a tunnel was opened (RFC 9110 §9.3.6). gearbox
      // opens none, in either mode: 501, the status for a method a server supports for no
      // resource (RFC 9110 §15.6.2), then close (the client may already be sending tunnel bytes).
      continue_pending = false;
      fail(501);
      return;
    }
    if (proxy) {
      handler = Handler::kProxy;
      proxy->on_request_head(now);
      return;
    }
    EchoPlan plan = plan_echo(h);
    switch (plan.kind) {
      case EchoPlan::Kind::kEchoBody:
        handler = Handler::kEchoBody;
        start_echo_body();
        break;
      case EchoPlan::Kind::kEchoHead:
        respond_echo_head();
        break;
      case EchoPlan::Kind::kPlaintext:
        respond_text(200, "Hello, World!");
        break;
      case EchoPlan::Kind::kHealth:
        respond_text(200, "ok");
        break;
      case EchoPlan::Kind::kDelay:
        handler = Handler::kDelay;
        delay_deadline = now + Duration(plan.ms);
        break;
      case EchoPlan::Kind::kCpu:
        // Computation is not I/O: done here, on the driver's thread, so each model pays its
        // real cost (DESIGN.md).
        burn_cpu(static_cast<std::uint64_t>(plan.ms) * cfg.cpu_iterations_per_ms);
        respond_text(200, "done");
        break;
      case EchoPlan::Kind::kBadRequest:
        fail(400);
        break;
    }
  }

  void on_body(std::string_view piece, TimePoint now) {
    client_deadline = now + cfg.body_timeout;
    if (handler == Handler::kEchoBody) {
      flush_echo_head();
      if (parser.head().framing == http::Framing::kChunked) {
        queue(http::chunk_header(client_chunk, piece.size()));
        queue(piece);
        queue(http::kCrlf);
      } else {
        queue(piece);
      }
    } else if (handler == Handler::kProxy) {
      proxy->on_request_body(piece, now);
    }
  }

  void on_request_end(TimePoint now) {
    request = Request::kComplete;
    client_deadline = kNever;
    continue_pending = false;
    if (handler == Handler::kEchoBody) {
      flush_echo_head();
      if (parser.head().framing == http::Framing::kChunked) {
        queue(http::kLastChunk);
      }
      response_complete = true;
    } else if (handler == Handler::kProxy) {
      proxy->on_request_end(now);
    }
  }

  // The exchange is over when the request was read and the response written; then the next
  // request (perhaps already buffered: pipelining) is taken, or the connection closes.
  bool maybe_finish_exchange(TimePoint now) {
    if (!response_complete || !to_client.empty()) {
      return false;
    }
    if (proxy && !proxy->exchange_finished()) {
      return false;
    }
    handler = Handler::kNone;
    // The next request's response has not started: a malformed pipelined request after this
    // one is answered 400, not cut as if its answer were under way.
    response_started = false;
    end_exchange(now);
    if (!keep_alive || draining) {
      begin_close();
      return true;
    }
    request = Request::kIdle;
    client_deadline = now + cfg.idle_timeout;
    set_idle(true);
    return true;
  }

  // --- The access log ------------------------------------------------------------------------

  void set_idle(bool idle) {
    if (metrics != nullptr && idle != counted_idle) {
      counted_idle = idle;
      metrics->idle.fetch_add(idle ? 1 : -1, std::memory_order_relaxed);
    }
  }

  void count_error(metrics::ErrorKind kind) {
    if (metrics != nullptr) {
      metrics->errors[static_cast<std::size_t>(kind)].fetch_add(1, std::memory_order_relaxed);
    }
  }

  void begin_exchange(TimePoint now) {
    set_idle(false);
    exchange_open = true;
    exchange_start = now;
    exchange_bytes_out = 0;
    response_head_size = 0;
    response_status = 0;
  }

  // Writes the exchange's access-log line once, when its response is written, refused or cut
  // (then also from ~State). A connection that closes before a request line was parsed and
  // without an answer writes none. Off the hot path unless logging is on.
  void end_exchange(TimePoint now) {
    if (!exchange_open) {
      return;
    }
    exchange_open = false;
    const http::RequestHead& h = parser.head();
    bool head_seen = request != Request::kIdle && request != Request::kHead;
    if (response_status == 0 && !head_seen) {
      return;
    }
    int status = response_status != 0 ? response_status : 499;  // nginx: client closed request
    if (metrics != nullptr) {
      auto m = static_cast<std::size_t>(head_seen ? metrics::method_class(h.method_kind)
                                                  : metrics::MethodClass::kOther);
      std::size_t c = static_cast<std::size_t>(std::clamp(status / 100, 1, 5) - 1);
      metrics->requests[m][c].fetch_add(1, std::memory_order_relaxed);
      metrics->duration.observe(now - exchange_start);
    }
    if (!access_log_enabled()) {
      return;
    }
    AccessRecord r;
    r.peer = peer.address;
    if (!h.method.empty()) {
      r.method = h.method;
      r.target = h.target;
      r.version_minor = h.version_minor;
      r.referer = h.headers.get("Referer").value_or(std::string_view());
      r.user_agent = h.headers.get("User-Agent").value_or(std::string_view());
    }
    r.status = status;
    r.bytes_sent = exchange_bytes_out;
    r.body_bytes =
        exchange_bytes_out > response_head_size ? exchange_bytes_out - response_head_size : 0;
    r.wall = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()) +
             cfg.wall_offset;
    r.request_time = now - exchange_start;
    if (proxy) {
      proxy->describe(r);
    }
    thread_local std::string line;
    line.clear();
    format_access(line, r, access_log_format());
    write_access_line(line);
  }

  // --- Echo responses --------------------------------------------------------------------------

  void start_head(int status) {
    response_status = status;
    fixed_valid = false;
    client_head.clear();
    http::append_status_line(client_head, status);
    append_server_fields();
    if (!keep_alive) {
      client_head.append("Connection: close\r\n");
    } else if (parser.head().version_minor == 0) {
      client_head.append("Connection: keep-alive\r\n");  // RFC 9112 §C.2.2
    }
    response_started = true;
  }

  // Server and Date (RFC 9110 §10.2.4, §6.6.1) on the responses the core makes itself.
  void append_server_fields() {
    client_head.append("Server: gearbox\r\n");
    const auto wall = last_now.time_since_epoch() + cfg.wall_offset;
    http::append_field(client_head, "Date",
                       http_date(std::chrono::duration_cast<std::chrono::seconds>(wall).count()));
  }

  bool head_request() const { return parser.head().method_kind == http::Method::kHead; }

  void respond_text(int status, std::string_view body) {
    const FixedResponse key{status,
                            body,
                            std::chrono::duration_cast<std::chrono::seconds>(
                                last_now.time_since_epoch() + cfg.wall_offset)
                                .count(),
                            keep_alive,
                            parser.head().version_minor == 0,
                            head_request()};
    if (fixed_valid && key == fixed) {
      // client_head still holds this very response (same Date second): nothing to format.
      response_status = status;
      response_started = true;
      response_head_size = fixed_head_size;
    } else {
      start_head(status);
      http::append_field(client_head, "Content-Type", "text/plain");
      http::append_field(client_head, "Content-Length", static_cast<std::uint64_t>(body.size()));
      http::end_head(client_head);
      response_head_size = client_head.size();
      if (!head_request()) {
        client_head.append(body);
      }
      fixed = key;
      fixed_head_size = response_head_size;
      fixed_valid = true;
    }
    queue_whole(client_head);
    response_complete = true;
  }

  void respond_echo_head() {
    const http::RequestHead& h = parser.head();
    std::size_t length = h.method.size() + h.target.size() + 12;  // "M T HTTP/1.x\r\n"
    for (http::Field f : h.headers) {
      length += f.name.size() + f.value.size() + 4;
    }
    start_head(200);
    http::append_field(client_head, "Content-Type", "text/plain");
    http::append_field(client_head, "Content-Length", static_cast<std::uint64_t>(length));
    http::end_head(client_head);
    response_head_size = client_head.size();
    if (!head_request()) {
      client_head.append(h.method).append(" ").append(h.target);
      client_head.append(h.version_minor == 0 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
      for (http::Field f : h.headers) {
        client_head.append(f.name).append(": ").append(f.value).append("\r\n");
      }
    }
    queue_whole(client_head);
    response_complete = true;
  }

  void start_echo_body() {
    const http::RequestHead& h = parser.head();
    start_head(200);
    if (auto type = h.headers.get("Content-Type")) {
      http::append_field(client_head, "Content-Type", *type);
    }
    if (h.framing == http::Framing::kChunked) {
      http::append_field(client_head, "Transfer-Encoding", "chunked");
    } else {
      http::append_field(client_head, "Content-Length", h.content_length);
    }
    http::end_head(client_head);
    response_head_size = client_head.size();
    // The head waits for the first body byte (or the end), so that a body malformed from its
    // first byte still gets its 400 instead of a 200 cut short.
    echo_head_pending = true;
  }

  void flush_echo_head() {
    if (echo_head_pending) {
      echo_head_pending = false;
      queue(client_head);
    }
  }

  void on_delay_over() {
    delay_deadline = kNever;
    handler = Handler::kNone;
    respond_text(200, "done");
  }

  // --- Errors and closing ----------------------------------------------------------------------

  // Answers `status` and closes when nothing of this exchange's response was sent yet;
  // otherwise the response under way is cut (see cut()).
  void fail(int status) {
    if (echo_head_pending) {
      echo_head_pending = false;
      response_started = false;
    }
    if (proxy) {
      proxy->abandon();
    }
    if (response_started || !to_client.empty()) {
      cut(false);
      return;
    }
    keep_alive = false;
    if (status == 400 || status == 408 || status == 413 || status == 414 || status == 431 ||
        status == 501 || status == 505) {
      count_error(metrics::error_kind_of(status));  // the client's fault (not a 502/504)
    }
    std::string_view reason = http::reason_phrase(status);
    response_status = status;
    fixed_valid = false;
    client_head.clear();
    http::append_status_line(client_head, status);
    append_server_fields();
    client_head.append("Content-Type: text/plain\r\n");
    http::append_field(client_head, "Content-Length",
                       static_cast<std::uint64_t>(reason.size() + 1));
    client_head.append("Connection: close\r\n\r\n");
    response_head_size = client_head.size();
    if (!(request != Request::kIdle && request != Request::kHead && head_request())) {
      client_head.append(reason).append("\n");
    }
    queue(client_head);
    response_started = true;
    response_complete = true;
    handler = Handler::kNone;
    begin_close();
  }

  // A response already under way cannot turn into an error: what is queued is flushed and the
  // connection closed, which a client sees as a truncated message (a missing last chunk or
  // short Content-Length). A close-delimited body would look complete: that one is reset.
  void cut(bool close_delimited) {
    if (close_delimited) {
      abort();
      return;
    }
    if (proxy) {
      proxy->abandon();
    }
    keep_alive = false;
    handler = Handler::kNone;
    begin_close();
  }

  void abort() {
    if (proxy) {
      proxy->abandon();
    }
    to_client.clear();
    data_held = false;
    batch.clear();
    batch_unwritten = 0;
    closing = true;
    close_mode = CloseMode::kAbort;
    finish_if_possible();
  }

  void begin_close() {
    closing = true;
    request = Request::kComplete;
  }

  void finish_if_possible() {
    if (!proxy || proxy->released()) {
      done = true;
    }
  }

  bool step_closing(TimePoint now) {
    if (done) {
      return false;
    }
    if (close_mode == CloseMode::kAbort) {
      finish_if_possible();
      return false;
    }
    flush_batch();  // the responses batched before the close are written before the shutdown
    if (!to_client.empty()) {
      return false;
    }
    if (!shut_wr) {
      end_exchange(now);  // an error response (or the last one) is written
      shut_wr = true;
      client_deadline = now + kLingerTime;
      in_begin = in_end = 0;
      return true;
    }
    return false;
  }

  // --- Wants -----------------------------------------------------------------------------------

  void recompute_wants() {
    want_client_read = false;
    if (done || close_mode == CloseMode::kAbort) {
      send_deadline = kNever;
      return;
    }
    if (shut_wr) {
      // Lingering: discard whatever arrives until EOF.
      in_begin = in_end = 0;
      want_client_read = true;
    } else if (closing) {
      want_client_read = false;
    } else if (proxy && proxy->tunnelling()) {
      want_client_read = proxy->wants_client_read();
    } else if (in_begin == in_end && sink_ready() && !upgrade_pending && !client_eof &&
               request != Request::kComplete) {
      want_client_read = true;
    } else if (proxy && proxy->wants_client_read()) {
      want_client_read = true;  // read-ahead while the response is awaited
    }
    if (want_client_read && in != nullptr) {
      compact();
      if (in_end == in_size()) {
        want_client_read = false;  // read-ahead buffer full: stop until parsed
      }
    }
    release_input();
    if (want_client_read && in == nullptr && (!ctx.driver_owns_input || lend_body_read())) {
      in = take_buffer(ctx.buffers);  // the span to lend
      in_begin = in_end = 0;
    }
    if (lend_body_read() && in_end < in_size()) {
      body_read_lent = true;
    }
    if (proxy) {
      proxy->release_buffer();
      proxy->seal_output();
    }
    if (continue_pending && want_client_read && to_client.empty() && request == Request::kBody &&
        in_begin == in_end) {
      // The client waits for our go-ahead before sending the body (RFC 9110 §10.1.1).
      continue_pending = false;
      queue(kContinue);
    }
  }

  void compact() {
    if (in_begin == in_end) {
      in_begin = in_end = 0;
    } else if (in_end == in_size() && in_begin > 0) {
      std::memmove(in, in + in_begin, in_end - in_begin);
      in_end -= in_begin;
      in_begin = 0;
    }
  }

  TimePoint deadline() const {
    TimePoint d = std::min({client_deadline, send_deadline, delay_deadline});
    if (proxy) {
      d = std::min(d, proxy->deadline());
    }
    return d;
  }
};

}  // namespace gearbox::core
