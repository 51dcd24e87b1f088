// CallOptions<C>: what one request/reply call asks of the channel
// (net/channel.h), and CallContext<C>: what a request being handled passes on
// to the calls it makes (net/channel_server.h gives one to every handler).
//
//   auto reply = co_await channel.call(request, {.deadline = now + 50ms});
//   // inside a handler: the incoming deadline and trace go along
//   auto reply = co_await backend.call(request, ctx.call_options());
#pragma once

#include <chrono>
#include <optional>
#include <stop_token>

#include "coring/net/frame_codec.h"

namespace coring::net {

template <CallCodec C>
struct CallOptions {
  // The whole call (waiting for a slot, sending, the reply) must end by then:
  // DeadlineExceeded after it. Sent to the peer as its time budget (SBMP:
  // TIMEOUT_US). Unset: no deadline.
  std::optional<std::chrono::steady_clock::time_point> deadline = {};
  // The trace this call belongs to: it is sent with the same trace id and a
  // new parent id (SBMP: TRACE_CONTEXT). Unset: the call carries none.
  std::optional<typename C::TraceContext> trace = {};
  // Cancels this call alone (Cancelled); besides the awaiting coroutine's
  // own token. Request stop on the channel's loop thread.
  std::stop_token stop = {};
};

// A request being handled: its deadline (from the caller's time budget) and
// trace context. call_options() makes a call carry both on.
template <CallCodec C>
struct CallContext {
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
