// The leaky stack pool over a Boost.Fiber buffered channel (see stack_pool.hpp).
#include "backends/fiber/stack_pool.hpp"

#include <bit>

namespace gearbox::backends::fiber {
namespace {

// buffered_channel wants a power of two and holds one element less.
std::size_t channel_capacity(std::size_t keep) {
  return std::bit_ceil(std::max<std::size_t>(keep + 1, 2));
}

}  // namespace

StackPool::StackPool(std::size_t size, std::size_t keep)
    : make_(size), free_(channel_capacity(keep)) {}

StackPool::~StackPool() {
  boost::context::stack_context sctx;
  while (free_.try_pop(sctx) == boost::fibers::channel_op_status::success) {
    make_.deallocate(sctx);
  }
}

boost::context::stack_context StackPool::allocate() {
  boost::context::stack_context sctx;
  if (free_.try_pop(sctx) == boost::fibers::channel_op_status::success) {
    return sctx;
  }
  return make_.allocate();
}

void StackPool::deallocate(boost::context::stack_context& sctx) noexcept {
  if (free_.try_push(sctx) != boost::fibers::channel_op_status::success) {
    make_.deallocate(sctx);
  }
}

}  // namespace gearbox::backends::fiber
