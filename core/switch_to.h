// switch_to(): moves the awaiting coroutine to another EventLoop's thread.
//
//   co_await coring::switch_to(other_loop);   // continues on other_loop's thread
//
// Carried by the target loop's post queue and woken with IORING_OP_MSG_RING
// (see event_loop.h); the queue node lives in the awaiting frame, so a switch
// allocates nothing. Switching to the loop already running is a no-op.
// yield() lets the other ready coroutines of this loop run first.
#pragma once

#include <coroutine>

#include "coring/core/event_loop.h"
#include "coring/core/post_queue.h"

namespace coring {

class SwitchTo : private PostNode {
 public:
  explicit SwitchTo(EventLoop& target) noexcept : target_(&target) {}

  bool await_ready() const noexcept { return EventLoop::current() == target_; }
  void await_suspend(std::coroutine_handle<> h) noexcept {
    handle_ = h;
    run = [](PostNode* self) noexcept { static_cast<SwitchTo*>(self)->handle_.resume(); };
    target_->post_node(this);
  }
  void await_resume() const noexcept {}

 private:
  EventLoop* target_;
  std::coroutine_handle<> handle_;
};

inline SwitchTo switch_to(EventLoop& target) noexcept { return SwitchTo(target); }

class Yield {
 public:
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) { EventLoop::current()->schedule(h); }
  void await_resume() const noexcept {}
};

inline Yield yield() noexcept { return Yield{}; }

}  // namespace coring
