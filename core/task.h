// Task<T>: the coroutine type of coring. A function returning Task<T> is a
// coroutine producing one T (or an exception) for exactly one awaiter.
//
//   Task<int> answer() { co_return 42; }
//   Task<> handler() {
//     int v = co_await answer();          // starts answer() and waits for it
//   }
//
// * Lazy: calling the function allocates its frame (through
//   core/frame_allocator.h) and runs nothing; the body starts when the Task is
//   co_awaited. A Task is awaited at most once (lvalue or rvalue; the result
//   is moved out to the awaiter).
// * Symmetric transfer: awaiting starts the child with a tail-resume and the
//   child's final_suspend resumes its awaiter the same way, so chains of
//   synchronously completing tasks do not grow the stack.
// * Exceptions escaping the body are stored and rethrown from co_await.
// * Move-only; destroying a Task that was never started or is suspended
//   destroys its frame (and, through its locals, the frames of the tasks it is
//   awaiting). Never destroy a Task whose coroutine is running.
// * T may be void, a reference, or a move-only type.
//
// Cancellation: every promise carries a std::stop_token (stop_token(),
// set_stop_token()). A Task awaited by another coroutine whose promise has a
// stop_token() inherits that token unless one was set explicitly (on the Task
// with Task::set_stop_token() or on its promise). I/O awaitables read it in
// await_suspend with `if constexpr (requires { h.promise().stop_token(); })`.
//
// Running a Task without an awaiter (what spawn() builds on):
//   std::coroutine_handle<> h = detail::make_detached(std::move(task),
//       [](std::exception_ptr error) noexcept { /* report error if non-null */ });
//   h.resume();   // runs until the task's first suspension
// The handle owns the task. When the task finishes, on_done(error) is called
// (error is null on success, else the escaped exception) and then both frames
// are freed; the handle is dangling from then on. Until the task finishes the
// owner may h.destroy() instead (loop shutdown): this frees the frames and
// does not call on_done.
#pragma once

#include <cassert>
#include <concepts>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <memory>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>

#include "coring/core/frame_allocator.h"

