// SubmitHook: work an object wants done once, on its loop's thread, just
// before the loop next enters the kernel (EventLoop::before_submit).
//
// Why: a coroutine often makes several requests of one kind within one
// iteration - an echo answers every frame of a received chunk with its own
// write. Starting an op at the first of them sends only that one; waiting
// until the iteration is about to submit lets the later ones join it (one
// send for all the echoes of a chunk instead of one per frame), at no cost
// in latency, since nothing reaches the kernel before that submit anyway.
//
// EventLoop::before_next_submit() arms a hook for the submit after the next
// one instead (the loop then does not block in between): a hook that finds
// more of the same work certain to arrive within one turn (a recv armed on
// a socket known to hold more input) lets that work join it.
//
// Intrusive and owned by the object that arms it: arming an armed hook does
// nothing, and the object disarms it (EventLoop::cancel_before_submit)
// before it goes away. Owner thread only.
#pragma once

namespace coring {

struct SubmitHook {
  explicit SubmitHook(void (*run_fn)(SubmitHook*) noexcept) noexcept : run(run_fn) {}
  SubmitHook(const SubmitHook&) = delete;
  SubmitHook& operator=(const SubmitHook&) = delete;

  bool armed() const noexcept { return armed_; }

  // Called once per arming; the hook is disarmed when it runs, so it may arm
  // itself again (it then runs again before the same submit).
  void (*run)(SubmitHook* self) noexcept;

 private:
  friend class EventLoop;
  SubmitHook* prev_ = nullptr;
  SubmitHook* next_ = nullptr;
  bool armed_ = false;
  bool later_ = false;  // armed by before_next_submit(), not yet due
};

}  // namespace coring
