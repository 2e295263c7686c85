// Metric shards and their Prometheus text rendering (pure: the caller passes the time in).
#include "server/metrics.hpp"

#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <string>
#include <utility>
#include <vector>

#include "server/config.hpp"

namespace gearbox::core::metrics {
namespace {

Arena* g_arena = nullptr;
thread_local Shard* t_shard = nullptr;

// A forked child (a prefork worker) must not keep writing into its parent's shard only: it
// takes a fresh one on its first count (every thread of the child; only the forking one exists).
void on_fork_child() {
  t_shard = nullptr;
}

const char* const kMethodNames[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "other"};
const char* const kErrorNames[] = {"parse", "timeout", "reset", "limit"};

void append_double(std::string& out, double v) {
  char text[40];
  // Counts print exactly (no exponent); fractions with 9 significant digits.
  bool whole = v == static_cast<double>(static_cast<long long>(v)) && v < 1e15 && v > -1e15;
  int n = whole ? std::snprintf(text, sizeof text, "%lld", static_cast<long long>(v))
                : std::snprintf(text, sizeof text, "%.9g", v);
  out.append(text, static_cast<std::size_t>(n));
}

std::uint64_t load(const Counter& c) {
  return c.load(std::memory_order_relaxed);
}

// Label values (text format 0.0.4): backslash, double quote and newline escaped.
std::string label(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(c);
    } else if (c == '\n') {
      out.append("\\n");
    } else {
      out.push_back(c);
    }
  }
  return out;
}

void header(std::string& out, const char* name, const char* type, const char* help) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void sample(std::string& out, std::string_view name, std::string_view labels, double value) {
  out.append(name);
  if (!labels.empty()) {
    out.append("{").append(labels).append("}");
  }
  out.push_back(' ');
  append_double(out, value);
  out.push_back('\n');
}

struct HistogramSum {
  std::uint64_t buckets[kBucketCount] = {};
  std::uint64_t sum_ns = 0;
  void add(const Histogram& h) {
    for (std::size_t i = 0; i < kBucketCount; ++i) {
      buckets[i] += load(h.buckets[i]);
    }
    sum_ns += load(h.sum_ns);
  }
};

void histogram(std::string& out, const std::string& name, const std::string& labels,
               const HistogramSum& h) {
  std::uint64_t cumulative = 0;
  std::string prefix = labels.empty() ? "" : labels + ",";
  for (std::size_t i = 0; i < kBucketCount; ++i) {
    cumulative += h.buckets[i];
    std::string le = "+Inf";
    if (i + 1 < kBucketCount) {
      le.clear();
      append_double(le, kBuckets[i]);
    }
    sample(out, name + "_bucket", prefix + "le=\"" + le + "\"", static_cast<double>(cumulative));
  }
  sample(out, name + "_sum", labels, static_cast<double>(h.sum_ns) / 1e9);
  sample(out, name + "_count", labels, static_cast<double>(cumulative));
}

}  // namespace

void Histogram::observe(std::chrono::nanoseconds t) {
  double seconds = static_cast<double>(t.count()) / 1e9;
  std::size_t i = 0;
  while (i < std::size(kBuckets) && seconds > kBuckets[i]) {
    ++i;
  }
  buckets[i].fetch_add(1, std::memory_order_relaxed);
  sum_ns.fetch_add(static_cast<std::uint64_t>(t.count() > 0 ? t.count() : 0),
                   std::memory_order_relaxed);
}

void install(Arena* arena) {
  g_arena = arena;
  t_shard = nullptr;
  static bool registered = [] {
    ::pthread_atfork(nullptr, nullptr, &on_fork_child);
    return true;
  }();
  (void)registered;
}

Arena* arena() {
  return g_arena;
}

Shard* local() {
  if (t_shard == nullptr && g_arena != nullptr) {
    unsigned i = g_arena->next_shard.fetch_add(1, std::memory_order_relaxed) % kShards;
    t_shard = &g_arena->shards[i];
  }
  return t_shard;
}

MethodClass method_class(http::Method m) {
  switch (m) {
    case http::Method::kGet:
      return MethodClass::kGet;
    case http::Method::kHead:
      return MethodClass::kHead;
    case http::Method::kPost:
      return MethodClass::kPost;
    case http::Method::kPut:
      return MethodClass::kPut;
    case http::Method::kDelete:
      return MethodClass::kDelete;
    default:
      return MethodClass::kOther;
  }
}

