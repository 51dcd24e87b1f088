// OpAwaitable: the common half of every single-shot I/O awaitable (nop,
// recv, send, connect, timeout, ...). A derived awaitable only says how to
// fill its SQE (prepare) and how to turn the CQE into a result (result).
//
//   struct Nop : OpAwaitable<Nop> {
//     void prepare(io_uring_sqe* sqe, OpSlot&) { io_uring_prep_nop(sqe); }
//     absl::Status result(const OpResult& r) { return status_of(r, "nop"); }
//   };
//   absl::Status s = co_await Nop{};
//   auto n = co_await recv(fd, buf).timeout(std::chrono::seconds(1));   // linked timeout
//
// Lifetime (see operation.h): the op's state lives in an OpSlot until its
// final CQE. The awaiting coroutine's stop token (if its promise has one)
// turns into IORING_OP_ASYNC_CANCEL and the coroutine still resumes only once
// the final CQE is in (ECANCELED -> Cancelled). A per-op timeout() links an
// IORING_OP_LINK_TIMEOUT to the op (both SQEs reserved together); when it
// fires the result is DeadlineExceeded. If the awaiting coroutine is
// destroyed while suspended here, the slot is orphaned and, because the op
// may point into the dying frame, the kernel is made to let go of it before
// the frame's memory is freed.
//
// Awaitables use the loop running on the current thread (EventLoop::current()).
#pragma once

#include <cassert>
#include <cerrno>
#include <chrono>
#include <coroutine>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coring/core/errno_status.h"
#include "coring/core/event_loop.h"
#include "coring/core/operation.h"

namespace coring {

// The status of a CQE result: OK for res >= 0, DeadlineExceeded when the
// linked timeout fired, else the errno's status.
namespace detail {
// The failure half of status_of(), kept out of line so the success path inlines.
[[gnu::noinline, gnu::cold]] inline absl::Status failed_status_of(const OpResult& r,
                                                                  std::string_view what) {
  if (r.timed_out && r.res == -ECANCELED) {
    return absl::DeadlineExceededError(std::string(what) + ": deadline exceeded (linked timeout)");
  }
  return errno_to_status(-r.res, what);
}
}  // namespace detail

inline absl::Status status_of(const OpResult& r, std::string_view what) {
  if (r.res >= 0) [[likely]]
    return absl::OkStatus();
  return detail::failed_status_of(r, what);
}

inline absl::StatusOr<size_t> size_of(const OpResult& r, std::string_view what) {
  if (r.res >= 0) [[likely]]
    return static_cast<size_t>(r.res);
  return detail::failed_status_of(r, what);
}

namespace detail {

// The non-template half: submission, stop token, completion, abandonment.
class OpAwaitableBase : protected OpTarget {
 public:
  OpAwaitableBase() = default;
  // Copying is meaningless once submitted; awaitables are built in place.
  OpAwaitableBase(const OpAwaitableBase&) = delete;
  OpAwaitableBase& operator=(const OpAwaitableBase&) = delete;
  OpAwaitableBase(OpAwaitableBase&& other) noexcept
      : timeout_(other.timeout_), borrowed_(other.borrowed_) {
    assert(!other.in_flight_);
  }

 protected:
  ~OpAwaitableBase() {
    if (in_flight_) {
      stop_callback_.reset();
      loop_->abandon_op(index_, borrowed_);
    }
  }

  // Submits; false when the op completed without suspending (result_ set).
  template <class Prepare>
  bool start(std::coroutine_handle<> h, const std::stop_token& token, Prepare&& prepare) {
    loop_ = EventLoop::current();
    assert(loop_ != nullptr && "coring I/O awaited outside a running EventLoop");
    if (token.stop_requested()) {
      result_ = OpResult{-ECANCELED, 0, false};
      return false;
    }
    OpTable& ops = loop_->ops();
    index_ = ops.acquire(this);
    OpSlot& slot = ops[index_];
    const bool linked = timeout_.has_value();
    if (linked) loop_->reserve_sqes(2);  // both SQEs in the same submission
    io_uring_sqe* sqe = loop_->get_sqe();
    prepare(sqe, slot);
    user_data_ = (static_cast<uint64_t>(slot.generation) << 32) | index_;
    sqe->user_data = user_data_;
    slot.pending = 1;
    if (linked) {
      sqe->flags |= IOSQE_IO_LINK;
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(*timeout_).count();
      slot.ts.tv_sec = ns / 1'000'000'000;
      slot.ts.tv_nsec = ns % 1'000'000'000;
      io_uring_sqe* tsqe = loop_->get_sqe();
      io_uring_prep_link_timeout(tsqe, &slot.ts, 0);
      tsqe->user_data = user_data_ | kCompanionBit;
      slot.pending = 2;
      slot.linked = true;
    }
    handle_ = h;
    in_flight_ = true;
    if (token.stop_possible()) stop_callback_.emplace(token, StopRequest{this});
    return true;
  }

  void on_complete(const OpResult& result) noexcept override {
    in_flight_ = false;
    stop_callback_.reset();
    result_ = result;
    handle_.resume();
  }

  struct StopRequest {
    OpAwaitableBase* self;
    void operator()() const noexcept { self->loop_->cancel_op(self->user_data_); }
  };

  // loop_, user_data_ and index_ are set by start() before anything reads
  // them; not zeroing them saves stores on every operation.
  EventLoop* loop_;
  std::coroutine_handle<> handle_;
  std::optional<std::chrono::nanoseconds> timeout_;
  std::optional<std::stop_callback<StopRequest>> stop_callback_;
  OpResult result_;
  uint64_t user_data_;
  uint32_t index_;
  bool in_flight_ = false;
  // The op points into memory its caller owns (a buffer in the frame):
  // abandonment must cancel synchronously.
  bool borrowed_ = true;
};

}  // namespace detail

template <class Derived>
class OpAwaitable : public detail::OpAwaitableBase {
 public:
  // Adds a deadline to this operation (IORING_OP_LINK_TIMEOUT).
  template <class Rep, class Period>
  Derived&& timeout(std::chrono::duration<Rep, Period> d) && {
    timeout_ = std::chrono::duration_cast<std::chrono::nanoseconds>(d);
    return static_cast<Derived&&>(*this);
  }

  bool await_ready() const noexcept { return false; }

  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) {
    auto prepare = [this](io_uring_sqe* sqe, OpSlot& slot) {
      static_cast<Derived*>(this)->prepare(sqe, slot);
    };
    if constexpr (requires { h.promise().stop_token_ref(); }) {
      return start(h, h.promise().stop_token_ref(), prepare);
    } else if constexpr (requires { h.promise().stop_token(); }) {
      const std::stop_token token = h.promise().stop_token();
      return start(h, token, prepare);
    } else {
      return start(h, std::stop_token{}, prepare);
    }
  }

  auto await_resume() { return static_cast<Derived*>(this)->result(result_); }
};

}  // namespace coring
