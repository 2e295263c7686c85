// The input buffers of one worker's connections: a free list, so that a connection holds a
// buffer only while it has bytes to keep (an idle keep-alive connection holds none). Not
// thread-safe: one pool per worker thread, outliving its connections.
#pragma once

#include <cstddef>
#include <vector>

namespace gearbox::core {

class BufferPool {
 public:
  static constexpr std::size_t kSize = 16 * 1024;  // every buffer has this size

  // Keeps at most `keep` free buffers; more given back are freed.
  explicit BufferPool(std::size_t keep = 256) : keep_(keep) {}
  ~BufferPool() {
    for (char* b : free_) {
      delete[] b;
    }
  }
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  // A buffer of kSize bytes, the most recently given back first (its pages are warm).
  char* take() {
    if (free_.empty()) {
      return new char[kSize];
    }
    char* b = free_.back();
    free_.pop_back();
    return b;
  }
  void give(char* b) {
    if (b == nullptr) {
      return;
    }
    if (free_.size() < keep_) {
      free_.push_back(b);
    } else {
      delete[] b;
    }
  }
  std::size_t free_count() const { return free_.size(); }

 private:
  std::size_t keep_;
  std::vector<char*> free_;
};

// Takes from `pool`, or allocates when there is none (tests, drivers without a pool).
inline char* take_buffer(BufferPool* pool) {
  return pool != nullptr ? pool->take() : new char[BufferPool::kSize];
}
inline void give_buffer(BufferPool* pool, char* b) {
  if (pool != nullptr) {
    pool->give(b);
  } else {
    delete[] b;
  }
}

}  // namespace gearbox::core
