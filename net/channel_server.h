// serve_calls(): the answering side of request/reply over one framed
// connection. A handler runs per request (not per connection); requests on
// one connection are handled concurrently, up to a limit, and each reply goes
// out as soon as its handler returns, carrying the request's correlation id
// (SBMP: REQUEST_ID).
//
//   Task<absl::StatusOr<sbmp::Frame>> handle(ServerCall<sbmp::Codec>& call) {
//     std::vector<uint8_t>& out = call.reply_buffer();     // reused: no allocation
//     out.assign(call.request().payload.begin(), call.request().payload.end());
//     co_return sbmp::make_frame(0x0101, out);
//   }
//   server.serve<sbmp::Codec>([](FramedStream<sbmp::Codec> conn) {
//     return serve_calls(std::move(conn), handle, {.max_concurrent = 64});
//   });
//
// * The handler gets a ServerCall: the request (its bytes copied out of the
//   receive buffer, valid until the handler returns), its deadline (from
//   the caller's time budget, SBMP TIMEOUT_US) and trace context, and a stop
//   token (also the handler Task's own) that fires when the deadline passes
//   or the peer goes away. call.context() is the ambient context
//   (core/task_context.h) of the handler's task and of the tasks it awaits:
//   a Channel::call() made under it carries the trace on (same trace id, new
//   parent id) and ends by the request's deadline without being told.
//   Detached tasks the handler spawns start without it (see
//   net/call_options.h).
// * The reply is a frame whose memory outlives the handler: the payload in
//   call.reply_buffer() (or anything longer-lived), its extensions built in
//   call.reply_header(). An error status sends no reply (the caller's
//   deadline ends its call); so does a reply ready after the deadline.
// * At most max_concurrent requests are handled at once; past that, reading
//   pauses (TCP pushes back on the peer) until one finishes.
// * The peer's goodbye or a server shutdown: requests already received are
//   still answered before this side's goodbye (FramedStream::hold()), for at
//   most FramedOptions::close_timeout; a lost peer stops every handler.
//
// Allocation: a slot per concurrent request, each with a worker coroutine
// made on first use and reused, and its buffers reused; a request costs the
// handler's own Task frame (slab pool) and, with a deadline, one timeout op.
#pragma once

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <stop_token>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coring/core/event_loop.h"
#include "coring/core/task.h"
#include "coring/net/call_options.h"
#include "coring/net/callback_timer.h"
#include "coring/net/frame_codec.h"
#include "coring/net/framed_stream.h"

namespace coring::net {

struct ChannelServerStats {
  uint64_t requests = 0;           // handed to the handler
  uint64_t replies = 0;            // written
  uint64_t deadline_exceeded = 0;  // handlers whose deadline passed (no reply sent)
  uint64_t no_reply = 0;           // handlers that returned an error
  uint64_t handler_errors = 0;     // handlers that threw
  uint64_t stray_frames = 0;       // frames without a correlation id: dropped
  uint64_t peer_lost = 0;          // handlers stopped because the peer went away
  uint64_t read_pauses = 0;        // reading waited for a free slot
};

struct ChannelServerOptions {
  // Requests handled at once on one connection.
  size_t max_concurrent = 64;
  // Counters, added to (not owned; used on the connection's thread only).
  ChannelServerStats* stats = nullptr;
};

template <CallCodec C, class H>
class CallServer;

template <CallCodec C>
class ServerCall {
 public:
  using Frame = typename C::Frame;

  const Frame& request() const noexcept { return request_; }
  uint64_t id() const noexcept { return id_; }
  const CallContext<C>& context() const noexcept { return context_; }
  const std::optional<std::chrono::steady_clock::time_point>& deadline() const noexcept {
    return context_.deadline;
  }
  const std::optional<typename C::TraceContext>& trace() const noexcept { return context_.trace; }
  // Fires when the deadline passes or the peer goes away.
  std::stop_token stop_token() const noexcept { return stop_.get_token(); }
  // Reply memory, kept from request to request.
  std::vector<uint8_t>& reply_buffer() noexcept { return reply_buffer_; }
  typename C::CallHeader& reply_header() noexcept { return reply_header_; }

