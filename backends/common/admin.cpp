// The admin endpoint: a small blocking HTTP/1.1 server on its own thread (requests parsed by the
// core's strict parser), rendering the metric arena and the backend's own state.
#include "backends/common/admin.hpp"

#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "backends/common/socket.hpp"
#include "http/parser.hpp"

namespace gearbox::backends {
namespace {

constexpr auto kConnectionDeadline = std::chrono::seconds(2);

// The page fetches ?format=json every second and fills itself in; no external resources.
constexpr std::string_view kStatusPage = R"html(<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>gearbox status</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; }
h1 { font-size: 1.4em; margin: 0 0 .2em; }
.model { color: #555; margin-bottom: 1em; }
table { border-collapse: collapse; margin: 0 0 1.5em; }
th, td { border: 1px solid #ccc; padding: .25em .7em; text-align: left; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.up { color: #080; } .down { color: #b00; }
</style>
</head>
<body>
<h1>gearbox <span id="backend">?</span> <small id="mode"></small></h1>
<div class="model" id="model"></div>
<table id="summary">
<tr><th>requests</th><td class="num" id="requests_total">?</td></tr>
<tr><th>requests per second</th><td class="num" id="requests_per_second">?</td></tr>
<tr><th>connections open</th><td class="num" id="connections_open">?</td></tr>
<tr><th>connections idle</th><td class="num" id="connections_idle">?</td></tr>
<tr><th>errors</th><td class="num" id="errors_total">?</td></tr>
<tr><th>OS threads</th><td class="num" id="os_threads">?</td></tr>
<tr><th>uptime (s)</th><td class="num" id="uptime_seconds">?</td></tr>
</table>
<h2>What the model is doing</h2>
<div id="model_state"></div>
<h2 id="upstreams_title" hidden>Upstreams</h2>
<table id="upstreams" hidden><thead><tr><th>group</th><th>server</th><th>state</th>
<th>requests</th><th>failures</th><th>retries</th><th>idle pooled</th></tr></thead>
<tbody></tbody></table>
<p><small>Updated <span id="updates">0</span> times; refreshes every second.
Raw: <a href="?format=json">JSON</a>, <a href="/metrics">/metrics</a>.</small></p>
<script>
"use strict";
let updates = 0;
function cell(text, cls) {
  const td = document.createElement("td");
  td.textContent = text;
  if (cls) td.className = cls;
  return td;
}
// Renders any JSON value as nested tables: the model's own state has a shape per backend.
function render(value) {
  if (Array.isArray(value)) {
    const table = document.createElement("table");
    if (value.length && typeof value[0] === "object") {
      const keys = Object.keys(value[0]);
      const head = table.insertRow();
      for (const k of keys) { const th = document.createElement("th"); th.textContent = k; head.appendChild(th); }
      for (const row of value) {
        const tr = table.insertRow();
        for (const k of keys) tr.appendChild(cell(String(row[k]), typeof row[k] === "number" ? "num" : ""));
      }
    } else {
      table.insertRow().appendChild(cell(value.join(", ")));
    }
    return table;
  }
  if (value !== null && typeof value === "object") {
    const table = document.createElement("table");
    for (const [k, v] of Object.entries(value)) {
      const tr = table.insertRow();
      const th = document.createElement("th");
      th.textContent = k;
      tr.appendChild(th);
      const td = tr.insertCell();
      if (v !== null && typeof v === "object") td.appendChild(render(v));
      else { td.textContent = String(v); if (typeof v === "number") td.className = "num"; }
      td.dataset.key = k;
    }
    return table;
  }
  const span = document.createElement("span");
  span.textContent = String(value);
  return span;
}
async function refresh() {
  try {
    const r = await fetch("?format=json", {cache: "no-store"});
    const s = await r.json();
    for (const k of ["backend", "model", "requests_total", "requests_per_second",
                     "connections_open", "connections_idle", "errors_total", "os_threads",
                     "uptime_seconds"]) {
      document.getElementById(k).textContent = String(s[k]);
    }
    document.getElementById("mode").textContent = "(" + s.mode + " mode, pid " + s.pid + ")";
    const state = document.getElementById("model_state");
    state.replaceChildren(render(s.model_state));
    const ups = s.upstreams || [];
    document.getElementById("upstreams").hidden = ups.length === 0;
    document.getElementById("upstreams_title").hidden = ups.length === 0;
    const body = document.querySelector("#upstreams tbody");
    body.replaceChildren();
    for (const u of ups) {
      const tr = body.insertRow();
      tr.appendChild(cell(u.group));
      tr.appendChild(cell(u.server));
      tr.appendChild(cell(u.up ? "up" : "down", u.up ? "up" : "down"));
      for (const k of ["requests", "failures", "retries", "idle"]) tr.appendChild(cell(String(u[k]), "num"));
    }
    updates += 1;
    document.getElementById("updates").textContent = String(updates);
    document.body.dataset.updates = String(updates);
  } catch (e) {
    document.getElementById("model").textContent = "status unavailable: " + e;
  }
}
refresh();
setInterval(refresh, 1000);
</script>
</body>
</html>
)html";

std::string json_string(std::string_view text) {
  std::string out = "\"";
  for (unsigned char c : text) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20) {
      char esc[8];
      std::snprintf(esc, sizeof esc, "\\u%04x", c);
      out.append(esc);
    } else {
      out.push_back(static_cast<char>(c));
    }
  }
  return out + "\"";
}

void send_all(int fd, std::string_view bytes, std::chrono::steady_clock::time_point deadline) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n > 0) {
      bytes.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLOUT, 0};
      int ms = wait_ms(std::chrono::steady_clock::now(), deadline);
      if (ms == 0 || ::poll(&p, 1, ms) <= 0) {
        return;
      }
      continue;
    }
    return;
  }
}

