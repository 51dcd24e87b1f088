// Cancellation: C++20 stop tokens turned into IORING_OP_ASYNC_CANCEL.
//
// Every awaitable in core/ reads the stop token of the coroutine awaiting it
// (Task's promise inherits it from its awaiter) and, when stop is requested,
// asks the kernel to cancel the operation by its user_data. The coroutine is
// still resumed only by the op's final CQE, with Cancelled. A cancel request
// is never dropped: a full SQ is submitted to make room, and a request from
// another thread is posted to the loop.
//
//   std::stop_source stop;
//   Task<> t = reader(fd);
//   t.set_stop_token(stop.get_token());
//   spawn(loop, std::move(t));
//   ...
//   stop.request_stop();              // any thread: the pending recv ends with Cancelled
//
// cancel_after(source, d) is a small helper: a Task that requests stop on
// `source` after `d` unless its own token is stopped first.
#pragma once

#include <chrono>
#include <stop_token>

#include "coring/core/task.h"
#include "coring/core/timer.h"

namespace coring {

template <class Rep, class Period>
Task<> cancel_after(std::stop_source source, std::chrono::duration<Rep, Period> d) {
  absl::Status s = co_await sleep_for(d);
  if (s.ok()) source.request_stop();
}

}  // namespace coring
