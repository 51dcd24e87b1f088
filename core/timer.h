// Timers: sleep_for / sleep_until on IORING_OP_TIMEOUT (CLOCK_MONOTONIC,
// i.e. std::chrono::steady_clock), and per-operation deadlines, which every
// awaitable offers as .timeout(d) (a linked IORING_OP_LINK_TIMEOUT).
//
//   absl::Status s = co_await coring::sleep_for(std::chrono::milliseconds(5));
//   s = co_await coring::sleep_until(std::chrono::steady_clock::now() + 1s);
//   auto n = co_await coring::recv(fd, buf).timeout(std::chrono::seconds(2));
//   // n.status() is DeadlineExceeded if nothing arrived within 2 s
//
// A sleep returns OK when it expires and Cancelled when its coroutine's stop
// token is triggered first.
#pragma once

#include <chrono>

#include "coring/core/op_awaitable.h"

namespace coring {

class Sleep : public OpAwaitable<Sleep> {
 public:
  Sleep(std::chrono::nanoseconds duration, bool absolute) noexcept
      : duration_(duration), absolute_(absolute) {
    borrowed_ = false;  // the timespec lives in the op slot
  }

  void prepare(io_uring_sqe* sqe, OpSlot& slot) noexcept {
    const int64_t ns = duration_.count() < 0 ? 0 : duration_.count();
    slot.ts.tv_sec = ns / 1'000'000'000;
    slot.ts.tv_nsec = ns % 1'000'000'000;
    io_uring_prep_timeout(sqe, &slot.ts, 0, absolute_ ? IORING_TIMEOUT_ABS : 0);
  }
  absl::Status result(const OpResult& r) const {
    if (r.res == -ETIME || r.res >= 0) return absl::OkStatus();
    return status_of(r, "sleep");
  }

 private:
  std::chrono::nanoseconds duration_;
  bool absolute_;
};

template <class Rep, class Period>
Sleep sleep_for(std::chrono::duration<Rep, Period> d) noexcept {
  return Sleep(std::chrono::duration_cast<std::chrono::nanoseconds>(d), false);
}

inline Sleep sleep_until(std::chrono::steady_clock::time_point t) noexcept {
  return Sleep(std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()), true);
}

}  // namespace coring
