// The prefork scoreboard: a shared anonymous mapping of per-worker slots.
#include "backends/prefork/scoreboard.hpp"

#include <sys/mman.h>

#include <new>

namespace gearbox::backends {

static_assert(std::atomic<pid_t>::is_always_lock_free);
static_assert(std::atomic<WorkerState>::is_always_lock_free);
static_assert(std::atomic<std::uint64_t>::is_always_lock_free);

const char* worker_state_name(WorkerState state) {
  switch (state) {
    case WorkerState::kFree:
      return "free";
    case WorkerState::kStarting:
      return "starting";
    case WorkerState::kIdle:
      return "idle";
    case WorkerState::kReading:
      return "reading";
    case WorkerState::kWriting:
      return "writing";
    case WorkerState::kProxying:
      return "proxying";
  }
  return "?";
}

bool Scoreboard::create(std::size_t slots) {
  void* mem = ::mmap(nullptr, slots * sizeof(ScoreSlot), PROT_READ | PROT_WRITE,
                     MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (mem == MAP_FAILED) {
    return false;
  }
  slots_ = static_cast<ScoreSlot*>(mem);
  size_ = slots;
  for (std::size_t i = 0; i < slots; ++i) {
    new (&slots_[i]) ScoreSlot();
  }
  return true;
}

Scoreboard::~Scoreboard() {
  if (slots_ != nullptr) {
    ::munmap(slots_, size_ * sizeof(ScoreSlot));
  }
}

int Scoreboard::find_free() const {
  for (std::size_t i = 0; i < size_; ++i) {
    if (slots_[i].state.load(std::memory_order_relaxed) == WorkerState::kFree) {
      return static_cast<int>(i);
    }
  }
  return -1;
}

}  // namespace gearbox::backends