std::string response(int status, std::string_view type, std::string_view body, bool head) {
  std::string out = "HTTP/1.1 " + std::to_string(status) + " " +
                    std::string(http::reason_phrase(status)) + "\r\nServer: gearbox\r\n";
  out += "Content-Type: " + std::string(type) + "\r\n";
  out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  out += "Cache-Control: no-store\r\nConnection: close\r\n\r\n";
  if (!head) {
    out.append(body);
  }
  return out;
}

// Threads of this process (the kernel's count, /proc/self/status): the thread backend's one per
// connection, the pool's fixed set, a ring loop's one.
int os_threads() {
  std::FILE* f = std::fopen("/proc/self/status", "re");
  if (f == nullptr) {
    return -1;
  }
  char line[256];
  int threads = -1;
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::sscanf(line, "Threads: %d", &threads) == 1) {
      break;
    }
  }
  std::fclose(f);
  return threads;
}

}  // namespace

AdminServer::AdminServer(const core::Config& config, core::Listener listener,
                         const core::metrics::Arena& arena, const core::Backend& backend)
    : config_(config), listener_(std::move(listener)), arena_(arena), backend_(backend) {}

AdminServer::~AdminServer() {
  stop();
  if (listener_.fd >= 0) {
    ::close(listener_.fd);
  }
}

void AdminServer::start() {
  wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ < 0) {
    std::fprintf(stderr, "gearbox: admin: eventfd: %s\n", std::strerror(errno));
    std::abort();
  }
  last_at_ = std::chrono::steady_clock::now();
  thread_ = std::thread([this] { run(); });
}

void AdminServer::stop() {
  if (thread_.joinable()) {
    std::uint64_t one = 1;
    [[maybe_unused]] ssize_t n = ::write(wake_fd_, &one, sizeof one);
    thread_.join();
  }
  if (wake_fd_ >= 0) {
    ::close(wake_fd_);
    wake_fd_ = -1;
  }
}

void AdminServer::run() {
  for (;;) {
    pollfd fds[2] = {{listener_.fd, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
    int n = ::poll(fds, 2, -1);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (fds[1].revents != 0) {
      return;
    }
    if (fds[0].revents != 0) {
      Accepted a = accept_client(listener_.fd);
      if (a.fd >= 0) {
        serve(a.fd);
        ::close(a.fd);
      } else if (accept_should_pause(a.err)) {
        ::poll(nullptr, 0, static_cast<int>(kAcceptPause.count()));
      }
    }
  }
}

void AdminServer::serve(int fd) {
  auto deadline = std::chrono::steady_clock::now() + kConnectionDeadline;
  http::Limits limits;
  limits.max_header = 8 * 1024;
  limits.max_headers = 64;
  limits.max_body = 0;
  http::RequestParser parser(limits);
  char buf[4096];
  bool head_done = false;
  int error_status = 0;
  while (!head_done && error_status == 0) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd, POLLIN, 0};
      int ms = wait_ms(std::chrono::steady_clock::now(), deadline);
      if (ms == 0 || ::poll(&p, 1, ms) <= 0) {
        error_status = 408;
      }
      continue;
    }
    if (n <= 0) {
      return;
    }
    std::string_view input(buf, static_cast<std::size_t>(n));
    while (!head_done && error_status == 0) {
      http::ParseStep st = parser.feed(input);
      input.remove_prefix(st.consumed);
      if (st.kind == http::ParseStep::Kind::kError) {
        error_status = http::status_of(st.error);
      } else if (st.kind == http::ParseStep::Kind::kNeedMore) {
        break;
      } else {
        head_done = true;
      }
    }
  }
  if (error_status != 0) {
    send_all(fd,
             response(error_status, "text/plain",
                      std::string(http::reason_phrase(error_status)) + "\n", false),
             deadline);
    return;
  }
  const http::RequestHead& h = parser.head();
  const bool head = h.method_kind == http::Method::kHead;
  if (h.method_kind != http::Method::kGet && !head) {
    std::string r = response(405, "text/plain", "only GET and HEAD\n", false);
    r.insert(r.find("\r\n") + 2, "Allow: GET, HEAD\r\n");
    send_all(fd, r, deadline);
    return;
  }
  std::string_view target = h.target;
  std::string_view path = target.substr(0, target.find('?'));
  std::string_view query = path.size() < target.size() ? target.substr(path.size() + 1) : "";
  if (path == "/metrics") {
    send_all(fd, response(200, "text/plain; version=0.0.4; charset=utf-8", metrics_text(), head),
             deadline);
  } else if (path == "/status" && query == "format=json") {
    send_all(fd, response(200, "application/json", status_json(), head), deadline);
  } else if (path == "/status" || path == "/") {
    send_all(fd, response(200, "text/html; charset=utf-8", kStatusPage, head), deadline);
  } else {
    send_all(fd, response(404, "text/plain", "try /metrics or /status\n", head), deadline);
  }
}

