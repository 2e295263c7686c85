// A fixed queue of iovecs lent to a driver for one write slot. The bytes it points at are owned
// elsewhere (a head string, an input buffer, static text) and must outlive the write.
#pragma once

#include <sys/uio.h>

#include <array>
#include <cassert>
#include <cstddef>
#include <span>
#include <string_view>

namespace gearbox::core {

class OutQueue {
 public:
  static constexpr std::size_t kMaxPieces = 8;

  void push(std::string_view bytes) {
    if (bytes.empty()) {
      return;
    }
    assert(count_ < kMaxPieces);
    iov_[count_++] = {const_cast<char*>(bytes.data()), bytes.size()};
    bytes_ += bytes.size();
  }
  bool empty() const { return bytes_ == 0; }
  std::size_t bytes() const { return bytes_; }
  std::size_t free_pieces() const { return kMaxPieces - count_; }
  std::span<const iovec> pending() const { return {iov_.data() + first_, count_ - first_}; }

  // n bytes of pending() were written.
  void consume(std::size_t n) {
    assert(n <= bytes_);
    bytes_ -= n;
    while (n > 0) {
      iovec& v = iov_[first_];
      if (n >= v.iov_len) {
        n -= v.iov_len;
        ++first_;
      } else {
        v.iov_base = static_cast<char*>(v.iov_base) + n;
        v.iov_len -= n;
        n = 0;
      }
    }
    if (bytes_ == 0) {
      first_ = count_ = 0;
    }
  }
  void clear() {
    first_ = count_ = 0;
    bytes_ = 0;
  }

 private:
  std::array<iovec, kMaxPieces> iov_{};
  std::size_t first_ = 0;
  std::size_t count_ = 0;
  std::size_t bytes_ = 0;
};

}  // namespace gearbox::core
