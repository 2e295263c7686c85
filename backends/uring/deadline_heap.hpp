// The loop's deadlines: an intrusive binary min-heap of the connections that have one. Moving a
// connection's deadline is O(log n) and allocates nothing (the heap vector only grows); the loop
// waits on the ring until the top's deadline, so no timer syscall is made per request.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "server/connection.hpp"

namespace gearbox::backends::uring {

// What an element carries (a base of the connection's pump).
struct DeadlineEntry {
  core::TimePoint when = core::kNever;
  // 32 bits: a connection's pump lays its descriptor in the padding after it.
  std::uint32_t index = kNotQueued;
  static constexpr std::uint32_t kNotQueued = static_cast<std::uint32_t>(-1);
};

class DeadlineHeap {
 public:
  // Sets e's deadline (kNever removes it).
  void set(DeadlineEntry* e, core::TimePoint when) {
    if (e->index == DeadlineEntry::kNotQueued) {
      if (when == core::kNever) {
        return;
      }
      e->when = when;
      e->index = static_cast<std::uint32_t>(heap_.size());
      heap_.push_back(e);
      up(e->index);
      return;
    }
    if (when == e->when) {
      return;
    }
    if (when == core::kNever) {
      remove(e);
      return;
    }
    const bool earlier = when < e->when;
    e->when = when;
    if (earlier) {
      up(e->index);
    } else {
      down(e->index);
    }
  }

  void remove(DeadlineEntry* e) {
    if (e->index == DeadlineEntry::kNotQueued) {
      return;
    }
    const std::size_t i = e->index;
    e->index = DeadlineEntry::kNotQueued;
    e->when = core::kNever;
    DeadlineEntry* last = heap_.back();
    heap_.pop_back();
    if (last != e) {
      heap_[i] = last;
      last->index = static_cast<std::uint32_t>(i);
      up(i);
      down(last->index);
    }
  }

  core::TimePoint earliest() const { return heap_.empty() ? core::kNever : heap_.front()->when; }

  // Removes and returns the top when its deadline is <= now, else nullptr.
  DeadlineEntry* pop_due(core::TimePoint now) {
    if (heap_.empty() || heap_.front()->when > now) {
      return nullptr;
    }
    DeadlineEntry* e = heap_.front();
    remove(e);
    return e;
  }

  std::size_t size() const { return heap_.size(); }

 private:
  void place(std::size_t i, DeadlineEntry* e) {
    heap_[i] = e;
    e->index = static_cast<std::uint32_t>(i);
  }
  void up(std::size_t i) {
    DeadlineEntry* e = heap_[i];
    while (i > 0) {
      std::size_t parent = (i - 1) / 2;
      if (heap_[parent]->when <= e->when) {
        break;
      }
      place(i, heap_[parent]);
      i = parent;
    }
    place(i, e);
  }
  void down(std::size_t i) {
    DeadlineEntry* e = heap_[i];
    const std::size_t n = heap_.size();
    for (;;) {
      std::size_t child = 2 * i + 1;
      if (child >= n) {
        break;
      }
      if (child + 1 < n && heap_[child + 1]->when < heap_[child]->when) {
        ++child;
      }
      if (e->when <= heap_[child]->when) {
        break;
      }
      place(i, heap_[child]);
      i = child;
    }
    place(i, e);
  }

  std::vector<DeadlineEntry*> heap_;
};

}  // namespace gearbox::backends::uring
