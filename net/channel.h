// Channel<C>: the calling side of request/reply over one framed connection.
// Any number of coroutines call concurrently; each request is stamped with a
// correlation id (SBMP: REQUEST_ID) and the reply carrying it comes back to
// its caller, in whatever order the peer answers.
//
//   auto conn = co_await connect_framed(net, address, sbmp::Codec(hello));
//   Channel<sbmp::Codec> channel(std::move(*conn), {.max_in_flight = 64});
//   absl::StatusOr<Channel<sbmp::Codec>::Reply> reply =
//       co_await channel.call(request, {.deadline = steady_clock::now() + 100ms});
//   if (reply.ok()) use((*reply)->payload);   // a frame, valid while `reply` lives
//   co_await channel.close();                 // pending calls finish, then goodbye
//
// * Deadline (CallOptions::deadline): covers waiting for a slot, sending and
//   the reply; the peer is told the time left (SBMP: TIMEOUT_US). Past it the
//   call returns DeadlineExceeded; a reply arriving later is dropped and
//   counted (stats().late_replies), never given to another caller: ids are
//   never reused while the connection lives.
// * Cancellation: the awaiting coroutine's stop token, or CallOptions::stop,
//   ends that call with Cancelled; other calls and the connection go on.
//   Tokens must be stopped on the channel's loop thread.
// * At most ChannelOptions::max_in_flight calls are in flight; more callers
//   wait for a slot in arrival order. A Reply holds its slot until destroyed.
//   Sending waits while the stream's send queue is full (backpressure).
// * When the connection ends - the peer closed, a reset, a protocol error,
//   the peer's goodbye (SBMP GOAWAY) - every pending and later call returns
//   Unavailable whose message names the cause. Replies that came before the
//   goodbye were delivered; a goodbye means no new calls.
// * Trace context (CallOptions::trace): sent with the same trace id and a new
//   parent id. Inside a handler (net/channel_server.h) a call needs no
//   options for that: it takes the trace of the request being handled (the
//   ambient CallContext, core/task_context.h) unless CallOptions::trace is
//   set, and ends by the request's deadline or CallOptions::deadline,
//   whichever comes first.
//
// Allocation: the slot table (with each slot's reply buffer and header
// storage, reused) is made once; a call costs its Task frame (from the
// loop's slab pool) and, with a deadline, one timeout op in the ring's op
// table - no heap allocation in steady state.
//
// A Channel is used on one loop thread, is not movable, and must outlive its
// calls and Replies. Destroying it without close() drops the connection.
#pragma once

#include <array>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <optional>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "coring/core/event_loop.h"
#include "coring/core/task.h"
#include "coring/net/call_options.h"
#include "coring/net/callback_timer.h"
#include "coring/net/frame_codec.h"
#include "coring/net/framed_stream.h"
#include "coring/net/stream.h"

namespace coring::net {

struct ChannelOptions {
  // Calls in flight at once; more callers wait.
  size_t max_in_flight = 64;
  // close(): pending calls get this long to finish before they are failed.
  std::chrono::nanoseconds close_timeout = std::chrono::seconds(2);
};

struct ChannelStats {
  uint64_t calls = 0;              // calls that got a reply
  uint64_t deadline_exceeded = 0;  // calls ended by their deadline
  uint64_t cancelled = 0;          // calls ended by a stop token
  uint64_t failed = 0;             // calls ended by the connection (Unavailable)
  uint64_t late_replies = 0;       // replies for calls that had ended: dropped
  uint64_t stray_frames = 0;       // frames without a correlation id: dropped
  uint64_t slot_waits = 0;         // calls that waited for a slot
};

template <CallCodec C>
class Channel {
 public:
  using Codec = C;
  using Frame = typename C::Frame;
  using TraceContext = typename C::TraceContext;

  // A reply: its frame stays valid (and its slot taken) while this lives.
  class Reply {
   public:
    Reply(Reply&& other) noexcept
        : channel_(std::exchange(other.channel_, nullptr)), slot_(other.slot_) {}
    Reply& operator=(Reply&& other) noexcept {
      if (this != &other) {
        reset();
        channel_ = std::exchange(other.channel_, nullptr);
        slot_ = other.slot_;
      }
      return *this;
    }
    Reply(const Reply&) = delete;
    Reply& operator=(const Reply&) = delete;
    ~Reply() { reset(); }

    const Frame& frame() const noexcept { return channel_->slots_[slot_].reply; }
    const Frame& operator*() const noexcept { return frame(); }
    const Frame* operator->() const noexcept { return &frame(); }
    // Gives the slot back now (the frame is then invalid).
    void reset() noexcept {
      if (channel_ != nullptr) std::exchange(channel_, nullptr)->release_slot(slot_);
    }

