// The input buffers of one worker's connections: a free list, so that a connection holds a
// buffer only while it has bytes to keep (an idle keep-alive connection holds none). Not
// thread-safe: one pool per worker thread, outliving its connections.
#pragma once

#include <cstddef>
#include <vector>

namespace gearbox::core {

class BufferPool {
 public:
  static constexpr std::size_t kSize = 16 * 1024;  // the default size of a pool's buffers

  // Keeps at most `keep` free buffers of `size` bytes each; more given back are freed. A driver
  // whose connections hold a buffer only mid-message (none while idle) may choose larger ones:
  // a large body then moves in fewer, larger reads and writes.
  explicit BufferPool(std::size_t keep = 256, std::size_t size = kSize)
      : keep_(keep), size_(size) {}
  ~BufferPool() {
    for (char* b : free_) {
      delete[] b;
    }
  }
  BufferPool(const BufferPool&) = delete;
  BufferPool& operator=(const BufferPool&) = delete;

  std::size_t size() const { return size_; }

  // A buffer of size() bytes, the most recently given back first (its pages are warm).
  char* take() {
    if (free_.empty()) {
      return new char[size_];
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
  std::size_t size_;
  std::vector<char*> free_;
};

// The size of the buffers take_buffer() gives.
inline std::size_t buffer_size(const BufferPool* pool) {
  return pool != nullptr ? pool->size() : BufferPool::kSize;
}
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