 private:
  template <CallCodec, class>
  friend class CallServer;  // fills it in
  Frame request_{};
  uint64_t id_ = 0;
  CallContext<C> context_;
  std::stop_source stop_;
  std::vector<uint8_t> reply_buffer_;
  typename C::CallHeader reply_header_;
};

// The per-connection engine behind serve_calls(); lives in its frame.
template <CallCodec C, class H>
class CallServer {
 public:
  using Frame = typename C::Frame;

  CallServer(FramedStream<C> conn, H handler, ChannelServerOptions options)
      : conn_(std::move(conn)),
        handler_(std::move(handler)),
        options_(options),
        slots_(options.max_concurrent == 0 ? 1 : options.max_concurrent) {
    if (options_.stats == nullptr) options_.stats = &own_stats_;
    for (size_t i = slots_.size(); i-- > 0;) {
      slots_[i].next_free = free_head_;
      free_head_ = static_cast<uint32_t>(i);
    }
  }
  CallServer(const CallServer&) = delete;
  CallServer& operator=(const CallServer&) = delete;
  ~CallServer() {
    // Only when the connection's task is destroyed early (loop shutdown).
    for (Slot& s : slots_) {
      if (s.worker_alive) s.worker.destroy();
    }
  }

  Task<> run();

 private:
  static constexpr uint32_t kNoSlot = UINT32_MAX;
  struct Slot {
    ServerCall<C> call;
    std::vector<uint8_t> storage;  // the request's bytes
    typename C::CallHeader header;
    std::optional<detail::CallbackTimer> timer;
    std::coroutine_handle<> worker;      // the detached worker (owned)
    std::coroutine_handle<> job_waiter;  // the worker, waiting for a request
    bool worker_alive = false;
    bool busy = false;
    uint32_t next_free = kNoSlot;
  };

  struct JobWait {
    CallServer* self;
    Slot* slot;
    bool await_ready() const noexcept { return slot->busy || self->exiting_; }
    void await_suspend(std::coroutine_handle<> h) noexcept { slot->job_waiter = h; }
    void await_resume() const noexcept {}
  };
  struct Park {  // run(): waits for a free slot, or for the workers to exit
    std::coroutine_handle<>* where;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) noexcept { *where = h; }
    void await_resume() const noexcept {}
  };

  static void on_deadline(void* slot, bool fired) noexcept {
    if (fired) static_cast<Slot*>(slot)->call.stop_.request_stop();
  }
  void schedule(std::coroutine_handle<>& h) noexcept {
    if (h) EventLoop::current()->schedule(std::exchange(h, {}));
  }
  void start(uint32_t index);
  Task<> work(uint32_t index);
  void finish(uint32_t index) noexcept;

  FramedStream<C> conn_;
  H handler_;
  ChannelServerOptions options_;
  ChannelServerStats own_stats_;
  std::vector<Slot> slots_;
  uint32_t free_head_ = kNoSlot;
  size_t workers_alive_ = 0;
  bool exiting_ = false;
  std::coroutine_handle<> run_waiter_;
};

