// The core's own cost per request, without I/O (Google Benchmark): core::Connection driven
// in memory by a minimal driver (bytes in, writes acknowledged, nothing copied out), for a
// keep-alive GET /plaintext, 16 pipelined ones per read (TechEmpower's depth), and a proxied
// GET over a pooled upstream connection. `time/req` (CPU time per request) is the figure;
// allocations per request and the heap bytes one idle keep-alive connection holds are counted by
// the operator new below.
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "server/balancer.hpp"
#include "server/buffer_pool.hpp"
#include "server/config.hpp"
#include "server/connection.hpp"
#include "tests/support/proxy_config.hpp"

// --- Heap accounting: every operator new in this binary ---------------------------------------
namespace {
std::atomic<long long> g_allocs{0};
std::atomic<long long> g_live_bytes{0};
}  // namespace

void* operator new(std::size_t n) {
  void* p = std::malloc(n == 0 ? 1 : n);
  if (p == nullptr) {
    throw std::bad_alloc();
  }
  g_allocs.fetch_add(1, std::memory_order_relaxed);
  g_live_bytes.fetch_add(static_cast<long long>(malloc_usable_size(p)), std::memory_order_relaxed);
  return p;
}
void operator delete(void* p) noexcept {
  if (p != nullptr) {
    g_live_bytes.fetch_sub(static_cast<long long>(malloc_usable_size(p)),
                           std::memory_order_relaxed);
    std::free(p);
  }
}
void operator delete(void* p, std::size_t) noexcept {
  operator delete(p);
}
void* operator new[](std::size_t n) {
  return operator new(n);
}
void operator delete[](void* p) noexcept {
  operator delete(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  operator delete(p);
}

namespace gearbox::bench {
namespace {

using core::Connection;
using core::TimePoint;

constexpr std::string_view kGet = "GET /plaintext HTTP/1.1\r\nHost: bench\r\n\r\n";
constexpr std::string_view kUpstreamResponse =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!";

// What the connections of one worker share.
struct Worker {
  explicit Worker(core::Config c, bool owned_input) : cfg(std::move(c)) {
    ctx.config = &cfg;
    ctx.buffers = &buffers;
    ctx.driver_owns_input = owned_input;
    if (cfg.mode == core::Mode::kProxy) {
      upstreams = std::make_unique<core::Upstreams>(cfg);
      ctx.upstreams = upstreams.get();
    }
  }
  core::Config cfg;
  core::BufferPool buffers;
  core::Context ctx;
  std::unique_ptr<core::Upstreams> upstreams;
};

// One connection and the driver around it. The clock moves 1 µs per request so that the Date
// second changes now and then, as it does under load.
class Driver {
 public:
  explicit Driver(Worker& w)
      : conn_(std::make_unique<Connection>(w.ctx, core::Peer{"127.0.0.1", nullptr}, now_)) {}

  // Feeds `input` (as one read when it fits) and runs until the connection wants input again.
  // Returns the number of client writes it took.
  int exchange(std::string_view input) {
    std::size_t pos = 0;
    int writes = 0;
    for (;;) {
      core::Wants w = conn_->wants();
      if (w.done) {
        std::abort();
      }
      if (!w.client_write.empty()) {
        std::size_t total = 0;
        for (const iovec& v : w.client_write) {
          total += v.iov_len;
        }
        ++writes;
        conn_->on_client_written(total, now_);
        continue;
      }
      if (w.release_upstream != core::Release::kNone) {
        conn_->on_upstream_released(now_);
        continue;
      }
      if (w.upstream_connect != nullptr) {
        conn_->on_upstream_connected(true, now_);
        continue;
      }
      if (!w.upstream_write.empty()) {
        std::size_t total = 0;
        for (const iovec& v : w.upstream_write) {
          total += v.iov_len;
        }
        conn_->on_upstream_written(total, now_);
        continue;
      }
      if (!w.upstream_read.empty()) {
        std::memcpy(w.upstream_read.data(), kUpstreamResponse.data(), kUpstreamResponse.size());
        conn_->on_upstream_read(kUpstreamResponse.size(), now_);
        continue;
      }
      if (w.client_data && pos < input.size() && w.client_read.empty()) {
        // The driver owns the bytes (a ring's provided buffer): handed over, parsed in place.
        pos += conn_->on_client_data(input.substr(pos), now_);
        continue;
      }
      if (!w.client_read.empty() && pos < input.size()) {
        std::size_t n = std::min(w.client_read.size(), input.size() - pos);
        std::memcpy(w.client_read.data(), input.data() + pos, n);
        pos += n;
        conn_->on_client_read(n, now_);
        continue;
      }
      now_ += std::chrono::microseconds(1);
      return writes;
    }
  }

 private:
  TimePoint now_ = TimePoint{} + std::chrono::hours(1);
  std::unique_ptr<Connection> conn_;
};

std::string repeat(std::string_view s, int n) {
  std::string out;
  for (int i = 0; i < n; ++i) {
    out += s;
  }
  return out;
}

void report(benchmark::State& state, long long requests, long long allocs, long long writes) {
  state.counters["time/req"] = benchmark::Counter(
      static_cast<double>(requests), benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.counters["allocs/req"] =
      static_cast<double>(allocs) / static_cast<double>(requests > 0 ? requests : 1);
  state.counters["writes/req"] =
      static_cast<double>(writes) / static_cast<double>(requests > 0 ? requests : 1);
}

void run_script(benchmark::State& state, core::Config cfg, std::string_view request, int depth,
                bool owned) {
  Worker worker(std::move(cfg), owned);
  Driver d(worker);
  const std::string input = repeat(request, depth);
  d.exchange(input);  // warm: buffers and strings reach their size
  long long writes = 0;
  const long long allocs_before = g_allocs.load();
  for (auto _ : state) {
    writes += d.exchange(input);
  }
  const long long requests = static_cast<long long>(state.iterations()) * depth;
  report(state, requests, g_allocs.load() - allocs_before, writes);
}

// Arg 0: bytes read into the span the core lends (blocking pumps); 1: handed over from the
// driver's memory with on_client_data (the ring pump's provided buffers).
void BM_PlaintextKeepAlive(benchmark::State& state) {
  run_script(state, core::Config{}, kGet, 1, state.range(0) != 0);
}
BENCHMARK(BM_PlaintextKeepAlive)->Arg(0)->Arg(1);

void BM_PlaintextPipelined16(benchmark::State& state) {
  run_script(state, core::Config{}, kGet, 16, state.range(0) != 0);
}
BENCHMARK(BM_PlaintextPipelined16)->Arg(0)->Arg(1);

void BM_ProxiedGet(benchmark::State& state) {
  run_script(state, test::proxy_config(), kGet, 1, state.range(0) != 0);
}
BENCHMARK(BM_ProxiedGet)->Arg(0)->Arg(1);

// Heap bytes held by one keep-alive connection idle between requests (after one request),
// measured over 1,000 of them.
void idle_bytes(benchmark::State& state, core::Config cfg) {
  constexpr int kConnections = 1000;
  double per_connection = 0;
  Worker worker(std::move(cfg), state.range(0) != 0);
  for (auto _ : state) {
    std::vector<std::unique_ptr<Driver>> drivers;
    drivers.reserve(kConnections);
    const long long before = g_live_bytes.load();
    for (int i = 0; i < kConnections; ++i) {
      drivers.push_back(std::make_unique<Driver>(worker));
      drivers.back()->exchange(kGet);
    }
    per_connection = static_cast<double>(g_live_bytes.load() - before) / kConnections;
  }
  state.counters["bytes/idle_conn"] = per_connection;
}

void BM_IdleConnectionBytesEcho(benchmark::State& state) {
  idle_bytes(state, core::Config{});
}
BENCHMARK(BM_IdleConnectionBytesEcho)->Arg(0)->Arg(1)->Iterations(1);

void BM_IdleConnectionBytesProxy(benchmark::State& state) {
  idle_bytes(state, test::proxy_config());
}
BENCHMARK(BM_IdleConnectionBytesProxy)->Arg(0)->Arg(1)->Iterations(1);

}  // namespace
}  // namespace gearbox::bench

BENCHMARK_MAIN();
