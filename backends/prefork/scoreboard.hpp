// The prefork scoreboard: one slot per worker process in an anonymous shared mapping made by the
// master before it forks (Apache's scoreboard). The only state master and workers share.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace gearbox::backends {

enum class WorkerState : std::uint8_t {
  kFree,      // no worker in this slot
  kStarting,  // forked, not yet waiting for connections (counts as idle for spawning)
  kIdle,      // waiting in accept
  kReading,   // serving: waiting for or reading a request
  kWriting,   // serving: writing a response
  kProxying,  // serving: talking to an upstream
};

const char* worker_state_name(WorkerState state);

// One worker's slot. Written by its worker (state, counters) and by the master (pid, and state
// on fork and reap); lock-free atomics, so both sides read without tearing.
struct alignas(64) ScoreSlot {
  std::atomic<pid_t> pid{0};
  std::atomic<WorkerState> state{WorkerState::kFree};
  std::atomic<std::uint64_t> connections{0};  // accepted by this worker
  std::atomic<std::uint64_t> requests{0};     // requests begun (a pipelined burst counts once)
};

class Scoreboard {
 public:
  // Maps `slots` zeroed slots MAP_SHARED | MAP_ANONYMOUS. Returns false (errno set) on failure.
  bool create(std::size_t slots);
  Scoreboard() = default;
  ~Scoreboard();  // unmaps
  Scoreboard(const Scoreboard&) = delete;
  Scoreboard& operator=(const Scoreboard&) = delete;

  std::size_t size() const { return size_; }
  ScoreSlot& slot(std::size_t i) { return slots_[i]; }
  const ScoreSlot& slot(std::size_t i) const { return slots_[i]; }
  // Index of a kFree slot, or -1 when every slot is taken.
  int find_free() const;

 private:
  ScoreSlot* slots_ = nullptr;
  std::size_t size_ = 0;
};

}  // namespace gearbox::backends