ErrorKind error_kind_of(int status) {
  switch (status) {
    case 408:
    case 504:
      return ErrorKind::kTimeout;
    case 413:
    case 414:
    case 431:
    case 503:
      return ErrorKind::kLimit;
    default:
      return ErrorKind::kParse;
  }
}

std::size_t server_index(const Config& config, std::size_t g, std::size_t s) {
  if (g < config.groups.size() && s < config.groups[g].servers.size()) {
    std::size_t slot = config.groups[g].servers[s].metric_slot;
    if (slot != static_cast<std::size_t>(-1)) {
      return slot < kMaxServers ? slot : kMaxServers;
    }
  }
  std::size_t base = 0;
  for (std::size_t i = 0; i < g && i < config.groups.size(); ++i) {
    base += config.groups[i].servers.size();
  }
  std::size_t index = base + s;
  return index < kMaxServers ? index : kMaxServers;
}

void carry_slots(const Config& prev, Config& next) {
  std::vector<bool> used(kMaxServers, false);
  auto key = [](const UpstreamGroup& g, const UpstreamServer& s) {
    return g.name + '\n' + s.endpoint.text;
  };
  std::vector<std::pair<std::string, std::size_t>> known;
  for (std::size_t g = 0; g < prev.groups.size(); ++g) {
    for (std::size_t s = 0; s < prev.groups[g].servers.size(); ++s) {
      std::size_t slot = server_index(prev, g, s);
      if (slot < kMaxServers) {
        used[slot] = true;
        known.emplace_back(key(prev.groups[g], prev.groups[g].servers[s]), slot);
      }
    }
  }
  std::vector<UpstreamServer*> fresh;
  for (UpstreamGroup& group : next.groups) {
    for (UpstreamServer& server : group.servers) {
      auto it = std::find_if(known.begin(), known.end(),
                             [&](const auto& k) { return k.first == key(group, server); });
      if (it != known.end()) {
        server.metric_slot = it->second;
        known.erase(it);  // a server listed twice takes a second row
      } else {
        fresh.push_back(&server);
      }
    }
  }
  std::size_t next_free = 0;
  for (UpstreamServer* server : fresh) {
    while (next_free < kMaxServers && used[next_free]) {
      ++next_free;
    }
    server->metric_slot = next_free;  // kMaxServers: uncounted
    if (next_free < kMaxServers) {
      used[next_free] = true;
    }
  }
}