namespace coring {

template <class T = void>
class Task;

class TaskContext;  // core/task_context.h

namespace detail {

// Symmetric transfer relies on the compiler turning "resume the handle that
// await_suspend returned" into a tail call. GCC does that only with sibling-call
// optimisation on (-O2 and up) and never under ASan or TSan, whose
// instrumentation keeps the caller's frame alive; there, a chain of a million
// synchronous completions would overflow the stack. Those builds use a
// trampoline instead: a coroutine handing control to the next one while it is
// being run by a trampoline leaves the handle in a thread_local slot and
// returns to the trampoline, which resumes it. The order in which coroutines
// run is the same as with tail calls. Define CORING_TASK_TRAMPOLINE=1 to force
// it (e.g. for -O1 builds).
#ifndef CORING_TASK_TRAMPOLINE
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__) || !defined(__OPTIMIZE__)
#define CORING_TASK_TRAMPOLINE 1
#else
#define CORING_TASK_TRAMPOLINE 0
#endif
#endif

#if CORING_TASK_TRAMPOLINE
struct Trampoline {
  void* running = nullptr;  // the coroutine the innermost trampoline resumed
  std::coroutine_handle<> pending;
};
inline thread_local Trampoline t_trampoline;
#endif

// What an await_suspend of coroutine `self` returns to hand control to `next`.
inline std::coroutine_handle<> transfer([[maybe_unused]] std::coroutine_handle<> self,
                                        std::coroutine_handle<> next) noexcept {
#if CORING_TASK_TRAMPOLINE
  Trampoline& t = t_trampoline;
  if (t.running != nullptr && t.running == self.address()) {
    t.pending = next;  // our trampoline resumes it as soon as `self` returns
    return std::noop_coroutine();
  }
  // Nobody trampolines `self` (it was resumed by hand, e.g. by the event loop
  // or a stop callback): run the chain here until it suspends.
  Trampoline outer = std::exchange(t, {});
  while (next) {
    t.running = next.address();
    next.resume();
    next = std::exchange(t.pending, {});
  }
  t = outer;
  return std::noop_coroutine();
#else
  return next;
#endif
}

// Frames of every coring coroutine type come from the frame allocator.
struct FrameAllocated {
  static void* operator new(std::size_t size) { return frame_allocate(size); }
  static void operator delete(void* frame, std::size_t size) noexcept {
    frame_deallocate(frame, size);
  }
};

// Whatever the awaiting coroutine's promise offers as stop_token().
template <class Promise>
concept HasStopToken = requires(const Promise& p) {
  { p.stop_token() } -> std::convertible_to<std::stop_token>;
};

// Whatever the awaiting coroutine's promise offers as context().
template <class Promise>
concept HasTaskContext = requires(const Promise& p) {
  { p.context() } -> std::convertible_to<const TaskContext*>;
};

class TaskPromiseBase : public FrameAllocated {
 public:
  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> h) noexcept {
      return transfer(h, h.promise().continuation());
    }
    void await_resume() const noexcept {}
  };

  std::suspend_always initial_suspend() const noexcept { return {}; }
  FinalAwaiter final_suspend() const noexcept { return {}; }
  void unhandled_exception() noexcept { exception_ = std::current_exception(); }

  std::stop_token stop_token() const noexcept { return stop_token_; }
  // The same token without a copy (a copy of a live token is an atomic
  // increment and decrement); for awaitables that only look at it.
  const std::stop_token& stop_token_ref() const noexcept { return stop_token_; }
  // An explicitly set token is kept when the task is awaited.
  void set_stop_token(std::stop_token token) noexcept {
    stop_token_ = std::move(token);
    stop_token_explicit_ = true;
  }
  // Called when awaited: adopt the awaiter's token unless one was set.
  void inherit_stop_token(const std::stop_token& token) noexcept {
    if (!stop_token_explicit_) stop_token_ = token;
  }

  // The ambient context (core/task_context.h); null: none.
  const TaskContext* context() const noexcept { return context_; }
  // An explicitly set context (null included) is kept when the task is awaited.
  void set_context(const TaskContext* context) noexcept {
    context_ = context;
    context_explicit_ = true;
  }
  // Called when awaited: adopt the awaiter's context unless one was set.
  void inherit_context(const TaskContext* context) noexcept {
    if (!context_explicit_) context_ = context;
  }

  std::coroutine_handle<> continuation() const noexcept { return continuation_; }
  void set_continuation(std::coroutine_handle<> continuation) noexcept {
    continuation_ = continuation;
  }

  // The exception that escaped the body, or null (combinators peek at it).
  const std::exception_ptr& exception() const noexcept { return exception_; }

 protected:
  void rethrow_if_failed() const {
    if (exception_) std::rethrow_exception(exception_);
  }

 private:
  // noop_coroutine: a task resumed by hand (not awaited) just stops at the end.
  std::coroutine_handle<> continuation_ = std::noop_coroutine();
  std::exception_ptr exception_;
  std::stop_token stop_token_;
  const TaskContext* context_ = nullptr;
  bool stop_token_explicit_ = false;
  bool context_explicit_ = false;
};

template <class T>
class TaskPromise final : public TaskPromiseBase {
  // A reference result is kept as a pointer to the referent.
  using Stored = std::conditional_t<std::is_reference_v<T>, std::remove_reference_t<T>*, T>;

 public:
  Task<T> get_return_object() noexcept;

  template <class U = T>
  requires(!std::is_reference_v<T> && std::constructible_from<T, U&&>) void return_value(
      U&& value) noexcept(std::is_nothrow_constructible_v<T, U&&>) {
    value_.emplace(std::forward<U>(value));
  }
  void return_value(T&& value) noexcept requires std::is_reference_v<T> {
    value_ = std::addressof(value);
  }

  // The result, moved out; rethrows the stored exception.
  T take_result() {
    rethrow_if_failed();
    assert(value_.has_value());
    if constexpr (std::is_reference_v<T>) {
      return static_cast<T>(**value_);
    } else {
      return std::move(*value_);
    }
  }

 private:
  std::optional<Stored> value_;
};

template <>
class TaskPromise<void> final : public TaskPromiseBase {
 public:
  Task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void take_result() const { rethrow_if_failed(); }
};

}  // namespace detail

template <class T>
class [[nodiscard]] Task {
 public:
  using promise_type = detail::TaskPromise<T>;
  using value_type = T;

  class Awaiter {
   public:
    explicit Awaiter(std::coroutine_handle<promise_type> handle) noexcept : handle_(handle) {}

