// Fiber stacks: fixed size with a PROT_NONE guard page below (an overflow faults instead of
// corrupting a neighbour), recycled through a buffered channel used as a leaky free list
// (Effective Go's "leaky buffer": take one if any, else make one; give back unless full).
#pragma once

#include <boost/context/protected_fixedsize_stack.hpp>
#include <boost/context/stack_context.hpp>
#include <boost/fiber/buffered_channel.hpp>
#include <cstddef>

namespace gearbox::backends::fiber {

class StackPool {
 public:
  // `size`: usable bytes per stack (rounded up to pages); `keep`: most stacks kept for reuse.
  StackPool(std::size_t size, std::size_t keep);
  ~StackPool();  // unmaps the kept stacks; every fiber using this pool must be gone
  StackPool(const StackPool&) = delete;
  StackPool& operator=(const StackPool&) = delete;

  // Thread-safe, never suspend: called where Boost.Fiber creates and destroys fiber contexts.
  boost::context::stack_context allocate();
  void deallocate(boost::context::stack_context& sctx) noexcept;

 private:
  boost::context::protected_fixedsize_stack make_;
  boost::fibers::buffered_channel<boost::context::stack_context> free_;
};

// The StackAllocator handed to boost::fibers::fiber (copied into each fiber's control block).
struct PooledStack {
  StackPool* pool;
  boost::context::stack_context allocate() { return pool->allocate(); }
  void deallocate(boost::context::stack_context& sctx) noexcept { pool->deallocate(sctx); }
};

}  // namespace gearbox::backends::fiber