template <CallCodec C, class H>
Task<> CallServer<C, H>::run() {
  ChannelServerStats& stats = *options_.stats;
  for (;;) {
    if (free_head_ == kNoSlot) {
      ++stats.read_pauses;
      while (free_head_ == kNoSlot) co_await Park{&run_waiter_};
    }
    absl::StatusOr<Frame> frame = co_await conn_.read_frame();
    if (!frame.ok()) break;
    const std::optional<uint64_t> id = C::correlation_id(*frame);
    if (!id) {
      ++stats.stray_frames;
      continue;
    }
    const uint32_t index = free_head_;
    Slot& s = slots_[index];
    free_head_ = s.next_free;
    s.busy = true;
    ServerCall<C>& call = s.call;
    call.request_ = C::copy_frame(*frame, s.storage);
    call.id_ = *id;
    call.context_.trace = C::trace_context(*frame);
    call.context_.deadline.reset();
    if (call.stop_.stop_requested()) call.stop_ = std::stop_source();  // only after a stop
    if (const std::optional<std::chrono::microseconds> budget = C::time_budget(*frame)) {
      call.context_.deadline = std::chrono::steady_clock::now() + *budget;
      s.timer.emplace(&CallServer::on_deadline, &s);
      s.timer->arm(*EventLoop::current(), *budget);
    }
    ++stats.requests;
    conn_.hold();
    start(index);
  }
  // Reading is over. Graceful ends (goodbye, shutdown) waited for the
  // handlers already (hold()); whoever is still running lost its peer.
  exiting_ = true;
  for (Slot& s : slots_) {
    if (s.busy) {
      ++stats.peer_lost;
      s.call.stop_.request_stop();
    }
    schedule(s.job_waiter);
  }
  while (workers_alive_ > 0) co_await Park{&run_waiter_};
  (void)co_await conn_.close();
}

template <CallCodec C, class H>
void CallServer<C, H>::start(uint32_t index) {
  Slot& s = slots_[index];
  if (!s.worker_alive) {
    s.worker_alive = true;
    ++workers_alive_;
    s.worker = coring::detail::make_detached(work(index), [this, &s](std::exception_ptr) noexcept {
      s.worker_alive = false;
      if (--workers_alive_ == 0) schedule(run_waiter_);
    });
    EventLoop::current()->schedule(s.worker);
    return;
  }
  schedule(s.job_waiter);
}

template <CallCodec C, class H>
Task<> CallServer<C, H>::work(uint32_t index) {
  Slot& s = slots_[index];
  ChannelServerStats& stats = *options_.stats;
  for (;;) {
    co_await JobWait{this, &s};
    if (!s.busy) break;  // exiting
    std::optional<absl::StatusOr<Frame>> reply;
    try {
      Task<absl::StatusOr<Frame>> task = handler_(s.call);
      task.set_stop_token(s.call.stop_.get_token());
      task.set_context(&s.call.context_);  // valid until the handler returns
      reply.emplace(co_await std::move(task));
    } catch (...) {
      ++stats.handler_errors;
    }
    s.timer.reset();  // an armed deadline is orphaned (cancelled)
    const auto& deadline = s.call.context_.deadline;
    if (reply && reply->ok()) {
      if (deadline && std::chrono::steady_clock::now() > *deadline) {
        ++stats.deadline_exceeded;
      } else if (!conn_.closed()) {
        const Frame stamped = C::stamp(**reply, s.call.id_, std::nullopt, std::nullopt, s.header);
        const absl::Status sent = co_await conn_.write_frame(stamped);
        if (sent.ok()) ++stats.replies;
      }
    } else if (reply) {
      if (deadline && std::chrono::steady_clock::now() > *deadline) {
        ++stats.deadline_exceeded;
      } else {
        ++stats.no_reply;
      }
    }
    finish(index);
  }
}

template <CallCodec C, class H>
void CallServer<C, H>::finish(uint32_t index) noexcept {
  Slot& s = slots_[index];
  s.busy = false;
  s.call.request_ = Frame{};
  s.next_free = free_head_;
  free_head_ = index;
  conn_.release();
  if (!exiting_) schedule(run_waiter_);
}

// Serves request/reply on `conn` until the connection ends; see above.
// `handler`: Task<absl::StatusOr<C::Frame>>(ServerCall<C>&), kept for the
// connection's lifetime.
template <CallCodec C, class H>
Task<> serve_calls(FramedStream<C> conn, H handler, ChannelServerOptions options = {}) {
  CallServer<C, H> server(std::move(conn), std::move(handler), options);
  co_await server.run();
}

}  // namespace coring::net
