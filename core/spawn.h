// spawn(): runs a Task<> detached on an EventLoop.
//
//   coring::spawn(loop, serve(conn));     // from any thread
//
// The task starts in the loop's next iteration. An exception escaping it is
// reported (LoopOptions::on_task_error, default: a line on stderr), never
// swallowed silently. A task still suspended when the loop is destroyed is
// destroyed with it (its in-flight operations are cancelled first).
// Cancellation: give the task a stop token before spawning it
// (task.set_stop_token(source.get_token())).
#pragma once

#include <utility>

#include "coring/core/event_loop.h"
#include "coring/core/task.h"

namespace coring {

inline void spawn(EventLoop& loop, Task<> task) { loop.spawn_task(std::move(task)); }

}  // namespace coring
