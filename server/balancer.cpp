// Smooth weighted round robin and weighted least-connections over the live servers of a group,
// after nginx's ngx_http_upstream_round_robin.c and ngx_http_upstream_least_conn_module.c.
#include "server/balancer.hpp"

#include <cassert>
#include <mutex>

#include "server/metrics.hpp"

namespace gearbox::core {

struct Upstreams::Group {
  struct Server {
    int weight = 1;
    std::int64_t current = 0;  // smooth weighted round robin state
    int fails = 0;             // consecutive failures
    TimePoint failed_at{};     // time of the last failure
    bool healthy = true;       // active check
    int active = 0;            // requests in flight
  };

  Group(const UpstreamGroup& c, std::size_t first)
      : config(&c), base(first), servers(c.servers.size()) {
    for (std::size_t i = 0; i < servers.size(); ++i) {
      servers[i].weight = c.servers[i].weight > 0 ? c.servers[i].weight : 1;
    }
  }

  bool passively_down(const Server& s, TimePoint now) const {
    return servers.size() > 1 && config->max_fails > 0 && s.fails >= config->max_fails &&
           now < s.failed_at + config->fail_timeout;
  }

  bool usable(std::size_t i, TimePoint now, std::uint64_t exclude_mask) const {
    if (i < 64 && ((exclude_mask >> i) & 1) != 0) {
      return false;
    }
    return servers[i].healthy && !passively_down(servers[i], now);
  }

  const UpstreamGroup* config;
  std::size_t base;  // index of servers[0] over every group, for the metrics
  mutable std::mutex mu;
  std::vector<Server> servers;
};

Upstreams::Upstreams(const Config& config) : Upstreams(config.groups, config.routes) {}

Upstreams::Upstreams(const std::vector<UpstreamGroup>& groups, const std::vector<Route>& routes)
    : router_(routes, groups) {
  groups_.reserve(groups.size());
  std::size_t base = 0;
  for (const UpstreamGroup& g : groups) {
    groups_.push_back(std::make_unique<Group>(g, base));
    base += g.servers.size();
  }
}

Upstreams::~Upstreams() = default;

const UpstreamGroup& Upstreams::group(std::size_t g) const {
  return *groups_.at(g)->config;
}

std::size_t Upstreams::server_count(std::size_t g) const {
  return groups_.at(g)->servers.size();
}

const Endpoint& Upstreams::endpoint(std::size_t g, std::size_t s) const {
  return groups_.at(g)->config->servers.at(s).endpoint;
}

std::size_t Upstreams::pick(std::size_t g, TimePoint now, std::uint64_t exclude_mask) {
  Group& grp = *groups_.at(g);
  std::lock_guard lock(grp.mu);
  const bool least = grp.config->balance == Balance::kLeastConnections;
  const std::size_t n = grp.servers.size();

  // Least connections: only the servers with the lowest active/weight take part; among them
  // smooth weighted round robin decides (nginx least_conn does the same for ties).
  std::size_t lowest = kNone;
  if (least) {
    for (std::size_t i = 0; i < n; ++i) {
      if (!grp.usable(i, now, exclude_mask)) {
        continue;
      }
      const auto& s = grp.servers[i];
      if (lowest == kNone || static_cast<std::int64_t>(s.active) * grp.servers[lowest].weight <
                                 static_cast<std::int64_t>(grp.servers[lowest].active) * s.weight) {
        lowest = i;
      }
    }
    if (lowest == kNone) {
      return kNone;
    }
  }

  std::size_t best = kNone;
  std::int64_t total = 0;
  for (std::size_t i = 0; i < n; ++i) {
    if (!grp.usable(i, now, exclude_mask)) {
      continue;
    }
    auto& s = grp.servers[i];
    if (least && static_cast<std::int64_t>(s.active) * grp.servers[lowest].weight !=
                     static_cast<std::int64_t>(grp.servers[lowest].active) * s.weight) {
      continue;
    }
    s.current += s.weight;
    total += s.weight;
    if (best == kNone || s.current > grp.servers[best].current) {
      best = i;
    }
  }
  if (best != kNone) {
    grp.servers[best].current -= total;
  }
  return best;
}

void Upstreams::on_failure(std::size_t g, std::size_t s, TimePoint now) {
  Group& grp = *groups_.at(g);
  std::lock_guard lock(grp.mu);
  auto& srv = grp.servers.at(s);
  // A failure long after the previous one starts a new count, unless the server was already
  // down: then its one try after fail_timeout failed and it goes down again.
  if (srv.fails < grp.config->max_fails && srv.fails > 0 &&
      now >= srv.failed_at + grp.config->fail_timeout) {
    srv.fails = 0;
  }
  ++srv.fails;
  srv.failed_at = now;
  std::size_t i = grp.base + s;
  if (metrics::Arena* a = metrics::arena(); a != nullptr && i < metrics::kMaxServers) {
    metrics::local()->upstream[i].failures.fetch_add(1, std::memory_order_relaxed);
    if (grp.passively_down(srv, now)) {
      auto until = (srv.failed_at + grp.config->fail_timeout).time_since_epoch();
      a->down_until_ns[i].store(std::chrono::duration_cast<std::chrono::nanoseconds>(until).count(),
                                std::memory_order_relaxed);
    }
  }
}

void Upstreams::on_success(std::size_t g, std::size_t s) {
  Group& grp = *groups_.at(g);
  std::lock_guard lock(grp.mu);
  grp.servers.at(s).fails = 0;
  if (metrics::Arena* a = metrics::arena(); a != nullptr && grp.base + s < metrics::kMaxServers) {
    a->down_until_ns[grp.base + s].store(0, std::memory_order_relaxed);
  }
}

void Upstreams::on_request_start(std::size_t g, std::size_t s) {
  Group& grp = *groups_.at(g);
  std::lock_guard lock(grp.mu);
  ++grp.servers.at(s).active;
  if (metrics::arena() != nullptr && grp.base + s < metrics::kMaxServers) {
    metrics::local()->upstream[grp.base + s].requests.fetch_add(1, std::memory_order_relaxed);
  }
}

void Upstreams::on_request_end(std::size_t g, std::size_t s) {
  Group& grp = *groups_.at(g);
  std::lock_guard lock(grp.mu);
  auto& srv = grp.servers.at(s);
  assert(srv.active > 0);
  if (srv.active > 0) {
    --srv.active;
  }
}

void Upstreams::set_health(std::size_t g, std::size_t s, bool healthy) {
  Group& grp = *groups_.at(g);
  std::lock_guard lock(grp.mu);
  grp.servers.at(s).healthy = healthy;
  if (metrics::Arena* a = metrics::arena(); a != nullptr && grp.base + s < metrics::kMaxServers) {
    a->unhealthy[grp.base + s].store(healthy ? 0 : 1, std::memory_order_relaxed);
  }
}

bool Upstreams::healthy(std::size_t g, std::size_t s) const {
  const Group& grp = *groups_.at(g);
  std::lock_guard lock(grp.mu);
  return grp.servers.at(s).healthy;
}

bool Upstreams::available(std::size_t g, std::size_t s, TimePoint now) const {
  const Group& grp = *groups_.at(g);
  std::lock_guard lock(grp.mu);
  (void)grp.servers.at(s);
  return grp.usable(s, now, 0);
}

int Upstreams::active_requests(std::size_t g, std::size_t s) const {
  const Group& grp = *groups_.at(g);
  std::lock_guard lock(grp.mu);
  return grp.servers.at(s).active;
}

}  // namespace gearbox::core