    // A task already driven to completion (when_all/when_any do that) is
    // not resumed again.
    bool await_ready() const noexcept { return handle_.done(); }

    template <class Promise>
    std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> awaiting) noexcept {
      promise_type& promise = handle_.promise();
      if constexpr (detail::HasStopToken<Promise>) {
        promise.inherit_stop_token(awaiting.promise().stop_token());
      }
      if constexpr (detail::HasTaskContext<Promise>) {
        promise.inherit_context(awaiting.promise().context());
      }
      promise.set_continuation(awaiting);
      return detail::transfer(awaiting, handle_);
    }

    T await_resume() { return handle_.promise().take_result(); }

   private:
    std::coroutine_handle<promise_type> handle_;
  };

  Task() noexcept = default;
  Task(Task&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      destroy();
      handle_ = std::exchange(other.handle_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() { destroy(); }

  // False for a default-constructed or moved-from Task.
  bool valid() const noexcept { return static_cast<bool>(handle_); }
  explicit operator bool() const noexcept { return valid(); }
  // True once the body has finished (returned or thrown). Requires valid().
  bool done() const noexcept { return handle_.done(); }

  // Runs the task under `token` instead of inheriting its awaiter's token.
  // Requires valid() and that the task has not started.
  void set_stop_token(std::stop_token token) noexcept {
    assert(valid());
    handle_.promise().set_stop_token(std::move(token));
  }

  // Runs the task with `context` (null: none) as its ambient context instead
  // of inheriting its awaiter's; `context` must outlive the task. Requires
  // valid() and that the task has not started.
  void set_context(const TaskContext* context) noexcept {
    assert(valid());
    handle_.promise().set_context(context);
  }

  Awaiter operator co_await() & noexcept {
    assert(valid());
    return Awaiter(handle_);
  }
  Awaiter operator co_await() && noexcept {
    assert(valid());
    return Awaiter(handle_);
  }

  // Low level (combinators, the detached runner): the frame, still owned.
  std::coroutine_handle<promise_type> handle() const noexcept { return handle_; }
  // Low level: gives up ownership of the frame; the caller must destroy() it.
  std::coroutine_handle<promise_type> release() noexcept { return std::exchange(handle_, {}); }

 private:
  friend promise_type;
  explicit Task(std::coroutine_handle<promise_type> handle) noexcept : handle_(handle) {}

  void destroy() noexcept {
    if (handle_) std::exchange(handle_, {}).destroy();
  }

  std::coroutine_handle<promise_type> handle_;
};

namespace detail {

template <class T>
Task<T> TaskPromise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<TaskPromise>::from_promise(*this));
}

inline Task<void> TaskPromise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<TaskPromise>::from_promise(*this));
}

// The coroutine behind make_detached(): starts suspended, frees itself at the
// end. Its promise has no stop_token() and no context(), so the task keeps
// the token and context set on it (none by default).
class DetachedCoroutine {
 public:
  struct promise_type : FrameAllocated {
    DetachedCoroutine get_return_object() noexcept {
      return DetachedCoroutine(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    std::suspend_never final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    // The body catches everything the task throws; only a throwing on_done
    // lands here, and there is nobody left to tell.
    void unhandled_exception() const noexcept { std::terminate(); }
  };

  std::coroutine_handle<> handle() const noexcept { return handle_; }

 private:
  explicit DetachedCoroutine(std::coroutine_handle<promise_type> handle) noexcept
      : handle_(handle) {}
  std::coroutine_handle<promise_type> handle_;
};

template <class T, class OnDone>
DetachedCoroutine run_detached(Task<T> task, OnDone on_done) {
  std::exception_ptr error;
  try {
    co_await std::move(task);
  } catch (...) {
    error = std::current_exception();
  }
  on_done(std::move(error));
}

// See the header comment: returns a not-yet-started handle that owns `task`;
// resume() it to run. on_done(std::exception_ptr) must not throw.
template <class T, class OnDone>
requires std::invocable<OnDone&, std::exception_ptr> std::coroutine_handle<> make_detached(
    Task<T> task, OnDone on_done) {
  assert(task.valid());
  return run_detached(std::move(task), std::move(on_done)).handle();
}

}  // namespace detail

}  // namespace coring
