// TaskContext: a value that a task shares with every task it awaits without
// passing it along - an ambient context scoped to one chain of co_awaits,
// what a thread-local would be if tasks were threads. net/ uses it to carry
// the request being handled (its deadline and trace context) to the calls
// its handler makes (net/call_options.h, CallContext).
//
//   struct RequestInfo : coring::TaskContext {
//     RequestInfo() : TaskContext(this) {}
//     std::string user;
//   };
//   RequestInfo info{...};
//   Task<> t = handle(request);
//   t.set_context(&info);                 // before it starts; must outlive it
//   co_await std::move(t);
//   // anywhere below handle(), in a task it awaits (directly or not):
//   const RequestInfo* info = co_await coring::current_context<RequestInfo>();
//
// * Inheritance: a Task awaited by another task, or run by when_all /
//   when_any, adopts its awaiter's context unless one was set on it with
//   Task::set_context() (null included: set_context(nullptr) runs a task
//   outside any context). The cost is one pointer copy when a child starts.
// * Detached tasks (spawn(), detail::make_detached) start with no context:
//   they may outlive whatever owns their spawner's. To carry it on, copy it
//   into the task: spawn(loop, with_context(*info, audit(request))).
// * Typed: the context records its most derived type (the one given to the
//   constructor), and current_context<T>() / as<T>() yield null for any other
//   type, so two libraries each looking for their own kind of context never
//   misread each other's. One context per task: the innermost set wins.
// * Crosses threads with its task (switch_to()): the context is read, never
//   written, while tasks see it.
#pragma once

#include <coroutine>
#include <type_traits>
#include <utility>

#include "coring/core/task.h"

namespace coring {

class TaskContext {
 public:
  // This context as a `T` if that is what it was made as, else null.
  template <class T>
  const T* as() const noexcept {
    static_assert(std::is_base_of_v<TaskContext, T>);
    return kind_ == &kind_tag<T> ? static_cast<const T*>(this) : nullptr;
  }

 protected:
  // `self`: the object being constructed, typed as the type that as<T>()
  // and current_context<T>() will look for.
  template <class Derived>
  explicit TaskContext(const Derived* /*self*/) noexcept : kind_(&kind_tag<Derived>) {
    static_assert(std::is_base_of_v<TaskContext, Derived>);
  }
  TaskContext(const TaskContext&) noexcept = default;
  TaskContext& operator=(const TaskContext&) noexcept = default;
  ~TaskContext() = default;

 private:
  // One distinct address per type: the type's identity without RTTI. Not
  // const, so that no linker merges the tags of two types.
  template <class T>
  static inline char kind_tag = 0;

  const void* kind_;
};

namespace detail {

// Reads the awaiting coroutine's context without suspending it.
template <class T>
struct CurrentContext {
  const TaskContext* context = nullptr;
  bool await_ready() const noexcept { return false; }
  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) noexcept {
    if constexpr (HasTaskContext<Promise>) context = h.promise().context();
    return false;  // resume at once
  }
  const T* await_resume() const noexcept {
    if constexpr (std::is_same_v<T, TaskContext>) {
      return context;
    } else {
      return context != nullptr ? context->as<T>() : nullptr;
    }
  }
};

}  // namespace detail

// co_await current_context<T>(): the ambient context of the awaiting task as
// a `const T*`, null if it has none or one of another type. T = TaskContext
// gives it whatever its type.
template <class T = TaskContext>
detail::CurrentContext<T> current_context() noexcept {
  return {};
}

// Runs `task` with a copy of `context` (kept in this wrapper's frame) as its
// ambient context: for tasks that outlive the context they were started in,
// e.g. spawned ones.
template <class Context, class T>
requires std::is_base_of_v<TaskContext, Context> Task<T> with_context(Context context,
                                                                      Task<T> task) {
  task.set_context(&context);
  co_return co_await std::move(task);
}

}  // namespace coring
