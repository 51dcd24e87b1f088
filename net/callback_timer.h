// CallbackTimer: a one-shot IORING_OP_TIMEOUT that calls a function when it
// completes, for state machines that are not coroutines (a lingering
// stream's deadline). Cancelling is asynchronous: the callback still runs,
// with fired = false. Destroying an armed timer orphans its op (the timespec
// lives in the op slot) and the callback never runs.
//
// Internal to net/.
#pragma once

#include <cerrno>
#include <chrono>

#include "coring/core/event_loop.h"
#include "coring/core/operation.h"

namespace coring::net::detail {

class CallbackTimer final : private OpTarget {
 public:
  // `fired` is false when the timer was cancelled.
  using Callback = void (*)(void* context, bool fired) noexcept;

  CallbackTimer(Callback callback, void* context) noexcept
      : callback_(callback), context_(context) {}
  CallbackTimer(const CallbackTimer&) = delete;
  CallbackTimer& operator=(const CallbackTimer&) = delete;
  ~CallbackTimer() {
    if (in_flight_) loop_->abandon_op(index_, /*borrowed_memory=*/false);
  }

  // Arms the timer; re-arming an armed timer is a no-op.
  void arm(EventLoop& loop, std::chrono::nanoseconds after) noexcept {
    if (in_flight_) return;
    loop_ = &loop;
    OpTable& ops = loop.ops();
    index_ = ops.acquire(this);
    OpSlot& slot = ops[index_];
    slot.pending = 1;
    const int64_t ns = after.count() < 0 ? 0 : after.count();
    slot.ts.tv_sec = ns / 1'000'000'000;
    slot.ts.tv_nsec = ns % 1'000'000'000;
    io_uring_sqe* sqe = loop.get_sqe();
    io_uring_prep_timeout(sqe, &slot.ts, 0, 0);
    user_data_ = ops.user_data(index_);
    sqe->user_data = user_data_;
    in_flight_ = true;
    fired_ = false;
  }
  // Asks the kernel to cancel; the callback then runs with fired = false.
  void cancel() noexcept {
    if (in_flight_) loop_->cancel_op(user_data_);
  }
  bool in_flight() const noexcept { return in_flight_; }
  bool fired() const noexcept { return fired_; }

 private:
  void on_complete(const OpResult& r) noexcept override {
    in_flight_ = false;
    fired_ = r.res == -ETIME;
    callback_(context_, fired_);  // may destroy this timer: touch nothing after
  }

  Callback callback_;
  void* context_;
  EventLoop* loop_ = nullptr;
  uint64_t user_data_ = 0;
  uint32_t index_ = 0;
  bool in_flight_ = false;
  bool fired_ = false;
};

}  // namespace coring::net::detail