std::string render(const Arena& a, const Config& config, std::string_view backend,
                   std::int64_t now_ns) {
  std::string out;
  out.reserve(16 * 1024);

  header(out, "gearbox_info", "gauge", "Version and concurrency backend of this server.");
  sample(out, "gearbox_info",
         "version=\"" GEARBOX_VERSION "\",backend=\"" + label(backend) + "\",mode=\"" +
             (config.mode == Mode::kProxy ? "proxy" : "echo") + "\"",
         1);
  header(out, "process_start_time_seconds", "gauge", "Start time of the process, Unix seconds.");
  sample(out, "process_start_time_seconds", "", static_cast<double>(a.started_wall_s));

  std::uint64_t requests[static_cast<std::size_t>(MethodClass::kCount)][5] = {};
  HistogramSum duration;
  std::uint64_t bytes_in = 0, bytes_out = 0;
  std::int64_t open = 0, idle = 0;
  std::uint64_t errors[static_cast<std::size_t>(ErrorKind::kCount)] = {};
  for (const Shard& s : a.shards) {
    for (std::size_t m = 0; m < std::size(s.requests); ++m) {
      for (std::size_t c = 0; c < 5; ++c) {
        requests[m][c] += load(s.requests[m][c]);
      }
    }
    duration.add(s.duration);
    bytes_in += load(s.bytes_in);
    bytes_out += load(s.bytes_out);
    open += s.open.load(std::memory_order_relaxed);
    idle += s.idle.load(std::memory_order_relaxed);
    for (std::size_t e = 0; e < std::size(errors); ++e) {
      errors[e] += load(s.errors[e]);
    }
  }

  header(out, "gearbox_http_requests_total", "counter",
         "Responses sent, by request method and response status class.");
  for (std::size_t m = 0; m < std::size(requests); ++m) {
    for (std::size_t c = 0; c < 5; ++c) {
      sample(out, "gearbox_http_requests_total",
             std::string("method=\"") + kMethodNames[m] + "\",code=\"" + std::to_string(c + 1) +
                 "xx\"",
             static_cast<double>(requests[m][c]));
    }
  }
  header(out, "gearbox_http_request_duration_seconds", "histogram",
         "Time from a request's first byte to the end of its response.");
  histogram(out, "gearbox_http_request_duration_seconds", "", duration);
  header(out, "gearbox_http_received_bytes_total", "counter", "Bytes read from clients.");
  sample(out, "gearbox_http_received_bytes_total", "", static_cast<double>(bytes_in));
  header(out, "gearbox_http_sent_bytes_total", "counter", "Bytes written to clients.");
  sample(out, "gearbox_http_sent_bytes_total", "", static_cast<double>(bytes_out));
  header(out, "gearbox_connections_open", "gauge", "Client connections open.");
  sample(out, "gearbox_connections_open", "", static_cast<double>(open));
  header(out, "gearbox_connections_idle", "gauge",
         "Client connections open and waiting for their next request.");
  sample(out, "gearbox_connections_idle", "", static_cast<double>(idle));
  header(out, "gearbox_errors_total", "counter",
         "Client-side errors: malformed requests (parse), timeouts, resets, limits exceeded.");
  for (std::size_t e = 0; e < std::size(errors); ++e) {
    sample(out, "gearbox_errors_total", std::string("kind=\"") + kErrorNames[e] + "\"",
           static_cast<double>(errors[e]));
  }

  if (config.mode != Mode::kProxy) {
    return out;
  }
  struct Row {
    std::string labels;
    std::size_t index;
  };
  std::vector<Row> rows;
  for (std::size_t g = 0; g < config.groups.size(); ++g) {
    for (std::size_t s = 0; s < config.groups[g].servers.size(); ++s) {
      std::size_t i = server_index(config, g, s);
      if (i < kMaxServers) {
        rows.push_back({"upstream=\"" + label(config.groups[g].name) + "\",server=\"" +
                            label(config.groups[g].servers[s].endpoint.text) + "\"",
                        i});
      }
    }
  }
  auto per_server = [&](const char* name, const char* type, const char* help, auto value) {
    header(out, name, type, help);
    for (const Row& row : rows) {
      sample(out, name, row.labels, value(row.index));
    }
  };
  auto sum = [&](auto field) {
    return [&a, field](std::size_t i) {
      double total = 0;
      for (const Shard& s : a.shards) {
        total += static_cast<double>((s.upstream[i].*field).load(std::memory_order_relaxed));
      }
      return total;
    };
  };
  per_server("gearbox_upstream_requests_total", "counter", "Requests sent to the server.",
             sum(&UpstreamServerCounters::requests));
  per_server("gearbox_upstream_failures_total", "counter",
             "Connect failures, resets and timeouts before a response head.",
             sum(&UpstreamServerCounters::failures));
  per_server("gearbox_upstream_retries_total", "counter",
             "Requests passed on to another server after this one failed.",
             sum(&UpstreamServerCounters::retries));
  per_server("gearbox_upstream_up", "gauge",
             "1 when the server may be picked (not marked down by passive or active health).",
             [&](std::size_t i) {
               bool down = a.down_until_ns[i].load(std::memory_order_relaxed) > now_ns ||
                           a.unhealthy[i].load(std::memory_order_relaxed) != 0;
               return down ? 0.0 : 1.0;
             });
  per_server("gearbox_upstream_idle_connections", "gauge",
             "Pooled keep-alive connections to the server.", sum(&UpstreamServerCounters::idle));
  header(out, "gearbox_upstream_response_head_seconds", "histogram",
         "Time from the request sent to the response head received.");
  for (const Row& row : rows) {
    HistogramSum h;
    for (const Shard& s : a.shards) {
      h.add(s.upstream[row.index].head_latency);
    }
    histogram(out, "gearbox_upstream_response_head_seconds", row.labels, h);
  }
  return out;
}

}  // namespace gearbox::core::metrics
