// CallOptions<C>: what one request/reply call asks of the channel
// (net/channel.h), and CallContext<C>: what a request being handled passes on
// to the calls it makes (net/channel_server.h gives one to every handler).
//
//   auto reply = co_await channel.call(request, {.deadline = now + 50ms});
//   // inside a handler, and in every task it awaits: the incoming deadline
//   // and trace go along by themselves
//   auto reply = co_await backend.call(request);
//
// The handler's CallContext is the ambient context (core/task_context.h) of
// its task and of every task that task awaits, when_all/when_any children
// included; Channel::call() reads it. Detached tasks (spawn()) start without
// it: they may outlive the request. To carry it into one, copy it:
//   spawn(loop, with_context(call.context(), notify(peer)));
// or pass call.context().call_options() to the calls by hand. To call
// outside the request's context (no trace, no deadline but your own), await
// the call as a Task with set_context(nullptr).
#pragma once

#include <chrono>
#include <optional>
#include <stop_token>

#include "coring/core/task_context.h"
#include "coring/net/frame_codec.h"

namespace coring::net {

template <CallCodec C>
struct CallOptions {
  // The whole call (waiting for a slot, sending, the reply) must end by then:
  // DeadlineExceeded after it. Sent to the peer as its time budget (SBMP:
  // TIMEOUT_US). Inside a handler the request's deadline applies too: the
  // earlier of the two. Unset outside a handler: no deadline.
  std::optional<std::chrono::steady_clock::time_point> deadline = {};
  // The trace this call belongs to: it is sent with the same trace id and a
  // new parent id (SBMP: TRACE_CONTEXT). Unset: that of the request being
  // handled (the ambient CallContext), if any; else the call carries none.
  std::optional<typename C::TraceContext> trace = {};
  // Cancels this call alone (Cancelled); besides the awaiting coroutine's
  // own token. Request stop on the channel's loop thread.
  std::stop_token stop = {};
};

// A request being handled: its deadline (from the caller's time budget) and
// trace context. The ambient context of its handler's task, so calls made
// under it carry both on; call_options() does the same by hand.
template <CallCodec C>
struct CallContext : TaskContext {
  CallContext() noexcept : TaskContext(this) {}

  std::optional<std::chrono::steady_clock::time_point> deadline;
  std::optional<typename C::TraceContext> trace;

  // Options for a call made on behalf of this request: the same deadline
  // (or `deadline`, if earlier) and trace.
  CallOptions<C> call_options(
      std::optional<std::chrono::steady_clock::time_point> earlier = {}) const {
    CallOptions<C> o;
    o.deadline = deadline;
    if (earlier && (!o.deadline || *earlier < *o.deadline)) o.deadline = earlier;
    o.trace = trace;
    return o;
  }
};

}  // namespace coring::net
