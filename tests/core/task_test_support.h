// Helpers for testing the Task layer without an EventLoop: a driver that runs
// a Task detached, a ready queue standing in for the loop, and fake
// awaitables that complete by hand or when their stop token fires.
#pragma once

#include <gtest/gtest.h>

#include <coroutine>
#include <cstdint>
#include <deque>
#include <exception>
#include <optional>
#include <stop_token>
#include <utility>

#include "coring/core/task.h"

namespace coring::testing {

// Runs one Task detached from the test body. Destroying the driver before the
// task finished destroys its frames (as a loop does at shutdown).
class Driver {
 public:
  template <class T>
  explicit Driver(Task<T> task)
      : handle_(detail::make_detached(std::move(task), [this](std::exception_ptr error) noexcept {
          done_ = true;
          error_ = std::move(error);
        })) {}
  Driver(const Driver&) = delete;
  Driver& operator=(const Driver&) = delete;
  ~Driver() {
    if (!done_) handle_.destroy();
  }

  void start() {
    ASSERT_FALSE(started_);
    started_ = true;
    handle_.resume();
  }
  bool done() const { return done_; }
  const std::exception_ptr& error() const { return error_; }

 private:
  std::coroutine_handle<> handle_;
  bool started_ = false;
  bool done_ = false;
  std::exception_ptr error_;
};

template <class T>
Task<> store_result(Task<T> task, std::optional<T>& out) {
  out.emplace(co_await std::move(task));
}

// Runs a task that completes without suspending; returns its result and
// rethrows its exception.
template <class T>
T run_sync(Task<T> task) {
  if constexpr (std::is_void_v<T>) {
    Driver driver(std::move(task));
    driver.start();
    if (!driver.done()) throw std::logic_error("run_sync: task suspended");
    if (driver.error()) std::rethrow_exception(driver.error());
  } else {
    std::optional<T> result;
    Driver driver(store_result(std::move(task), result));
    driver.start();
    if (!driver.done()) throw std::logic_error("run_sync: task suspended");
    if (driver.error()) std::rethrow_exception(driver.error());
    return std::move(*result);
  }
}

// Stands in for an event loop: coroutines to resume later, in order.
class ReadyQueue {
 public:
  void post(std::coroutine_handle<> h) { ready_.push_back(h); }
  // Resumes until nothing is ready; returns how many were resumed.
  int run() {
    int n = 0;
    while (!ready_.empty()) {
      auto h = ready_.front();
      ready_.pop_front();
      h.resume();
      ++n;
    }
    return n;
  }
  bool empty() const { return ready_.empty(); }

 private:
  std::deque<std::coroutine_handle<>> ready_;
};

// A fake I/O operation: co_await suspends until complete() is called or the
// awaiting coroutine's stop token is triggered (like an io_uring op cancelled
// with ASYNC_CANCEL). The co_await yields true when completed, false when
// cancelled. With a ReadyQueue the waiter is resumed from the queue (like a
// CQE); without one it is resumed inline.
class FakeOp {
 public:
  explicit FakeOp(ReadyQueue* queue = nullptr) : queue_(queue) {}
  FakeOp(const FakeOp&) = delete;
  FakeOp& operator=(const FakeOp&) = delete;

  struct Awaiter {
    FakeOp* op;
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) {
      if constexpr (requires { h.promise().stop_token(); }) {
        std::stop_token token = h.promise().stop_token();
        op->saw_stop_possible_ = token.stop_possible();
        if (token.stop_requested()) {
          op->cancelled_ = true;
          return false;
        }
        op->waiter_ = h;
        op->on_stop_.emplace(std::move(token), OnStop{op});
      } else {
        op->waiter_ = h;
      }
      return true;
    }
    bool await_resume() const noexcept {
      op->on_stop_.reset();
      return !op->cancelled_;
    }
  };

  Awaiter operator co_await() noexcept {
    cancelled_ = false;
    return Awaiter{this};
  }

  bool waiting() const { return static_cast<bool>(waiter_); }
  bool cancelled() const { return cancelled_; }
  bool saw_stop_possible() const { return saw_stop_possible_; }
  void complete() { finish(false); }

 private:
  struct OnStop {
    FakeOp* op;
    void operator()() const noexcept { op->finish(true); }
  };

  void finish(bool cancelled) {
    if (!waiter_) return;
    cancelled_ = cancelled;
    auto h = std::exchange(waiter_, {});
    if (queue_ != nullptr) {
      queue_->post(h);
    } else {
      h.resume();
    }
  }

  ReadyQueue* queue_;
  std::coroutine_handle<> waiter_;
  std::optional<std::stop_callback<OnStop>> on_stop_;
  bool cancelled_ = false;
  bool saw_stop_possible_ = false;
};

// co_await CurrentStopToken{} yields the awaiting coroutine's stop token.
struct CurrentStopToken {
  // A constructor, not an aggregate: GCC 12 destroys aggregate temporaries in
  // a co_await operand twice.
  CurrentStopToken() noexcept {}
  std::stop_token token;
  bool await_ready() const noexcept { return false; }
  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) noexcept {
    token = h.promise().stop_token();
    return false;
  }
  std::stop_token await_resume() noexcept { return std::move(token); }
};

// Counts live instances; a frame holding one is alive while it is.
class LiveCounter {
 public:
  explicit LiveCounter(int& live) : live_(&live) { ++*live_; }
  LiveCounter(const LiveCounter& other) : live_(other.live_) { ++*live_; }
  LiveCounter& operator=(const LiveCounter&) = delete;
  ~LiveCounter() { --*live_; }

 private:
  int* live_;
};

// Address of the current stack frame, for "the stack did not grow" checks.
[[gnu::noinline]] inline std::uintptr_t stack_position() {
  return reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
}

}  // namespace coring::testing