   private:
    friend class Channel;
    Reply(Channel* channel, uint32_t slot) noexcept : channel_(channel), slot_(slot) {}
    Channel* channel_;
    uint32_t slot_;
  };

  explicit Channel(FramedStream<C> conn, ChannelOptions options = {});
  ~Channel();
  Channel(const Channel&) = delete;
  Channel& operator=(const Channel&) = delete;

  // co_await: absl::StatusOr<Reply>. `request` (a view) must stay valid
  // until the call returns.
  Task<absl::StatusOr<Reply>> call(Frame request, CallOptions<C> options = {});

  // No new calls (FailedPrecondition); pending ones finish (at most
  // close_timeout), then the connection closes gracefully (SBMP GOAWAY).
  Task<> close();

  // False once closing or the connection has ended.
  bool accepting() const noexcept { return !closing_ && status_.ok(); }
  // Why the connection ended (OK while it is open).
  const absl::Status& status() const noexcept { return status_; }
  const ChannelStats& stats() const noexcept { return stats_; }
  size_t in_flight() const noexcept { return in_flight_; }
  FramedStream<C>& connection() noexcept { return conn_; }

 private:
  static constexpr uint32_t kNoSlot = UINT32_MAX;

  struct CallState;
  struct Slot {
    uint64_t id = 0;            // correlation id in flight; 0: free
    CallState* call = nullptr;  // the caller, while it waits for this reply
    bool replied = false;
    uint32_t generation = 0;
    uint32_t next_free = kNoSlot;
    Frame reply{};
    std::vector<uint8_t> storage;  // the reply's bytes
    typename C::CallHeader header;
  };

  // One call's state, in its coroutine frame: what it waits for and what
  // ended it early. Intrusive: the slot queue links these.
  struct CallState {
    explicit CallState(Channel* c) : channel(c), timer(&CallState::on_deadline, this) {}
    CallState(const CallState&) = delete;
    CallState& operator=(const CallState&) = delete;

    static void on_deadline(void* self, bool fired) noexcept {
      if (fired) {
        auto* s = static_cast<CallState*>(self);
        s->channel->end_call(*s, absl::DeadlineExceededError("call deadline exceeded"));
      }
    }
    struct OnStop {
      CallState* self;
      void operator()() const noexcept {
        self->channel->end_call(*self, absl::CancelledError("call cancelled"));
      }
    };

    Channel* channel;
    std::coroutine_handle<> waiting;      // suspended in Wait
    std::optional<absl::Status> outcome;  // ended before a reply
    uint32_t slot = kNoSlot;
    bool queued = false;  // in the slot queue
    CallState* prev = nullptr;
    CallState* next = nullptr;
    detail::CallbackTimer timer;  // the deadline; orphaned if still armed
    std::optional<std::stop_callback<OnStop>> on_stop;
    std::optional<std::stop_callback<OnStop>> on_caller_stop;
  };

  // Suspends until the call is woken (slot, reply, or an early end).
  struct Wait {
    CallState* state;
    bool ready;
    bool await_ready() const noexcept { return ready; }
    void await_suspend(std::coroutine_handle<> h) noexcept { state->waiting = h; }
    void await_resume() const noexcept {}
  };
  // The awaiting coroutine's own stop token.
  struct OwnStopToken {
    std::stop_token token;
    bool await_ready() const noexcept { return false; }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) noexcept {
      if constexpr (coring::detail::HasStopToken<Promise>) token = h.promise().stop_token();
      return false;
    }
    std::stop_token await_resume() noexcept { return std::move(token); }
  };

