// CallbackTimer: a one-shot IORING_OP_TIMEOUT that calls a function when it
// completes, for state machines that are not coroutines (a lingering
// stream's deadline). Cancelling is asynchronous: the callback still runs,
// with fired = false - unless arm() was called while the cancel was on its
// way: then the new deadline replaces the old one and the callback runs for
// the new one only. Destroying an armed timer orphans its op (the timespec
// lives in the op slot) and the callback never runs.
//
// Internal to net/.
#pragma once

#include <cerrno>
#include <chrono>
#include <utility>

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

  // Arms the timer. Re-arming an armed timer is a no-op, unless it is being
  // cancelled: then it is armed again, `after` from now, once the cancelled
  // op has ended.
  void arm(EventLoop& loop, std::chrono::nanoseconds after) noexcept {
    if (in_flight_) {
      if (cancelling_) {
        rearm_ = true;
        rearm_at_ = std::chrono::steady_clock::now() + after;
      }
      return;
    }
    loop_ = &loop;
    start(after);
  }
  // Asks the kernel to cancel; the callback then runs with fired = false.
  void cancel() noexcept {
    if (!in_flight_) return;
    rearm_ = false;
    if (!cancelling_) {
      cancelling_ = true;
      loop_->cancel_op(user_data_);
    }
  }
  bool in_flight() const noexcept { return in_flight_; }
  bool fired() const noexcept { return fired_; }

 private:
  void start(std::chrono::nanoseconds after) noexcept {
    OpTable& ops = loop_->ops();
    index_ = ops.acquire(this);
    OpSlot& slot = ops[index_];
    slot.pending = 1;
    const int64_t ns = after.count() < 0 ? 0 : after.count();
    slot.ts.tv_sec = ns / 1'000'000'000;
    slot.ts.tv_nsec = ns % 1'000'000'000;
    io_uring_sqe* sqe = loop_->get_sqe();
    io_uring_prep_timeout(sqe, &slot.ts, 0, 0);
    user_data_ = ops.user_data(index_);
    sqe->user_data = user_data_;
    in_flight_ = true;
    fired_ = false;
  }

  void on_complete(const OpResult& r) noexcept override {
    in_flight_ = false;
    cancelling_ = false;
    if (std::exchange(rearm_, false)) {
      // Replaced while its cancel was on the way: whether it fired or not,
      // the deadline that counts is the new one.
      start(rearm_at_ - std::chrono::steady_clock::now());
      return;
    }
    fired_ = r.res == -ETIME;
    callback_(context_, fired_);  // may destroy this timer: touch nothing after
  }

  Callback callback_;
  void* context_;
  EventLoop* loop_ = nullptr;
  uint64_t user_data_ = 0;
  uint32_t index_ = 0;
  std::chrono::steady_clock::time_point rearm_at_{};
  bool in_flight_ = false;
  bool fired_ = false;
  bool cancelling_ = false;  // cancel() asked the kernel; the op has not ended yet
  bool rearm_ = false;       // arm() came while cancelling: start again at rearm_at_
};

}  // namespace coring::net::detail
