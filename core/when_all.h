// when_all: run several Tasks concurrently and wait for all of them.
//
//   auto [a, b, none] = co_await when_all(fetch_a(), fetch_b(), log());
//   std::vector<int> sizes = co_await when_all(std::move(tasks));
//
// * Lazy like any Task: nothing starts until the when_all Task is awaited;
//   then every child is started in order, on the awaiting thread.
// * Results keep the argument order. A Task<void> child contributes a
//   std::monostate to the tuple; a Task<T&> child a T& (tuple form) or a
//   std::reference_wrapper<T> (vector form). when_all(std::vector<Task<void>>)
//   yields void.
// * Exceptions: when_all always waits for every child; if some threw, the
//   exception of the first child to fail (in completion order) is rethrown and
//   the other results are discarded. Siblings are not cancelled.
// * Cancellation: children run under the token of the coroutine awaiting
//   when_all (unless a child had its own token set); likewise they inherit
//   its ambient context (core/task_context.h).
//
// detail::JoinState, shared with when_any, is the bookkeeping behind both: one
// small "runner" coroutine per child awaits the child without taking its
// result, counts completions, and the last one to finish resumes the parent
// by symmetric transfer. Results stay in the children's promises until the
// parent collects them.
#pragma once

#include <atomic>
#include <cassert>
#include <coroutine>
#include <cstddef>
#include <exception>
#include <functional>
#include <limits>
#include <optional>
#include <stop_token>
#include <tuple>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "coring/core/task.h"

namespace coring {

namespace detail {

// What a child of type Task<T> contributes to a container of results.
template <class T>
using JoinValue =
    std::conditional_t<std::is_void_v<T>, std::monostate,
                       std::conditional_t<std::is_reference_v<T>,
                                          std::reference_wrapper<std::remove_reference_t<T>>, T>>;

class JoinState;

// Owns one runner coroutine frame: awaits one child, then reports to JoinState.
class JoinRunner {
 public:
  struct promise_type : FrameAllocated {
    promise_type(JoinState* state, std::size_t index, std::coroutine_handle<>,
                 TaskPromiseBase* child) noexcept
        : state(state), index(index), child(child) {}

    struct FinalAwaiter {
      bool await_ready() const noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept;
      void await_resume() const noexcept {}
    };

    JoinRunner get_return_object() noexcept {
      return JoinRunner(std::coroutine_handle<promise_type>::from_promise(*this));
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    FinalAwaiter final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() const noexcept { std::terminate(); }  // body cannot throw

    JoinState* state;
    std::size_t index;
    TaskPromiseBase* child;
  };

  JoinRunner(JoinRunner&& other) noexcept : handle_(std::exchange(other.handle_, {})) {}
  JoinRunner& operator=(JoinRunner&&) = delete;
  ~JoinRunner() {
    if (handle_) handle_.destroy();
  }

  // The frame, handed over to the caller, who must destroy() it.
  std::coroutine_handle<> release() noexcept { return std::exchange(handle_, {}); }

 private:
  explicit JoinRunner(std::coroutine_handle<promise_type> handle) noexcept : handle_(handle) {}
  std::coroutine_handle<promise_type> handle_;
};

// Starts a child under the join's token (unless it has its own) and resumes
// the runner when the child finishes; the result stays in the child's promise.
// Only trivially destructible members: GCC 12 destroys an aggregate
// temporary written in a co_await operand twice (`co_await Aw{...}`).
struct StartChild {
  std::coroutine_handle<> child;
  TaskPromiseBase* promise;
  JoinState* state;

  bool await_ready() const noexcept { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> runner) noexcept;
  void await_resume() const noexcept {}
};

inline JoinRunner run_join_child(JoinState* state, std::size_t index, std::coroutine_handle<> child,
                                 TaskPromiseBase* promise);

// Completion bookkeeping of when_all (kAll) and when_any (kAny). Lives in the
// combinator's frame; thread-safe counting, so a child may finish on another
// thread (the parent then resumes there).
class JoinState {
 public:
  enum class Mode { kAll, kAny };
  static constexpr std::size_t kNone = std::numeric_limits<std::size_t>::max();

  JoinState(Mode mode, std::size_t count) : mode_(mode), remaining_(count + 1) {
    if (count > kInlineRunners) more_runners_.reserve(count - kInlineRunners);
  }
  ~JoinState() {
    for (std::size_t i = 0; i < runner_count_; ++i) runner(i).destroy();
  }
  JoinState(const JoinState&) = delete;
  JoinState& operator=(const JoinState&) = delete;

  template <class T>
  void add(Task<T>& task) {
    assert(task.valid() && !task.done());
    JoinRunner r = run_join_child(this, runner_count_, task.handle(), &task.handle().promise());
    if (runner_count_ >= kInlineRunners) more_runners_.emplace_back();  // reserved: no throw
    runner(runner_count_++) = r.release();
  }

  struct WaitAwaiter {
    JoinState* state;
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> parent) {
      std::stop_token parent_token;
      if constexpr (HasStopToken<Promise>) parent_token = parent.promise().stop_token();
      if constexpr (HasTaskContext<Promise>) state->child_context_ = parent.promise().context();
      return state->start(parent, std::move(parent_token));
    }
    void await_resume() const noexcept {}
  };

  // co_await state.wait(): starts every child, resumes when all finished.
  WaitAwaiter wait() noexcept { return WaitAwaiter{this}; }

  // kAll: the first child to fail, or kNone. kAny: the first child to finish.
  std::size_t first() const noexcept { return first_.load(std::memory_order_acquire); }

