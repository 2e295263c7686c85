// Idle keep-alive connections to upstream servers, per endpoint, LIFO, with idle timeout.
#include "backends/common/upstream_pool.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "server/metrics.hpp"

namespace gearbox::backends {

// An idle HTTP/1.1 upstream connection has nothing to say: readable means it was closed (EOF,
// reset) or it sent bytes nobody asked for. Either way it cannot carry a new request.
bool idle_socket_alive(int fd) {
  char byte;
  ssize_t n = ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
  return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
}

// The gauge gearbox_upstream_idle_connections follows each configured server's idle set.
void UpstreamPool::report(Slot& slot) {
  auto held = static_cast<std::int64_t>(slot.idle.size());
  if (held != slot.reported && slot.metric < core::metrics::kMaxServers) {
    if (core::metrics::Shard* m = core::metrics::local(); m != nullptr) {
      m->upstream[slot.metric].idle.fetch_add(held - slot.reported, std::memory_order_relaxed);
      slot.reported = held;
    }
  }
}

bool UpstreamPool::alive(int fd) {
  return watch_ != nullptr ? watch_->alive(fd) : idle_socket_alive(fd);
}

void UpstreamPool::discard(int fd) {
  if (watch_ != nullptr) {
    watch_->discard(fd);
  } else {
    ::close(fd);
  }
}

UpstreamPool::UpstreamPool(std::size_t default_keep, core::Duration default_timeout)
    : default_keep_(default_keep), default_timeout_(default_timeout) {}

UpstreamPool::UpstreamPool(const core::Config& config, std::size_t default_keep,
                           core::Duration default_timeout)
    : UpstreamPool(default_keep, default_timeout) {
  configure(config);
}

void UpstreamPool::configure(const core::Config& config) {
  std::lock_guard lock(mu_);
  for (auto& [key, slot] : slots_) {
    // Its row may change: take what it added to the gauge out of the old row first.
    if (slot.metric < core::metrics::kMaxServers && slot.reported != 0) {
      if (core::metrics::Shard* m = core::metrics::local(); m != nullptr) {
        m->upstream[slot.metric].idle.fetch_sub(slot.reported, std::memory_order_relaxed);
      }
    }
    slot.reported = 0;
    slot.metric = static_cast<std::size_t>(-1);
  }
  for (std::size_t g = 0; g < config.groups.size(); ++g) {
    const core::UpstreamGroup& group = config.groups[g];
    for (std::size_t s = 0; s < group.servers.size(); ++s) {
      const core::UpstreamServer& server = group.servers[s];
      Slot& slot = slots_[server.endpoint.text];
      slot.metric = core::metrics::server_index(config, g, s);
      slot.keep = group.keepalive;
      slot.timeout = group.keepalive_timeout;
      slot.idle.reserve(group.keepalive);
    }
  }
  for (auto& [key, slot] : slots_) {
    report(slot);
  }
}

UpstreamPool::~UpstreamPool() {
  clear();
}

void UpstreamPool::clear() {
  std::lock_guard lock(mu_);
  for (auto& [key, slot] : slots_) {
    for (const Idle& idle : slot.idle) {
      discard(idle.fd);
    }
    slot.idle.clear();
    report(slot);
  }
}

UpstreamPool::Slot& UpstreamPool::slot_for(const core::Endpoint& ep) {
  auto it = slots_.find(ep.text);
  if (it != slots_.end()) {
    return it->second;
  }
  Slot& slot = slots_[ep.text];
  slot.keep = default_keep_;
  slot.timeout = default_timeout_;
  return slot;
}

int UpstreamPool::take(const core::Endpoint& ep, core::TimePoint now) {
  std::lock_guard lock(mu_);
  auto it = slots_.find(ep.text);
  if (it == slots_.end()) {
    return -1;
  }
  Slot& slot = it->second;
  while (!slot.idle.empty()) {
    Idle idle = slot.idle.back();
    slot.idle.pop_back();
    if (now - idle.since < slot.timeout && alive(idle.fd)) {
      report(slot);
      return idle.fd;
    }
    discard(idle.fd);
  }
  report(slot);
  return -1;
}

bool UpstreamPool::put(const core::Endpoint& ep, int fd, core::TimePoint now) {
  std::lock_guard lock(mu_);
  Slot& slot = slot_for(ep);
  // Expired ones are at the front; dropping them first makes room.
  std::size_t expired = 0;
  while (expired < slot.idle.size() && now - slot.idle[expired].since >= slot.timeout) {
    discard(slot.idle[expired].fd);
    ++expired;
  }
  slot.idle.erase(slot.idle.begin(), slot.idle.begin() + static_cast<std::ptrdiff_t>(expired));
  if (slot.keep == 0) {
    discard(fd);
    report(slot);
    return false;
  }
  if (slot.idle.size() >= slot.keep) {
    // Full: keep the fresh connection, close the one idle longest (nginx does the same).
    discard(slot.idle.front().fd);
    slot.idle.erase(slot.idle.begin());
  }
  slot.idle.push_back(Idle{fd, now});
  if (watch_ != nullptr) {
    watch_->watch(fd);
  }
  report(slot);
  return true;
}

void UpstreamPool::sweep(core::TimePoint now) {
  std::lock_guard lock(mu_);
  for (auto& entry : slots_) {
    Slot& slot = entry.second;
    // Past the idle timeout, or closed by the upstream meanwhile (its own keep-alive timeout is
    // often shorter: nginx closes such a connection as soon as it is readable): a descriptor
    // held for nothing.
    std::erase_if(slot.idle, [&](const Idle& idle) {
      if (now - idle.since < slot.timeout && alive(idle.fd)) {
        return false;
      }
      discard(idle.fd);
      return true;
    });
    report(slot);
  }
}

std::size_t UpstreamPool::idle_count(const core::Endpoint& ep) const {
  std::lock_guard lock(mu_);
  auto it = slots_.find(ep.text);
  return it == slots_.end() ? 0 : it->second.idle.size();
}

}  // namespace gearbox::backends