  Task<> read_replies();
  void deliver(const Frame& frame);
  void connection_ended(absl::Status cause);
  void fail_pending(const absl::Status& why) noexcept {
    for (Slot& slot : slots_) {
      if (slot.call != nullptr && !slot.replied) end_call(*slot.call, why);
    }
    while (queue_head_ != nullptr) end_call(*queue_head_, why);
  }
  struct CloserWait {
    Channel* self;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) noexcept { self->closer_ = h; }
    void await_resume() const noexcept {}
  };
  // Counts a call as pending for close() while it lives.
  struct PendingCall {
    Channel* self;
    explicit PendingCall(Channel* c) noexcept : self(c) { ++self->pending_calls_; }
    ~PendingCall() {
      if (--self->pending_calls_ == 0 && self->closer_) {
        EventLoop::current()->schedule(std::exchange(self->closer_, {}));
      }
    }
  };
  void end_call(CallState& call, absl::Status why) noexcept;
  void wake(CallState& call) noexcept {
    if (call.waiting) EventLoop::current()->schedule(std::exchange(call.waiting, {}));
  }
  void release_slot(uint32_t index) noexcept;
  uint64_t next_id(uint32_t index) noexcept {
    Slot& s = slots_[index];
    s.generation = s.generation + 1;
    if (s.generation == 0) s.generation = 1;
    return (uint64_t{s.generation} << 32) | index;
  }
  std::array<uint8_t, 8> new_span_id() noexcept {
    // splitmix64: per-channel state, no shared global.
    uint64_t z = (rng_ += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    if (z == 0) z = 1;  // W3C: an all-zero parent id is invalid
    std::array<uint8_t, 8> out;
    for (int i = 0; i < 8; ++i) out[i] = static_cast<uint8_t>(z >> (8 * i));
    return out;
  }

  FramedStream<C> conn_;
  ChannelOptions options_;
  std::vector<Slot> slots_;
  uint32_t free_head_ = kNoSlot;
  CallState* queue_head_ = nullptr;  // callers waiting for a slot, FIFO
  CallState* queue_tail_ = nullptr;
  size_t in_flight_ = 0;      // slots taken (calls and unreleased Replies)
  size_t pending_calls_ = 0;  // calls not yet returned
  absl::Status status_;
  bool closing_ = false;
  bool reader_running_ = false;
  std::coroutine_handle<> reader_;
  std::coroutine_handle<> closer_;  // close() waiting for in_flight_ == 0 / the reader
  uint64_t rng_;
  ChannelStats stats_;
};

// ---- Implementation ----

template <CallCodec C>
Channel<C>::Channel(FramedStream<C> conn, ChannelOptions options)
    : conn_(std::move(conn)),
      options_(options),
      slots_(options.max_in_flight == 0 ? 1 : options.max_in_flight),
      rng_(static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
           reinterpret_cast<uintptr_t>(this)) {
  for (size_t i = slots_.size(); i-- > 0;) {
    slots_[i].next_free = free_head_;
    free_head_ = static_cast<uint32_t>(i);
  }
  reader_running_ = true;
  reader_ = coring::detail::make_detached(read_replies(), [this](std::exception_ptr e) noexcept {
    reader_running_ = false;
    if (closer_) EventLoop::current()->schedule(std::exchange(closer_, {}));
    if (e) {
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        connection_ended(absl::InternalError(ex.what()));
      } catch (...) {
        connection_ended(absl::InternalError("the reply reader threw"));
      }
    }
  });
  reader_.resume();  // runs until it waits for the first frame
}

template <CallCodec C>
Channel<C>::~Channel() {
  if (reader_running_) reader_.destroy();
}

template <CallCodec C>
Task<> Channel<C>::read_replies() {
  for (;;) {
    absl::StatusOr<Frame> frame = co_await conn_.read_frame();
    if (!frame.ok()) {
      connection_ended(frame.status());
      co_return;
    }
    deliver(*frame);
  }
}

template <CallCodec C>
void Channel<C>::deliver(const Frame& frame) {
  const std::optional<uint64_t> id = C::correlation_id(frame);
  if (!id) {
    ++stats_.stray_frames;
    return;
  }
  const uint64_t index = *id & 0xffffffffu;
  if (index >= slots_.size()) {
    ++stats_.late_replies;
    return;
  }
  Slot& slot = slots_[index];
  if (slot.id != *id || slot.call == nullptr || slot.replied) {
    ++stats_.late_replies;  // its call ended (deadline, cancel) or it was never ours
    return;
  }
  slot.reply = C::copy_frame(frame, slot.storage);
  slot.replied = true;
  wake(*slot.call);
}

template <CallCodec C>
void Channel<C>::connection_ended(absl::Status cause) {
  if (!status_.ok()) return;
  std::string why;
  if (is_end_of_stream(cause)) {
    why = "the peer closed the connection";
  } else {
    why = std::string(cause.message());
  }
  status_ = absl::UnavailableError(absl::StrFormat("connection ended: %s", why));
  fail_pending(status_);
}

template <CallCodec C>
void Channel<C>::end_call(CallState& call, absl::Status why) noexcept {
  if (call.outcome) return;
  if (call.slot != kNoSlot && slots_[call.slot].replied) return;  // the reply won
  call.outcome = std::move(why);
  if (call.queued) {
    call.queued = false;
    (call.prev ? call.prev->next : queue_head_) = call.next;
    (call.next ? call.next->prev : queue_tail_) = call.prev;
    call.prev = call.next = nullptr;
  }
  if (call.slot != kNoSlot) slots_[call.slot].call = nullptr;  // a late reply is dropped
  wake(call);
}

template <CallCodec C>
void Channel<C>::release_slot(uint32_t index) noexcept {
  Slot& slot = slots_[index];
  slot.id = 0;
  slot.call = nullptr;
  slot.replied = false;
  slot.reply = Frame{};
  if (CallState* next = queue_head_; next != nullptr) {
    // Handed straight to the first caller in line (in_flight_ unchanged).
    queue_head_ = next->next;
    (queue_head_ ? queue_head_->prev : queue_tail_) = nullptr;
    next->queued = false;
    next->next = nullptr;
    next->slot = index;
    wake(*next);
    return;
  }
  slot.next_free = free_head_;
  free_head_ = index;
  --in_flight_;
}