  // Called by each runner as its child finishes; returns what to resume next.
  std::coroutine_handle<> child_done(std::size_t index, bool failed) noexcept {
    if (mode_ == Mode::kAny || failed) {
      std::size_t expected = kNone;
      if (first_.compare_exchange_strong(expected, index, std::memory_order_acq_rel) &&
          mode_ == Mode::kAny) {
        // May run losers' stop callbacks, and so whole losers, right here;
        // they cannot finish the join before this child is counted below.
        stop_source_->request_stop();
      }
    }
    if (remaining_.fetch_sub(1, std::memory_order_acq_rel) == 1) return parent_;
    return std::noop_coroutine();
  }

 private:
  // Forwards a stop request of the awaiter of when_any to its children.
  struct ForwardStop {
    std::stop_source* source;
    void operator()() const noexcept { source->request_stop(); }
  };

  bool start(std::coroutine_handle<> parent, std::stop_token parent_token) {
    parent_ = parent;
    if (mode_ == Mode::kAll) {
      child_token_ = std::move(parent_token);
    } else {
      stop_source_.emplace();
      child_token_ = stop_source_->get_token();
      if (parent_token.stop_possible()) {
        parent_stop_.emplace(std::move(parent_token), ForwardStop{&*stop_source_});
      }
    }
    for (std::size_t i = 0; i < runner_count_; ++i) runner(i).resume();
    // The extra count held while starting: whoever drops the last one resumes
    // the parent; if that is us, do not suspend at all.
    return remaining_.fetch_sub(1, std::memory_order_acq_rel) != 1;
  }

  friend struct StartChild;

  Mode mode_;
  std::atomic<std::size_t> remaining_;
  std::atomic<std::size_t> first_{kNone};
  std::coroutine_handle<> parent_;
  std::stop_token child_token_;
  const TaskContext* child_context_ = nullptr;
  std::optional<std::stop_source> stop_source_;  // kAny only: allocates
  std::optional<std::stop_callback<ForwardStop>> parent_stop_;
  std::coroutine_handle<>& runner(std::size_t i) noexcept {
    return i < kInlineRunners ? inline_runners_[i] : more_runners_[i - kInlineRunners];
  }

  // Runner frames, owned; a few inline so that a small when_all/when_any does
  // not allocate from the heap.
  static constexpr std::size_t kInlineRunners = 4;
  std::coroutine_handle<> inline_runners_[kInlineRunners];
  std::vector<std::coroutine_handle<>> more_runners_;
  std::size_t runner_count_ = 0;
};

inline JoinRunner run_join_child(JoinState* state, std::size_t, std::coroutine_handle<> child,
                                 TaskPromiseBase* promise) {
  co_await StartChild{child, promise, state};
}

inline std::coroutine_handle<> StartChild::await_suspend(std::coroutine_handle<> runner) noexcept {
  promise->inherit_stop_token(state->child_token_);
  promise->inherit_context(state->child_context_);
  promise->set_continuation(runner);
  return transfer(runner, child);
}

inline std::coroutine_handle<> JoinRunner::promise_type::FinalAwaiter::await_suspend(
    std::coroutine_handle<promise_type> h) noexcept {
  promise_type& p = h.promise();
  return transfer(h, p.state->child_done(p.index, p.child->exception() != nullptr));
}

// Moves a finished child's result out (the caller checked for exceptions).
template <class T>
JoinValue<T> take_join_value(Task<T>& task) {
  if constexpr (std::is_void_v<T>) {
    task.handle().promise().take_result();
    return std::monostate{};
  } else if constexpr (std::is_reference_v<T>) {
    return std::ref(
        static_cast<std::remove_reference_t<T>&>(task.handle().promise().take_result()));
  } else {
    return task.handle().promise().take_result();
  }
}

template <class T>
decltype(auto) take_tuple_value(Task<T>& task) {
  if constexpr (std::is_reference_v<T>) {
    return task.handle().promise().take_result();
  } else {
    return take_join_value(task);
  }
}

template <class T>
using WhenAllTupleValue = std::conditional_t<std::is_void_v<T>, std::monostate, T>;

}  // namespace detail

template <class... Ts>
Task<std::tuple<detail::WhenAllTupleValue<Ts>...>> when_all(Task<Ts>... tasks) {
  detail::JoinState state(detail::JoinState::Mode::kAll, sizeof...(Ts));
  (state.add(tasks), ...);
  co_await state.wait();
  if constexpr (sizeof...(Ts) > 0) {
    if (std::size_t failed = state.first(); failed != detail::JoinState::kNone) {
      const std::exception_ptr errors[] = {tasks.handle().promise().exception()...};
      std::rethrow_exception(errors[failed]);
    }
  }
  co_return std::tuple<detail::WhenAllTupleValue<Ts>...>(detail::take_tuple_value(tasks)...);
}

template <class T>
Task<std::conditional_t<std::is_void_v<T>, void, std::vector<detail::JoinValue<T>>>> when_all(
    std::vector<Task<T>> tasks) {
  detail::JoinState state(detail::JoinState::Mode::kAll, tasks.size());
  for (Task<T>& task : tasks) state.add(task);
  co_await state.wait();
  if (std::size_t failed = state.first(); failed != detail::JoinState::kNone) {
    std::rethrow_exception(tasks[failed].handle().promise().exception());
  }
  if constexpr (!std::is_void_v<T>) {
    std::vector<detail::JoinValue<T>> results;
    results.reserve(tasks.size());
    for (Task<T>& task : tasks) results.push_back(detail::take_join_value(task));
    co_return results;
  }
}

}  // namespace coring
