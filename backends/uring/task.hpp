// Coroutine plumbing of the uring backend: the resolver an SQE's user_data points at, the
// fire-and-forget coroutine type a connection runs as, and the awaitable for one SQE
// (CarterLi/liburing4cpp's sqe_awaitable: the CQE's result resumes the awaiting coroutine).
#pragma once

#include <liburing.h>

#include <coroutine>
#include <exception>
#include <utility>

namespace gearbox::backends::uring {

// What an SQE's user_data points at. The loop calls resolve() once per CQE with its res and
// flags (a multishot operation: once per CQE, IORING_CQE_F_MORE set while more will follow).
// The object must stay alive until its last CQE has been resolved.
class Resolver {
 public:
  virtual void resolve(int res, unsigned flags) = 0;

 protected:
  ~Resolver() = default;
};

// user_data of SQEs whose completion nobody waits for (cancel requests, timeout updates).
inline constexpr __u64 kIgnoredUserData = 0;

// A coroutine that starts at once and frees its frame when it returns. Nobody awaits it: whoever
// spawns it learns of its end through what the body does last (a counter, a list).
struct Detached {
  struct promise_type {
    Detached get_return_object() noexcept { return {}; }
    std::suspend_never initial_suspend() noexcept { return {}; }
    std::suspend_never final_suspend() noexcept { return {}; }
    void return_void() noexcept {}
    void unhandled_exception() noexcept { std::terminate(); }
  };
};

// Where resumable coroutines are queued: the loop resumes them after the CQEs of a turn have been
// resolved, never from inside another coroutine (so no stack grows with the number resumed).
class Scheduler {
 public:
  virtual void schedule(std::coroutine_handle<> h) = 0;
  // A free SQE whose CQE(s) go to `r` (the ring is submitted to make room when its SQ is full).
  // Counted as outstanding until its last CQE (one without IORING_CQE_F_MORE) is resolved.
  virtual io_uring_sqe* sqe_for(Resolver* r) = 0;
  // A free SQE whose CQE nobody waits for (cancel requests).
  virtual io_uring_sqe* sqe_ignored() = 0;

 protected:
  ~Scheduler() = default;
};

// `co_await` one SQE: `prep` fills it when the coroutine suspends; the result is the CQE's res
// (>= 0, or -errno). `*token`, when given, points at the operation while it is in flight so that
// someone else can cancel it (IORING_OP_ASYNC_CANCEL by user_data); it is reset on completion.
template <class Prep>
class SqeAwaitable final : public Resolver {
 public:
  SqeAwaitable(Scheduler& sched, Prep prep, Resolver** token = nullptr)
      : sched_(sched), prep_(std::move(prep)), token_(token) {}
  SqeAwaitable(const SqeAwaitable&) = delete;
  SqeAwaitable& operator=(const SqeAwaitable&) = delete;

  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) {
    waiter_ = h;
    prep_(sched_.sqe_for(this));
    if (token_ != nullptr) {
      *token_ = this;
    }
  }
  int await_resume() const noexcept { return res_; }

  void resolve(int res, unsigned flags) override {
    (void)flags;
    res_ = res;
    if (token_ != nullptr) {
      *token_ = nullptr;
    }
    sched_.schedule(waiter_);
  }

 private:
  Scheduler& sched_;
  Prep prep_;
  Resolver** token_;
  std::coroutine_handle<> waiter_;
  int res_ = 0;
};

// Asks the kernel to cancel the operation whose user_data is `target` (its own CQE is ignored;
// the target completes with -ECANCELED, or with its result if it finished first).
inline void prep_cancel(Scheduler& sched, const Resolver* target) {
  io_uring_prep_cancel64(sched.sqe_ignored(), reinterpret_cast<__u64>(target), 0);
}

}  // namespace gearbox::backends::uring