template <CallCodec C>
Task<absl::StatusOr<typename Channel<C>::Reply>> Channel<C>::call(Frame request,
                                                                  CallOptions<C> options) {
  if (!status_.ok()) {
    ++stats_.failed;
    co_return status_;
  }
  if (closing_) co_return absl::FailedPreconditionError("call: the channel is closing");
  // Made on behalf of a request being handled: its trace and deadline apply.
  const CallContext<C>* handling = co_await current_context<CallContext<C>>();
  if (handling != nullptr) {
    if (!options.trace) options.trace = handling->trace;
    if (handling->deadline && (!options.deadline || *handling->deadline < *options.deadline)) {
      options.deadline = handling->deadline;
    }
  }
  const PendingCall pending(this);
  std::optional<std::chrono::microseconds> budget;
  CallState st(this);
  if (options.deadline) {
    const auto left = *options.deadline - std::chrono::steady_clock::now();
    if (left <= std::chrono::steady_clock::duration::zero()) {
      ++stats_.deadline_exceeded;
      co_return absl::DeadlineExceededError("call deadline exceeded before sending");
    }
    st.timer.arm(*EventLoop::current(), left);
  }
  const std::stop_token own = co_await OwnStopToken{};
  if (own.stop_requested() || options.stop.stop_requested()) {
    ++stats_.cancelled;
    co_return absl::CancelledError("call cancelled");
  }
  if (own.stop_possible()) st.on_caller_stop.emplace(own, typename CallState::OnStop{&st});
  if (options.stop.stop_possible()) {
    st.on_stop.emplace(options.stop, typename CallState::OnStop{&st});
  }

  // A slot: a free one, or wait in line for one.
  if (free_head_ != kNoSlot) {
    st.slot = free_head_;
    free_head_ = slots_[st.slot].next_free;
    ++in_flight_;
  } else {
    ++stats_.slot_waits;
    st.queued = true;
    st.prev = queue_tail_;
    (queue_tail_ ? queue_tail_->next : queue_head_) = &st;
    queue_tail_ = &st;
    co_await Wait{&st, false};
  }
  if (!st.outcome) {
    Slot& slot = slots_[st.slot];
    slot.id = next_id(st.slot);
    slot.call = &st;
    if (options.deadline) {
      budget = std::chrono::ceil<std::chrono::microseconds>(*options.deadline -
                                                            std::chrono::steady_clock::now());
      if (budget->count() < 0) budget = std::chrono::microseconds(0);
    }
    if (options.trace) options.trace->parent_id = new_span_id();
    const Frame stamped = C::stamp(request, slot.id, budget, options.trace, slot.header);
    const absl::Status sent = co_await conn_.write_frame(stamped);
    if (!sent.ok()) {
      end_call(st, status_.ok() ? absl::UnavailableError(
                                      absl::StrFormat("sending the request: %s", sent.message()))
                                : status_);
    }
    co_await Wait{&st, slot.replied || st.outcome.has_value()};
  }
  st.on_stop.reset();
  st.on_caller_stop.reset();
  if (st.slot != kNoSlot && slots_[st.slot].replied) {
    ++stats_.calls;
    co_return Reply(this, st.slot);
  }
  if (st.slot != kNoSlot) release_slot(st.slot);
  const absl::Status why = std::move(*st.outcome);
  if (absl::IsDeadlineExceeded(why)) {
    ++stats_.deadline_exceeded;
  } else if (absl::IsCancelled(why)) {
    ++stats_.cancelled;
  } else {
    ++stats_.failed;
  }
  co_return why;
}

template <CallCodec C>
Task<> Channel<C>::close() {
  if (closing_) co_return;
  closing_ = true;
  if (pending_calls_ > 0) {
    // Pending calls finish; those still pending after close_timeout fail.
    detail::CallbackTimer timer(
        [](void* self, bool fired) noexcept {
          if (fired)
            static_cast<Channel*>(self)->fail_pending(
                absl::UnavailableError("call: the channel closed before the reply"));
        },
        this);
    timer.arm(*EventLoop::current(), options_.close_timeout);
    while (pending_calls_ > 0) co_await CloserWait{this};
  }
  // The reader says goodbye (SBMP GOAWAY) once what was received is read.
  if (reader_running_ && !conn_.closed() && conn_.stream().valid()) {
    conn_.stream().interrupt_read(absl::CancelledError("channel closed"));
  }
  while (reader_running_) co_await CloserWait{this};
}

}  // namespace coring::net
