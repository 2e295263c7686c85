// The `pool` backend: one epoll reactor thread owns the listener, every waiting connection and
// their deadlines, and hands ready connections through a bounded queue to a fixed pool of worker
// threads (half-sync/half-async: Apache's event MPM, Java's ThreadPoolExecutor behind a selector).
#pragma once

#include <atomic>
#include <string>

#include <memory>

#include "backends/common/generation.hpp"

namespace gearbox::backends {

// What the pool is doing, written by the reactor and the workers, read by status_json().
struct PoolStatus {
  std::atomic<int> threads{0};      // worker threads
  std::atomic<int> busy{0};         // workers running a connection now
  std::atomic<int> queued{0};       // ready connections waiting for a worker
  std::atomic<int> connections{0};  // connections the reactor holds (waiting or queued or busy)
};

class PoolBackend final : public ReloadingBackend {
 public:
  int run(const core::Config& config, core::Listener& listener, int drain_fd) override;
  // The pool's worker threads, how many are busy, and the queue of ready connections.
  std::string status_json() const override;

 private:
  PoolStatus status_;
};

std::unique_ptr<core::Backend> make_pool_backend();

// Worker threads for --threads 0: twice the CPUs the process may run on (at least 2). Workers
// never wait for I/O, so one per CPU would keep every core busy; the second one per CPU covers a
// worker stalled by preemption, a page fault or a long /cpu request, so the cores stay busy and
// short requests still find a free worker.
int default_pool_threads();

// Ready connections the dispatch queue holds per worker before the reactor stops accepting.
inline constexpr int kQueuePerThread = 4;

}  // namespace gearbox::backends