std::string AdminServer::metrics_text() const {
  auto now = std::chrono::duration_cast<std::chrono::nanoseconds>(
                 std::chrono::steady_clock::now().time_since_epoch())
                 .count();
  std::shared_ptr<const core::Config> live = backend_.config_in_force();  // reloads change it
  return core::metrics::render(arena_, live ? *live : config_, config_.backend, now);
}

std::string AdminServer::status_json() {
  namespace m = core::metrics;
  std::uint64_t total = 0;
  std::uint64_t errors = 0;
  std::int64_t open = 0;
  std::int64_t idle = 0;
  for (const m::Shard& s : arena_.shards) {
    for (const auto& by_method : s.requests) {
      for (const auto& c : by_method) {
        total += c.load(std::memory_order_relaxed);
      }
    }
    for (const auto& e : s.errors) {
      errors += e.load(std::memory_order_relaxed);
    }
    open += s.open.load(std::memory_order_relaxed);
    idle += s.idle.load(std::memory_order_relaxed);
  }
  auto now = std::chrono::steady_clock::now();
  double elapsed = std::chrono::duration<double>(now - last_at_).count();
  double rps = elapsed > 0 ? static_cast<double>(total - last_total_) / elapsed : 0;
  last_total_ = total;
  last_at_ = now;
  auto wall = std::chrono::duration_cast<std::chrono::seconds>(
                  std::chrono::system_clock::now().time_since_epoch())
                  .count();
  const core::BackendInfo* info = core::find_backend(config_.backend);
  char rps_text[32];
  std::snprintf(rps_text, sizeof rps_text, "%.1f", rps);
  std::string out = "{\"backend\":" + json_string(config_.backend);
  out += ",\"model\":" + json_string(info != nullptr ? info->model : "");
  out += ",\"mode\":" + json_string(config_.mode == core::Mode::kProxy ? "proxy" : "echo");
  out += ",\"pid\":" + std::to_string(::getpid());
  out += ",\"uptime_seconds\":" + std::to_string(wall - arena_.started_wall_s);
  out += ",\"requests_total\":" + std::to_string(total);
  out += ",\"requests_per_second\":" + std::string(rps_text);
  out += ",\"connections_open\":" + std::to_string(open);
  out += ",\"connections_idle\":" + std::to_string(idle);
  out += ",\"errors_total\":" + std::to_string(errors);
  out += ",\"os_threads\":" + std::to_string(os_threads());
  out += ",\"model_state\":" + backend_.status_json();
  out += ",\"upstreams\":[";
  auto now_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  bool first = true;
  std::shared_ptr<const core::Config> live = backend_.config_in_force();  // reloads change it
  const core::Config& config = live ? *live : config_;
  for (std::size_t g = 0; g < config.groups.size() && config.mode == core::Mode::kProxy; ++g) {
    for (std::size_t s = 0; s < config.groups[g].servers.size(); ++s) {
      std::size_t i = m::server_index(config, g, s);
      if (i >= m::kMaxServers) {
        continue;
      }
      std::uint64_t requests = 0, failures = 0, retries = 0;
      std::int64_t pooled = 0;
      for (const m::Shard& shard : arena_.shards) {
        requests += shard.upstream[i].requests.load(std::memory_order_relaxed);
        failures += shard.upstream[i].failures.load(std::memory_order_relaxed);
        retries += shard.upstream[i].retries.load(std::memory_order_relaxed);
        pooled += shard.upstream[i].idle.load(std::memory_order_relaxed);
      }
      bool up = arena_.down_until_ns[i].load(std::memory_order_relaxed) <= now_ns &&
                arena_.unhealthy[i].load(std::memory_order_relaxed) == 0;
      out += first ? "" : ",";
      first = false;
      out += "{\"group\":" + json_string(config.groups[g].name);
      out += ",\"server\":" + json_string(config.groups[g].servers[s].endpoint.text);
      out += std::string(",\"up\":") + (up ? "true" : "false");
      out += ",\"requests\":" + std::to_string(requests);
      out += ",\"failures\":" + std::to_string(failures);
      out += ",\"retries\":" + std::to_string(retries);
      out += ",\"idle\":" + std::to_string(pooled) + "}";
    }
  }
  return out + "]}";
}

}  // namespace gearbox::backends
