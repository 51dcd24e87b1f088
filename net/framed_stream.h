// FramedStream<Codec>: whole frames over a Stream, driven by a FrameCodec
// (frame_codec.h) — e.g. FramedStream<coring::sbmp::Codec>. The transport is
// a template parameter (ByteStream, byte_stream.h), Stream by default, so the
// same framing runs over a TLS stream: FramedStream<sbmp::Codec, tls::TlsStream>.
//
//   Task<> serve(FramedStream<sbmp::Codec> conn) {
//     for (;;) {
//       auto frame = co_await conn.read_frame();     // a view into the receive buffer
//       if (!frame.ok()) co_return;                   // EOF, goodbye, error: already closed
//       if (!(co_await conn.write_frame(*frame)).ok()) co_return;   // echo, payload not copied
//     }
//   }
//
// * read_frame(): the next application frame; a view valid until the next
//   read_frame(). The receive buffer(s) it points into stay held until then.
//   Protocol frames (keep-alives, handshakes) are handled by the codec and
//   their answers sent before the transport waits for more input. After
//   FramedOptions::frames_per_turn frames in one turn of the loop, it lets
//   the loop's other work go first (a pipelining peer's queued input does
//   not hold up every other connection of the thread).
// * write_frame(frame): encodes and queues the frame after whatever the
//   codec queued before it. The payload is not copied when it is larger than
//   NetOptions::copy_threshold: the write then completes once it is sent, so
//   echoing a frame needs no copy and is done before the next read_frame().
//   Except when the payload is a frame this connection read and more input
//   is already waiting (a pipelining peer): then the write completes at
//   once, so the next frames are read meanwhile and their echoes leave
//   together, instead of one send and one wait per frame. A frame in the
//   receive buffer is sent from that buffer, which the send queue shares
//   with the reader (Stream::share_received(); its header too, when encoded
//   as received: a buffer's echoes leave as one run of it; no copy); so is
//   a small frame alone, with nothing queued or being sent. A frame
//   in the codec's reassembly buffer is sent from that buffer, which the
//   codec trades for one sent before (when the codec has exchange_buffer(),
//   as sbmp::Codec does; no copy). Otherwise (the ring cannot spare the
//   buffer, a codec that does not trade) it is copied if at most
//   FramedOptions::copy_pipelined_up_to.
// * A frame larger than a receive buffer: once the peer has sent half a
//   buffer of it, the rest is received straight into the codec's reassembly
//   buffer, with the next frame's header read ahead
//   (FramedOptions::receive_in_place; codecs with lend_buffer(), as
//   sbmp::Codec): no copy out of ring buffers, one recv per large frame.
// * When reading must stop, read_frame() closes the connection itself and
//   returns why: a protocol error (the codec's goodbye is sent first), the
//   peer's goodbye, EOF (is_end_of_stream()), a reset, or an interrupt —
//   idle timeout (DeadlineExceeded) or server shutdown (Unavailable) — which
//   the codec turns into its goodbye. Later calls return the same status.
// * close(why): graceful close: codec.close(why) queues the goodbye after the
//   frames already queued, everything is sent, the sending side is shut down
//   (SHUT_WR), and input is read and dropped until the peer closes or
//   FramedOptions::close_timeout passes (past
//   FramedOptions::close_drain_bytes of it, input is left unread); then the
//   socket is closed.
// * A FramedStream destroyed without close() still sends what was queued
//   (see Stream), without a goodbye.
// * hold() / release(): replies still owed (a request/reply server counts
//   the requests it is handling, net/channel_server.h). When reading ends
//   gracefully (the peer's goodbye, shutdown), the goodbye waits until every
//   hold is released, at most FramedOptions::close_timeout; writes still work
//   meanwhile, so answers to frames received before the end go out first.
//
// Allocation: read_frame() and write_frame() return awaiters, not Tasks, so a
// message costs no coroutine frame. read_frame() completes without
// suspending when a frame can be decoded from bytes already received; when it
// must wait it runs a per-connection reader coroutine, made once on first use
// and reused for every later read. write_frame() encodes into its awaiter
// (which lives in the caller's frame) and queues the bytes directly on the
// Stream; only when codec output (PONGs) must go first does it fall back to a
// coroutine. Await the result at once (`co_await conn.read_frame()`); one
// read_frame() at a time per connection, as before.
#pragma once

#include <algorithm>
#include <chrono>
#include <climits>
#include <concepts>
#include <coroutine>
#include <exception>
#include <memory>
#include <optional>
#include <stop_token>
#include <type_traits>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coring/core/buffer_ring.h"
#include "coring/core/event_loop.h"
#include "coring/core/nop.h"
#include "coring/core/spawn.h"
#include "coring/core/task.h"
#include "coring/core/timer.h"
#include "coring/net/byte_stream.h"
#include "coring/net/callback_timer.h"
#include "coring/net/frame_codec.h"
#include "coring/net/stream.h"

namespace coring::net {

struct FramedOptions {
  // Bound on a graceful close: sending what is queued, the goodbye, and
  // waiting for the peer to close.
  std::chrono::nanoseconds close_timeout = std::chrono::seconds(2);
  // Input read and dropped after the goodbye, while waiting for the peer to
  // close. Past it the connection reads nothing until close_timeout ends,
  // then what the socket holds (up to this much plus 4 MiB, the peer's
  // send buffer), and closes.
  // A peer that heeds the goodbye stops sending (what it sent before it saw
  // it is bounded by the socket buffers), and it can still read every
  // answer and the goodbye meanwhile. One that keeps sending would
  // otherwise cost the thread a recv per buffer for the whole
  // close_timeout: 64 peers refused (partial frames over the memory budget)
  // and flooding on had the server drain 1.9 GB/s on loopback while its
  // other connections waited. (Go's net/http reads at most 256 KiB of a
  // body the handler left unread.)
  size_t close_drain_bytes = 256 * 1024;
  // Largest frame write_frame() copies rather than borrows when the frame
  // was read from this connection, more input waits, and the codec does not
  // trade the buffer the frame lies in (see write_frame()).
  // Copying costs per byte, waiting for the send per frame: measured here
  // (bench/run.sh, SBMP echo, 16 in flight), copying cut the CPU per
  // message of 16 KiB frames by 11-29% and cost up to 18% more at 64 KiB.
  size_t copy_pipelined_up_to = 32 * 1024;
  // Frames one connection reads in one turn of its loop before read_frame()
  // lets the loop's other work go first (it then resumes in the next turn).
  // A pipelining peer's queued input otherwise runs to the end in one go:
  // up to NetOptions::recv_share receive buffers of small frames, about a
  // thousand per connection, while every other connection of the thread
  // waits. 0: no budget.
  uint32_t frames_per_turn = 64;
  // The rest of a frame larger than a receive buffer is received straight
  // into the codec's reassembly buffer (RecvStream::receive_into()) instead
  // of through ring buffers it would be copied out of, when the codec
  // supports it (lend_buffer(), as sbmp::Codec) and the transport is a
  // Stream. One recv takes the rest of the frame and the next frame's
  // header, so a stream of large frames costs one recv per frame; when
  // nothing of the next frame has come yet (a peer sending one frame at a
  // time), its header is received alone ahead of it, and then all of its
  // rest in place. Only once the peer has sent half a receive buffer of the
  // frame (or of a frame before it), and at most four times what it sent
  // per recv (four receive buffers for a header alone of a proven peer): a
  // header alone makes us allocate nothing, and the loop's partial-frame
  // budget bounds the rest.
  // Measured (bench/run.sh, SBMP echo, server CPU per frame): ping-pong of
  // 64 KiB frames 6-19% cheaper, 1000 connections x 64 KiB pipelined
  // 25-32%, 16 and 256 connections pipelined unchanged. It costs a victim
  // sharing the thread with 64 peers that flood 64 KiB frames and never
  // read a few percent of its echoes at most (12 interleaved pairs, on
  // over off: median 0.97, 9 of 12 under 1, spread 0.91-1.04).
  bool receive_in_place = true;
  // A peer that pipelines frames received in place (above) has the
  // socket's receive buffer grown to this many bytes, once per connection
  // (Stream::reserve_receive_buffer(); the kernel's autotuning stays on).
  // Such a reader takes one frame per recv, so autotuning, which grows the
  // buffer only for a reader that takes more than the last window's worth
  // within a round trip, never grows it: on loopback it stays near 512 KiB,
  // the window closes, each frame read opens it by one frame, and the
  // peer's queued data then goes out from the reader's CPU (the window
  // update's receive processing), the "round trip" measured is the few
  // microseconds this takes, and the state holds. A multishot reader takes
  // all that is queued and escapes it. The trigger: the recv that took a
  // frame's rest left more in the socket. Kernel memory is used only as the
  // peer fills the buffer, as autotuning would allow a reader that keeps
  // up (net.ipv4.tcp_rmem's maximum; the kernel caps this at half of it).
  // Measured (bench/run.sh, sbmp_echo_server, 64 KiB frames 16 in flight,
  // server CPU per frame, median of 3 interleaved rounds, with / without):
  // 15.4 / 27.6 us at 16 connections, 23.6 / 34.1 at 256, 25.8 / 37.6 at
  // 1000 (the raw echo: 16.9, 21.5, 22.7); ping-pong unchanged (it does
  // not trigger). 0: leave the buffer to the kernel.
  size_t pipelined_receive_buffer = 4 * 1024 * 1024;
  // A frame that arrived split across two receive buffers is handed out as
  // two views of them, not copied into the codec's reassembly buffer
  // (codecs with set_split_payloads(), as sbmp::Codec: the frame's payload
  // is Frame::payload followed by Frame::payload_tail), and write_frame()
  // sends it from both. Only for an application that reads both parts (an
  // echo or a proxy forwarding frames), so off by default. Only for a frame
  // whose rest fits one receive buffer. A reader waiting for that rest
  // keeps the first buffer within a bound of half the loop's ring for all
  // its streams (peers that stop mid-frame must not take the ring from the
  // others; the frame deadline ends them); past it, and for a frame over
  // three buffers, the frame is copied as without the option. Stream
  // transport only.
  // Measured (bench/run.sh, sbmp_echo_server, 16 KiB frames pipelined 16
  // deep, server CPU per frame, on / off, 6 interleaved rounds): 0.91 at 16
  // connections, 0.94 at 256, 1.01 at 1000; 1 and 64 KiB frames unchanged.
  bool split_payloads = false;
};

template <FrameCodec C, ByteStream S = Stream>
class FramedStream {
 public:
  using Codec = C;
  using Frame = typename C::Frame;

  class ReadFrameAwaiter;
  class WriteFrameAwaiter;

  FramedStream(S stream, C codec, FramedOptions options = {})
      : stream_(std::move(stream)), options_(options), codec_(std::move(codec)) {
    allow_split();
    share_codec_buffers();
  }
  FramedStream(FramedStream&&) noexcept = default;
  FramedStream& operator=(FramedStream&&) noexcept = default;
  ~FramedStream() { watch_idle(false); }

  // co_await: absl::StatusOr<Frame>.
  ReadFrameAwaiter read_frame() noexcept { return ReadFrameAwaiter(this); }
  // read_frame() without waiting: the next frame when it lies whole in the
  // bytes already received, true with `frame` set, a view as read_frame()'s
  // (valid until the next read). False: call read_frame(), which waits,
  // decodes what is not whole, handles protocol frames, errors and the end
  // of the connection, and lets the loop's other work go first once this
  // connection has read its FramedOptions::frames_per_turn. For handlers of
  // pipelined frames, as sbmp_echo_server's:
  //   for (;;) {
  //     auto frame = co_await conn.read_frame();
  //     if (!frame.ok()) co_return;
  //     bool written;
  //     do {
  //       written = (co_await conn.write_frame(*frame)).ok();
  //     } while (written && conn.try_read_frame(*frame));
  //     if (!written) break;
  //   }
  // A frame read so costs no awaiter and no StatusOr, and is decoded where
  // the handler reads it, not copied there (bench/instructions.sh: 8% of the
  // framing's instructions per pipelined frame). Like any read, it ends the
  // validity of the frame read before, whatever it returns. Always false
  // with a codec without decode_whole() (FrameCodec). Inlined where it is
  // called: as a call it cost every such frame six registers saved and
  // restored, 11 of the frame's ~470 instructions (sbmp_echo_server,
  // callgrind).
  [[gnu::always_inline]] bool try_read_frame(Frame& frame);
  // co_await: absl::Status. `frame` must stay valid until the co_await ends.
  WriteFrameAwaiter write_frame(const Frame& frame) noexcept {
    return WriteFrameAwaiter(this, frame);
  }
  // Sends what the codec has queued (handshake, keep-alive answers).
  Task<absl::Status> flush_output();
  Task<absl::Status> close(absl::Status why = absl::OkStatus());
  // Turns the connection away at once: the codec's goodbye for `why` is
  // sent and the socket closed without waiting for the peer (a connection
  // over a limit, which must not hold its descriptor).
  Task<> refuse(absl::Status why);

  // The status that ended reading (OK while the connection is open).
  const absl::Status& status() const noexcept { return terminal_; }
  bool closed() const noexcept { return closed_; }
  C& codec() noexcept { return codec_; }
  S& stream() noexcept { return stream_; }
  const FramedOptions& options() const noexcept { return options_; }

  void hold() noexcept { ++holds_; }
  void release() noexcept {
    if (--holds_ == 0 && hold_waiter_)
      EventLoop::current()->schedule(std::exchange(hold_waiter_, {}));
  }

 private:
  // end(): waits for the holds, or close_timeout.
  class HoldWait;
  // One count of NetContext::hold_split_buffer(), given back once (a
  // moved-from FramedStream holds none).
  class SplitHold {
   public:
    SplitHold() = default;
    SplitHold(SplitHold&& other) noexcept : ctx_(std::exchange(other.ctx_, nullptr)) {}
    SplitHold& operator=(SplitHold&& other) noexcept {
      if (this != &other) {
        reset();
        ctx_ = std::exchange(other.ctx_, nullptr);
      }
      return *this;
    }
    ~SplitHold() { reset(); }
    bool acquire(NetContext& ctx) noexcept {
      reset();
      if (!ctx.hold_split_buffer()) return false;
      ctx_ = &ctx;
      return true;
    }
    void reset() noexcept {
      if (ctx_ != nullptr) std::exchange(ctx_, nullptr)->release_split_buffer();
    }

   private:
    NetContext* ctx_ = nullptr;
  };

  // ---- The per-connection reader coroutine (read_frame()'s waiting path) ----
  struct ReaderPromise;
  using ReaderHandle = std::coroutine_handle<ReaderPromise>;
  struct ReaderCoroutine {
    using promise_type = ReaderPromise;
    ReaderHandle handle;
  };
  struct ReaderPromise : coring::detail::FrameAllocated {
    FramedStream* self = nullptr;
    std::coroutine_handle<> caller;
    std::stop_token token;  // the caller's, for the reads it waits on
    std::optional<absl::StatusOr<Frame>> result;
    std::exception_ptr error;

    ReaderCoroutine get_return_object() noexcept {
      return ReaderCoroutine{ReaderHandle::from_promise(*this)};
    }
    std::suspend_always initial_suspend() const noexcept { return {}; }
    // Only reached when the body threw: hand the error to the caller.
    auto final_suspend() const noexcept { return HandBack{}; }
    void return_void() const noexcept {}
    void unhandled_exception() noexcept { error = std::current_exception(); }
    std::stop_token stop_token() const noexcept { return token; }
  };
  // The reader gives control back to the read_frame() caller.
  struct HandBack {
    bool await_ready() const noexcept { return false; }
    std::coroutine_handle<> await_suspend(ReaderHandle h) const noexcept {
      return coring::detail::transfer(h, std::exchange(h.promise().caller, {}));
    }
    void await_resume() const noexcept {}
  };
  struct PromiseOf {
    ReaderPromise* promise = nullptr;
    bool await_ready() const noexcept { return false; }
    bool await_suspend(ReaderHandle h) noexcept {
      promise = &h.promise();
      return false;
    }
    ReaderPromise& await_resume() const noexcept { return *promise; }
  };
  // Owns the reader's frame; moves with the FramedStream (the reader finds
  // the stream through ReaderPromise::self, set on every request).
  class ReaderSlot {
   public:
    ReaderSlot() = default;
    ReaderSlot(ReaderSlot&& other) noexcept : h_(std::exchange(other.h_, {})) {}
    ReaderSlot& operator=(ReaderSlot&& other) noexcept {
      if (this != &other) {
        reset();
        h_ = std::exchange(other.h_, {});
      }
      return *this;
    }
    ~ReaderSlot() { reset(); }
    ReaderHandle get() {
      if (!h_) h_ = run_reader().handle;
      return h_;
    }
    ReaderHandle peek() const noexcept { return h_; }
    void reset() noexcept {
      if (h_) std::exchange(h_, {}).destroy();
    }

   private:
    ReaderHandle h_;
  };
  static ReaderCoroutine run_reader();

  // read_frame() without waiting: true with `out` set when it is done.
  bool try_read_now(std::optional<absl::StatusOr<Frame>>& out);
  absl::StatusOr<Frame> take_reader_result();
  // write_frame() when codec output must be sent first.
  Task<absl::Status> flush_then_write(const typename C::Encoded& encoded);

  bool has_output() const { return codec_.pending_output().size() > output_in_flight_; }
  // How write_frame() queues `parts` (see the top of this file): copied when
  // they view memory the next read_frame() reuses and input is waiting.
  detail::Writer::Kind write_kind(absl::Span<const absl::Span<const uint8_t>> parts,
                                  size_t bytes) const {
    if (bytes <= stream_.context().options().copy_threshold ||
        bytes > options_.copy_pipelined_up_to) {
      return detail::Writer::Kind::kAuto;  // copied anyway, or too large to copy
    }
    if (!input_waiting()) return detail::Writer::Kind::kAuto;  // waiting costs nothing
    bool own_any = false;
    for (absl::Span<const uint8_t> p : parts) {
      if (p.empty()) continue;
      // A split frame (its start in the buffer before) whose buffers the
      // ring could not spare is sent from them, waiting, as a raw echo's
      // receive buffers are: copying it would cost what splitting saved.
      if (within(p, previous_bytes_)) return detail::Writer::Kind::kAuto;
      bool own = within(p, received_);
      if constexpr (requires(const C& c) { c.owns(p.data()); }) own = own || codec_.owns(p.data());
      own_any = own_any || own;
    }
    return own_any ? detail::Writer::Kind::kCopy : detail::Writer::Kind::kAuto;
  }
  // Bytes received and not decoded yet, or known to be in the socket: the
  // next read_frame() has input.
  bool input_waiting() const {
    const RecvStream* channel = stream_.state()->channel();
    return !input_.empty() ||
           (channel != nullptr && (channel->queued() > 0 || channel->direct_left_more()));
  }
  // Before waiting for input in the middle of a frame larger than a receive
  // buffer: lends the codec's reassembly buffer to the channel, which
  // receives the next bytes of the frame straight into it (see
  // FramedOptions::receive_in_place). finish_receive_in_place() takes it
  // back after the read.
  void receive_in_place() {
    if constexpr (std::is_same_v<S, Stream> &&
                  requires(C & c, std::vector<uint8_t> & v, size_t & offset) {
                    c.frame_remaining();
                    c.frame_received();
                    c.buffered_bytes();
                    c.lend_buffer(size_t{1}, v, offset);
                    c.return_buffer(std::move(v), size_t{0});
                  }) {
      // (Still lent: a reader destroyed while its read waited lent it.)
      if (lent_ || prefix_lent_ || !options_.receive_in_place) return;
      // (First the tests every wait between small frames ends at.)
      const size_t remaining = codec_.frame_remaining();
      const size_t unit = stream_.context().buffers().buffer_size();
      if (remaining < unit) {
        if (tail_in_place_ && remaining == 0) receive_prefix_in_place();
        return;
      }
      detail::StreamState* st = stream_.state();
      RecvStream* channel = st->channel();
      if (channel == nullptr || channel->queued() > 0 || st->interrupt_pending()) return;
      const size_t received = codec_.frame_received();
      // The peer proves it sends: half a buffer of this frame, or a frame
      // before it that was received in place. What it proved bounds what
      // one recv may take.
      if (received >= unit / 2) proven_ = std::max(proven_, received + remaining);
      if (received < unit / 2 && proven_ == 0) return;
      // (A proven peer's header alone takes no more than a few buffers: as
      // much as the codec keeps between frames anyway.)
      size_t want = std::min(remaining, std::max(4 * received, std::min(proven_, 4 * unit)));
      // A buffer grown before with room left takes that much as it is: it
      // grows (by the above, 5x) only once less than a receive buffer's
      // worth is left. Growing it whenever received + 4 x received outgrew
      // it (a frame trickling in, as fast as a flooded loop reads it) copied
      // the whole buffer nearly every recv.
      const size_t have = codec_.buffered_bytes();
      if (have >= received + unit) want = std::min(remaining, have - received);
      // The buffer grows to the frame's received + want bytes: within the
      // loop's budget for partial frames, or not at all.
      const size_t held = std::max(have, received + want);
      if (held > st->partial_bytes &&
          !stream_.context().partial_frame_fits(held - st->partial_bytes)) {
        return;
      }
      std::vector<uint8_t> buffer;
      size_t offset = 0;
      const size_t room = codec_.lend_buffer(want, buffer, offset);
      channel->receive_into(std::move(buffer), offset, room);
      lent_ = true;
    }
  }
  // Between frames, after a frame whose rest was received in place: the
  // next frame's header alone goes to prefix_ (the codec takes it from
  // there), so that a large frame is received in place from its first
  // payload byte instead of its first receive buffer's worth being copied
  // out of a ring buffer. A peer sending large frames one at a time (a
  // request/response peer) otherwise has the rest of each frame received in
  // place but its start copied. A small frame after large ones costs one
  // more recv, once: its rest comes through the ring, or it is all header,
  // and either ends the run.
  void receive_prefix_in_place() {
    if constexpr (requires(C & c) {
                    c.frame_prefix_size();
                    c.take_prefix(absl::Span<const uint8_t>());
                  }) {
      if (!input_.empty() || codec_pending() || codec_.frame_received() != 0 ||
          codec_holds_input()) {
        return;
      }
      detail::StreamState* st = stream_.state();
      RecvStream* channel = st->channel();
      if (channel == nullptr || channel->queued() > 0 || st->interrupt_pending()) return;
      const size_t n = codec_.frame_prefix_size();
      if (prefix_.size() < n) prefix_.resize(n);  // once per connection
      channel->receive_into(std::move(prefix_), 0, n);
      prefix_lent_ = true;
    }
  }
  // Right after the recv that completed a frame in place, once per
  // connection: that recv left more in the socket, so the peer pipelines
  // large frames (FramedOptions::pipelined_receive_buffer).
  bool pipelines_large_frames() {
    if constexpr (requires(const C& c) { c.frame_remaining(); }) {
      if (window_grown_ || options_.pipelined_receive_buffer == 0) return false;
      // (Not after a header received ahead, nor a frame's rest still coming.)
      if (!tail_in_place_ || codec_.frame_remaining() != 0) return false;
      const RecvStream* channel = stream_.state()->channel();
      if (channel == nullptr || !channel->direct_left_more()) return false;
      window_grown_ = true;
      return true;
    } else {
      return false;
    }
  }
  // FramedOptions::pipelined_receive_buffer, detached: no co_await here
  // (its temporaries would take room in the reader's frame, which every
  // connection keeps), and the reader goes on meanwhile. (It starts in the
  // loop's next turn: should the stream close first and its fixed slot go
  // to a new connection, that one gets the larger buffer, which is harmless.)
  void grow_receive_buffer() {
    ++stream_.context().stats().receive_buffers_reserved;
    spawn(stream_.context().loop(),
          net::detail::raise_receive_buffer_detached(
              stream_.file(),
              static_cast<int>(std::min<size_t>(options_.pipelined_receive_buffer, INT_MAX))));
  }
  // The codec has input without being given any (the next frame's header,
  // received past a frame in place or ahead of it).
  bool codec_pending() const {
    if constexpr (requires(const C& c) { c.pending_input(); }) {
      return codec_.pending_input() > 0;
    } else {
      return false;
    }
  }
  // After a read: the reassembly buffer back from the channel. True when
  // the read's bytes went straight into it (the read's RecvBuffer is only
  // a view of them).
  bool finish_receive_in_place() {
    if constexpr (std::is_same_v<S, Stream> && requires(C & c, std::vector<uint8_t> & v) {
                    c.return_buffer(std::move(v), size_t{0});
                  }) {
      if (!lent_ && !prefix_lent_) return false;
      RecvStream* channel = stream_.valid() ? stream_.state()->channel() : nullptr;
      // (No channel: reading has ended, and the buffer went with it.)
      if (channel == nullptr) return false;
      if (std::exchange(prefix_lent_, false)) {
        // The run goes on only if this frame's rest comes in place too: a
        // header-only frame (pipelined, one per header read ahead) ends it.
        tail_in_place_ = false;
        const size_t received = channel->take_direct(prefix_);
        if constexpr (requires(C & c) { c.take_prefix(absl::Span<const uint8_t>()); }) {
          codec_.take_prefix(absl::MakeConstSpan(prefix_.data(), received));
        }
        return received > 0;
      }
      std::vector<uint8_t> buffer;
      const size_t received = channel->take_direct(buffer);
      codec_.return_buffer(std::move(buffer), received);
      lent_ = false;
      tail_in_place_ = received > 0;
      return received > 0;
    } else {
      return false;
    }
  }
  // write_frame() of a frame that lies in the codec's reassembly buffer (it
  // was split across receive buffers) while more input waits (a pipelining
  // peer): the codec trades that buffer for one sent before on this loop
  // (NetContext::spare_for_trade(): none once the loop's traded buffers
  // reach NetOptions::spare_buffer_bytes), and the send queue sends the
  // frame from it. No copy, and no wait for the send, so the next frames are
  // read meanwhile and their echoes leave together. Not for small frames
  // (copied: they coalesce with their neighbours and hold no whole buffer
  // while queued), nor with no input waiting (borrowed: waiting for the send
  // then costs nothing, and one buffer stays in use instead of two taking
  // turns), nor when the write would not be queued at once (it would wait,
  // or fail, holding the frame's buffer in the awaiter, which frees it when
  // done: the frame must stay valid until the next read_frame()).
  bool exchange_frame_buffer(absl::Span<const absl::Span<const uint8_t>> parts, size_t bytes,
                             std::vector<uint8_t>& out) {
    if constexpr (requires(C & c, std::vector<uint8_t> & v) {
                    { c.exchange_buffer(nullptr, v) } -> std::same_as<bool>;
                  }) {
      if (bytes <= stream_.context().options().copy_threshold || !input_waiting() ||
          !stream_.state()->queues_now(bytes, /*traded=*/true)) {
        return false;
      }
      NetContext& ctx = stream_.context();
      for (absl::Span<const uint8_t> p : parts) {
        if (p.empty() || !codec_.owns(p.data())) continue;
        std::optional<std::vector<uint8_t>> spare = ctx.spare_for_trade();
        if (!spare) return false;  // the loop's traded buffers are at their bound
        const size_t given = spare->capacity();
        out = std::move(*spare);
        if (!codec_.exchange_buffer(p.data(), out)) {
          ctx.keep_spare_buffer(std::move(out));  // a large frame's buffer: not traded
          return false;
        }
        ctx.traded(out.capacity(), given);
        return true;
      }
    }
    return false;
  }
  // write_frame() of a frame that lies in the receive buffer being decoded
  // while more input waits (a pipelining peer), or once that buffer is
  // shared already, or of a small one alone: the send queue takes the
  // buffer over (Stream::share_received(), within the ring's bounds for
  // buffers parked in send queues) and sends the frame from it, its header
  // too when encoded as received. No copy, and no wait for the send: the
  // echoes of a buffer's frames leave as one run of it, as a raw echo's
  // would. The buffer stays readable for decoding until let_go_received().
  // True: queued so (the write is done); false: the frame is not for this.
  bool queue_shared(absl::Span<const absl::Span<const uint8_t>> parts, size_t bytes) {
    if constexpr (std::is_same_v<S, Stream>) {
      // (First the common case, cheaply: an echo sent as received, one part,
      // all of it in the buffer shared already, which is the shared SendBuf's
      // bytes: queued with no more checks.)
      if (in_shared(parts)) {
        if (!stream_.state()->queues_now(bytes)) return false;
        stream_.state()->queue_in_shared_now(parts[0]);
        return true;
      }
      return share_and_queue(parts, bytes);
    } else {
      return false;
    }
  }
  // queue_shared()'s common case (and write_frame()'s, inlined there).
  bool in_shared(absl::Span<const absl::Span<const uint8_t>> parts) const noexcept {
    return parts.size() == 1 && shared_ && inside(parts[0], received_);
  }
  // queue_shared() but for its common case.
  bool share_and_queue(absl::Span<const absl::Span<const uint8_t>> parts, size_t bytes) {
    if constexpr (std::is_same_v<S, Stream>) {
      // Not shared yet, it is shared while input waits (its frames' echoes
      // leave as one run of it), and for a small frame alone in the send
      // queue (a copy would coalesce with nothing).
      if (!shared_ && !input_waiting() &&
          !(bytes <= stream_.context().options().copy_threshold && stream_.state()->idle())) {
        return false;
      }
      if (!stream_.state()->queues_now(bytes)) return false;
      bool in_buffer = false;
      bool in_previous = false;  // a split frame's start (FramedOptions::split_payloads)
      for (absl::Span<const uint8_t> p : parts) {
        in_buffer = in_buffer || within(p, received_);
        in_previous = in_previous || within(p, previous_bytes_);
      }
      if (!in_buffer && !in_previous) return false;
      if (in_previous && !previous_shared_) previous_shared_ = stream_.share_previous(previous_);
      if (in_buffer && !shared_) shared_ = stream_.share_received(current_);
      // What lies in a buffer the ring cannot spare is copied (a split
      // frame's other part is still sent from its buffer).
      if (!(in_buffer && shared_) && !(in_previous && previous_shared_)) return false;
      stream_.state()->queue_shared_now(parts, bytes);
      return true;
    } else {
      return false;
    }
  }
  // `part` starts in `buffer`, or lies in it whole (inside()).
  static bool within(absl::Span<const uint8_t> part, absl::Span<const uint8_t> buffer) noexcept {
    return !part.empty() && part.data() >= buffer.data() &&
           part.data() < buffer.data() + buffer.size();
  }
  static bool inside(absl::Span<const uint8_t> part, absl::Span<const uint8_t> buffer) noexcept {
    return !part.empty() && part.data() >= buffer.data() &&
           part.data() + part.size() <= buffer.data() + buffer.size();
  }
  // Split payloads (FramedOptions::split_payloads): the codec may leave the
  // start of a frame whose rest fits one receive buffer in the buffer being
  // decoded. Set once: the setting moves with the codec.
  void allow_split() noexcept {
    if constexpr (std::is_same_v<S, Stream> && requires(C & c) {
                    c.set_split_payloads(size_t{1});
                    c.holds_input();
                    c.unhold();
                  }) {
      if (options_.split_payloads && stream_.valid()) {
        codec_.set_split_payloads(stream_.context().buffers().buffer_size());
      }
    }
  }
  // The codec reassembles large frames (those over a receive buffer) in
  // buffers from the loop's pool (NetContext::take_frame_buffer()) and
  // gives them back between frames: what is held follows the large frames
  // under way, not the connections that ever received one. Set once.
  void share_codec_buffers() noexcept {
    if constexpr (std::is_same_v<S, Stream> && requires(C & c) {
                    c.set_buffer_pool({nullptr, nullptr, nullptr, size_t{0}});
                  }) {
      if (!stream_.valid()) return;
      NetContext& ctx = stream_.context();
      codec_.set_buffer_pool({&ctx,
                              [](void* owner, size_t want) noexcept {
                                return static_cast<NetContext*>(owner)->take_frame_buffer(want);
                              },
                              [](void* owner, std::vector<uint8_t>& bytes) noexcept {
                                return static_cast<NetContext*>(owner)->keep_frame_buffer(bytes);
                              },
                              ctx.buffers().buffer_size()});
    }
  }
  bool codec_holds_input() const noexcept {
    if constexpr (requires(const C& c) { c.holds_input(); }) {
      return codec_.holds_input();
    } else {
      return false;
    }
  }
  // Before reading on: the codec still views the end of the buffer just
  // decoded (a split frame's start), which is kept until the frame has been
  // read (release_previous(), at the next read_frame()). Unless the rest of
  // the frame is here already, it counts against the loop's bound for such
  // buffers (NetContext::hold_split_buffer(): half the ring), so
  // that peers that stop mid-frame cannot take the ring from the others
  // (and the frame deadline ends them). Past it the codec copies the
  // frame's start after all (unhold()).
  void keep_received() noexcept {
    if constexpr (std::is_same_v<S, Stream> && requires(C & c) { c.unhold(); }) {
      release_previous();
      previous_bytes_ = received_;
      if (std::exchange(shared_, false)) {
        stream_.keep_shared_as_previous();
        previous_shared_ = true;
      }
      previous_ = std::move(current_);
      current_.reset();
      const RecvStream* channel = stream_.state()->channel();
      if (channel != nullptr && channel->queued() > 0) return;
      if (!previous_counted_.acquire(stream_.context())) {
        codec_.unhold();
        release_previous();
      }
    }
  }
  void release_previous() noexcept {
    if constexpr (std::is_same_v<S, Stream>) {
      // (Set whenever a buffer is kept: the common case costs one test.)
      if (previous_bytes_.empty()) return;
      previous_.reset();
      previous_bytes_ = {};
      if (std::exchange(previous_shared_, false)) stream_.release_previous();
      previous_counted_.reset();
    }
  }
  // The receive buffer being decoded is used up (or reading ends).
  void let_go_received() noexcept {
    current_.reset();
    received_ = {};
    if constexpr (std::is_same_v<S, Stream>) {
      if (std::exchange(shared_, false)) stream_.release_shared();
    }
  }
  // The codec's decode_whole() takes a maker of the frame (only declared:
  // for the test).
  struct MakeFrame {
    Frame& operator()() const noexcept;
  };
  static constexpr bool WholeByMaker =
      requires(C & c, absl::Span<const uint8_t>& in, MakeFrame make) {
    { c.decode_whole(in, make) } -> std::same_as<bool>;
  };
  // Or only the Frame to set.
  static constexpr bool WholeIntoFrame =
      !WholeByMaker && requires(C & c, absl::Span<const uint8_t>& in, Frame& f) {
    { c.decode_whole(in, f) } -> std::same_as<bool>;
  };
  // The codec's fast path (FrameCodec: decode_whole()), where it has one:
  // true with `out` set to the frame, after frame_done(). Decoded where the
  // caller gets it: a frame written field by field and copied at once costs
  // store-forwarding stalls.
  bool decode_whole(std::optional<absl::StatusOr<Frame>>& out) {
    if (decode_whole_into([&out]() -> Frame& { return *out.emplace(absl::in_place); })) {
      return true;
    }
    // (A codec that decodes into a Frame given first had one made.)
    if constexpr (WholeIntoFrame) out.reset();
    return false;
  }
  // Where decode_whole() found no whole frame: one step of the codec's
  // decode(). kFrame: `out` holds a frame. kFailed: decode_error_ holds why
  // reading must stop. kMore: the step used input without making a frame.
  // (A function of its own, not in run_reader()'s body: GCC 12 gives every
  // local of a coroutine a place in its frame, which every connection keeps,
  // and the decoded result, about 100 bytes, lay between the fields each
  // read touches.)
  enum class Step : uint8_t { kFrame, kMore, kFailed };
  Step decode_slow(std::optional<absl::StatusOr<Frame>>& out) {
    absl::StatusOr<std::optional<Frame>> decoded = codec_.decode(input_);
    if (!decoded.ok()) {
      decode_error_ = std::move(decoded).status();  // the reader ends the connection
      return Step::kFailed;
    }
    if (!decoded->has_value()) return Step::kMore;
    frame_done();
    out.emplace(std::move(**decoded));
    return Step::kFrame;
  }
  // decode_whole() into the Frame that make() returns: called once there is
  // a frame when the codec takes a maker (WholeByMaker), first otherwise.
  template <class Make>
  bool decode_whole_into(Make&& make) {
    if constexpr (WholeByMaker) {
      // The frame is made once the codec has one, and set at once: no field
      // of it is written twice.
      if (codec_.decode_whole(input_, make)) {
        frame_done();
        return true;
      }
    } else if constexpr (WholeIntoFrame) {
      if (codec_.decode_whole(input_, make())) {
        frame_done();
        return true;
      }
    }
    return false;
  }
  // A read begins: the last frame read is no longer in use.
  void release_last_frame() noexcept {
    // The buffer it was sent from (exchange_frame_buffer()) may be reused.
    if constexpr (std::is_same_v<S, Stream>) stream_.state()->release_taken();
    // It no longer views the buffer before this one.
    if (!codec_holds_input()) release_previous();
    // Nor the codec's reassembly buffer, which goes back to the loop's pool.
    if constexpr (requires(C & c) { c.release_buffer(); }) codec_.release_buffer();
  }
  // A frame was decoded: its deadline is over.
  void frame_done() noexcept {
    detail::StreamState* st = stream_.state();
    st->mid_frame = false;
    st->frame_ticks = 0;
    ++turn_frames_;
  }
  // Has this connection read its FramedOptions::frames_per_turn in this
  // turn of the loop? Starts a new count when the turn changed.
  bool turn_spent() noexcept {
    if (options_.frames_per_turn == 0) return false;
    const uint64_t now = stream_.context().loop().iteration();
    if (now != turn_) {
      turn_ = now;
      turn_frames_ = 0;
      return false;
    }
    return turn_frames_ >= options_.frames_per_turn;
  }
  // Before waiting for input: is the codec in the middle of a frame (its
  // deadline runs), and does the memory it holds for it fit the loop's
  // budget? False: over budget.
  bool note_partial_frame() noexcept {
    detail::StreamState* st = stream_.state();
    if constexpr (requires(const C& c) { c.mid_frame(); }) st->mid_frame = codec_.mid_frame();
    if constexpr (requires(const C& c) { c.buffered_bytes(); }) {
      const size_t held = codec_.buffered_bytes();
      NetContext& ctx = stream_.context();
      if (held > st->partial_bytes && !ctx.partial_frame_fits(held - st->partial_bytes)) {
        ++ctx.stats().partial_frame_refusals;
        return false;
      }
      ctx.account_partial_frame(*st, held);
    }
    return true;
  }
  // While the reader waits for input between frames, the stream's idle
  // trim (StreamState::trim_idle, run by the server's idle sweep) lets the
  // codec give back memory it keeps for reuse (a reassembly buffer grown by
  // a large frame), when the codec has `void trim()`.
  void watch_idle(bool on) noexcept {
    if constexpr (requires(C & c) { c.trim(); }) {
      if (!stream_.valid()) return;
      if (on) {
        stream_.state()->set_idle_hook(
            [](void* self) noexcept { static_cast<FramedStream*>(self)->codec_.trim(); }, this);
      } else {
        stream_.state()->set_idle_hook(nullptr, nullptr);
      }
    }
  }
  // Ends reading with `why` and closes: gracefully (codec goodbye) unless
  // the connection is broken.
  Task<> end(absl::Status why, bool graceful);

  // First what a frame's read and write touch, then the codec (whose own
  // such fields come first), then the rest: a FramedStream is part of
  // every connection's handler frame, out of the cache when a connection's
  // next message comes, with thousands of them, and each line a message
  // touches is a miss.
  S stream_;
  absl::Span<const uint8_t> input_;
  absl::Span<const uint8_t> received_;  // current_'s bytes (also once shared)
  // previous_'s bytes (below): empty when it holds none, as it mostly does.
  absl::Span<const uint8_t> previous_bytes_;
  typename S::Buffer current_;
  absl::Status terminal_;
  // Found by try_read_now(), for the reader; OK: none (a decode error never
  // is). (Not an optional<Status>: GCC 12 at -O3 warned that moving one in
  // FramedStream's move constructor may read it uninitialized.)
  absl::Status decode_error_;
  size_t output_in_flight_ = 0;
  uint64_t turn_ = 0;             // the loop's iteration() these frames were read in
  uint32_t turn_frames_ = 0;      // frames read in turn_ (FramedOptions::frames_per_turn)
  bool shared_ = false;           // current_ was handed to the send queue
  bool previous_shared_ = false;  // previous_ was
  bool ending_ = false;           // end() has begun; closed_ once the goodbye starts
  bool closed_ = false;
  bool yield_turn_ = false;     // try_read_now() found the turn's budget spent
  bool lent_ = false;           // the codec's buffer is out (receive_in_place())
  bool prefix_lent_ = false;    // prefix_ is out (receive_prefix_in_place())
  bool tail_in_place_ = false;  // the last frame's rest was received in place
  bool tail_in_ = false;        // bytes of a frame arrived in the codec's buffer: decode
  bool window_grown_ = false;   // pipelines_large_frames() said so
  FramedOptions options_;
  C codec_;
  // The buffer before current_, while the codec views its end (a split
  // frame's start: FramedOptions::split_payloads); previous_shared_ above.
  typename S::Buffer previous_;
  SplitHold previous_counted_;
  size_t holds_ = 0;
  std::coroutine_handle<> hold_waiter_;
  std::vector<uint8_t> prefix_;  // the next frame's header, received ahead
  size_t proven_ = 0;            // the largest frame the peer sent half a buffer of
  ReaderSlot reader_;            // last: destroyed first, while what it uses is alive
};

template <FrameCodec C, ByteStream S>
class FramedStream<C, S>::ReadFrameAwaiter {
 public:
  explicit ReadFrameAwaiter(FramedStream* self) noexcept : self_(self) {}
  ReadFrameAwaiter(const ReadFrameAwaiter&) = delete;
  ReadFrameAwaiter& operator=(const ReadFrameAwaiter&) = delete;
  ~ReadFrameAwaiter() {
    // The awaiting coroutine was destroyed while the reader waited for it:
    // the reader goes too (as a Task's frame would), and is made anew later.
    if (waiting_) {
      self_->watch_idle(false);
      self_->reader_.reset();
    }
  }

  bool await_ready() { return self_->try_read_now(result_); }
  template <class Promise>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> h) {
    ReaderHandle reader = self_->reader_.get();
    ReaderPromise& p = reader.promise();
    p.self = self_;
    p.caller = h;
    if constexpr (coring::detail::HasStopToken<Promise>) {
      p.token = h.promise().stop_token();
    } else {
      p.token = {};
    }
    waiting_ = true;
    return coring::detail::transfer(h, reader);
  }
  absl::StatusOr<Frame> await_resume() {
    if (!waiting_) return std::move(*result_);
    waiting_ = false;
    return self_->take_reader_result();
  }

 private:
  // (The result first: its engaged flag, at its end, then shares a line
  // with the fields a read that waited touches, in the reader's coroutine
  // frame, which is out of the cache when the frame comes.)
  std::optional<absl::StatusOr<Frame>> result_;
  FramedStream* self_;
  bool waiting_ = false;
};

template <FrameCodec C, ByteStream S>
class FramedStream<C, S>::WriteFrameAwaiter {
 public:
  WriteFrameAwaiter(FramedStream* self, const Frame& frame) noexcept
      : self_(self), frame_(&frame) {}
  WriteFrameAwaiter(const WriteFrameAwaiter&) = delete;
  WriteFrameAwaiter& operator=(const WriteFrameAwaiter&) = delete;
  ~WriteFrameAwaiter() {
    switch (done_) {
      case Done::kStatus:
        std::destroy_at(&status_);
        break;
      case Done::kSlow:
        std::destroy_at(&slow_);
        break;
      case Done::kWrite:  // (before encoded_, which it sends)
        std::destroy_at(&write_);
        break;
      case Done::kNothing:
      case Done::kQueued:
        break;
    }
  }

  // The common case - an echo sent as received, queued at once in the
  // receive buffer it came in - inlined into the writer's coroutine: as a
  // call, saving and restoring the registers it uses cost every frame as
  // much as the queueing. Everything else is ready_slow()'s.
  [[gnu::always_inline]] bool await_ready() {
    FramedStream& s = *self_;
    if (s.closed_ || !s.stream_.valid()) [[unlikely]]
      return finish_closed();
    if (absl::Status st = s.codec_.encode(*frame_, encoded_); !st.ok()) [[unlikely]] {
      finish(std::move(st));
      return true;
    }
    if constexpr (std::is_same_v<S, Stream>) {
      const absl::Span<const absl::Span<const uint8_t>> parts = encoded_.parts();
      if (s.in_shared(parts) && !s.has_output() && s.stream_.state()->queues_now(parts[0].size())) {
        s.stream_.state()->queue_in_shared_now(parts[0]);
        done_ = Done::kQueued;
        return true;
      }
    }
    return ready_slow();
  }
  template <class Promise>
  std::coroutine_handle<> await_suspend(std::coroutine_handle<Promise> h) {
    if (done_ == Done::kSlow) {
      return typename Task<absl::Status>::Awaiter(slow_.handle()).await_suspend(h);
    }
    write_.await_suspend(h);
    return std::noop_coroutine();
  }
  absl::Status await_resume() {
    switch (done_) {
      case Done::kQueued:
        return absl::OkStatus();
      case Done::kStatus:
        return std::move(status_);
      case Done::kSlow:
        return slow_.handle().promise().take_result();
      case Done::kWrite:
        return write_.await_resume();
      case Done::kNothing:
        break;
    }
    return absl::InternalError("write_frame: resumed before it was started");
  }

 private:
  [[gnu::noinline]] bool finish_closed() {
    const FramedStream& s = *self_;
    finish(s.terminal_.ok() ? absl::FailedPreconditionError("write_frame: closed") : s.terminal_);
    return true;
  }
  // await_ready() past its common case, with encoded_ made.
  [[gnu::noinline]] bool ready_slow() {
    FramedStream& s = *self_;
    if (s.has_output()) {
      std::construct_at(&slow_, s.flush_then_write(encoded_));
      done_ = Done::kSlow;
      return false;
    }
    const absl::Span<const absl::Span<const uint8_t>> parts = encoded_.parts();
    if constexpr (std::is_same_v<S, Stream>) {
      size_t bytes = 0;
      if (parts.size() == 1) {
        bytes = parts[0].size();  // an echo sent as received: no loop
      } else {
        for (absl::Span<const uint8_t> p : parts) bytes += p.size();
      }
      // (Sharing first: it is the common case, and it takes frames in the
      // receive buffers, where exchanging takes those in the codec's.)
      if (s.queue_shared(parts, bytes)) {
        done_ = Done::kQueued;
        return true;
      }
      if (std::vector<uint8_t> taken; s.exchange_frame_buffer(parts, bytes, taken)) {
        std::construct_at(&write_, s.stream_.state(), parts, std::move(taken), /*traded=*/true);
      } else {
        std::construct_at(&write_, s.stream_.state(), parts, s.write_kind(parts, bytes));
      }
      done_ = Done::kWrite;
      return write_.await_ready();
    } else {
      // Another transport (TLS): its synchronous path when it has one, else
      // its write() as a coroutine.
      if constexpr (requires(absl::Status & out) { s.stream_.try_write_now(parts, out); }) {
        absl::Status out;
        if (s.stream_.try_write_now(parts, out)) {
          finish(std::move(out));
          return true;
        }
      }
      std::construct_at(&slow_, s.flush_then_write(encoded_));
      done_ = Done::kSlow;
      return false;
    }
  }
  void finish(absl::Status status) {
    std::construct_at(&status_, std::move(status));
    done_ = Done::kStatus;
  }

  // What await_ready() did, and which member of the union it made. An echo
  // is usually queued at once (kQueued): no status to make, move and
  // destroy per frame. Only the first line or so of this awaiter is touched
  // then (the encoded frame's hot fields come first too): it is part of the
  // writer's coroutine frame, out of the cache when a connection's next
  // message comes, with thousands of them.
  enum class Done : uint8_t { kNothing, kQueued, kStatus, kSlow, kWrite };
  FramedStream* self_;
  const Frame* frame_;
  Done done_ = Done::kNothing;
  typename C::Encoded encoded_;  // lives until the write is done
  union {
    absl::Status status_;  // kStatus: finished before any write
    Task<absl::Status> slow_;
    Stream::WriteAwaiter write_;
  };
};

template <FrameCodec C, ByteStream S>
class FramedStream<C, S>::HoldWait {
 public:
  explicit HoldWait(FramedStream* self) noexcept : self_(self), timer_(&HoldWait::on_timer, this) {}
  bool await_ready() const noexcept { return self_->holds_ == 0; }
  void await_suspend(std::coroutine_handle<> h) noexcept {
    self_->hold_waiter_ = h;
    timer_.arm(*EventLoop::current(), self_->options_.close_timeout);
  }
  void await_resume() const noexcept {}

 private:
  static void on_timer(void* context, bool fired) noexcept {
    auto* self = static_cast<HoldWait*>(context);
    if (fired && self->self_->hold_waiter_) {
      EventLoop::current()->schedule(std::exchange(self->self_->hold_waiter_, {}));
    }
  }
  FramedStream* self_;
  detail::CallbackTimer timer_;  // destroyed armed: its op is orphaned
};

template <FrameCodec C, ByteStream S>
bool FramedStream<C, S>::try_read_now(std::optional<absl::StatusOr<Frame>>& out) {
  if (!terminal_.ok()) {
    out.emplace(terminal_);
    return true;
  }
  if (closed_ || !stream_.valid()) {
    out.emplace(absl::FailedPreconditionError("read_frame: closed"));
    return true;
  }
  release_last_frame();
  if ((!input_.empty() || codec_pending()) && turn_spent()) {
    yield_turn_ = true;  // the reader yields to the loop first
    return false;
  }
  while (!input_.empty() || codec_pending()) {
    if (decode_whole(out)) return true;
    const Step step = decode_slow(out);
    if (step != Step::kMore) return step == Step::kFrame;
  }
  return false;
}

template <FrameCodec C, ByteStream S>
inline bool FramedStream<C, S>::try_read_frame(Frame& frame) {
  // Only what read_frame() would find ready too, and nothing it would do
  // first but release the last frame's buffers, as it does.
  if (input_.empty() || !terminal_.ok() || closed_ || !stream_.valid()) return false;
  release_last_frame();
  return !turn_spent() && decode_whole_into([&frame]() -> Frame& { return frame; });
}

template <FrameCodec C, ByteStream S>
absl::StatusOr<typename C::Frame> FramedStream<C, S>::take_reader_result() {
  ReaderHandle reader = reader_.peek();
  ReaderPromise& p = reader.promise();
  if (reader.done()) {
    std::exception_ptr error = std::move(p.error);
    reader_.reset();
    std::rethrow_exception(error);
  }
  absl::StatusOr<Frame> result = std::move(*p.result);
  p.result.reset();
  return result;
}

// The reader: one request per resumption by ReadFrameAwaiter, then back to
// the caller. The loop never ends; the frame is destroyed by ReaderSlot.
template <FrameCodec C, ByteStream S>
typename FramedStream<C, S>::ReaderCoroutine FramedStream<C, S>::run_reader() {
  ReaderPromise& p = co_await PromiseOf{};
  for (;;) {
    FramedStream& s = *p.self;
    // Set when reading ends: end() closes with it, with the codec's goodbye
    // when graceful. (One end() call site: every co_await's temporaries
    // take room in this frame, which every connection keeps.)
    absl::Status end_why;
    bool graceful = true;
    for (;;) {
      if (!s.decode_error_.ok()) {
        // A protocol error (the codec queued its goodbye) or the peer's goodbye.
        end_why = std::exchange(s.decode_error_, absl::OkStatus());
        break;
      }
      if (!s.input_.empty() || std::exchange(s.tail_in_, false) || s.codec_pending()) {
        if (s.decode_whole(p.result) || s.decode_slow(p.result) == Step::kFrame) break;
        continue;  // (a failure: decode_error_ ends reading above)
      }
      s.receive_in_place();  // first: note_partial_frame() counts a buffer grown for it
      if (!s.note_partial_frame()) {
        end_why = absl::ResourceExhaustedError(
            "partially received frames are over this thread's memory budget "
            "(NetOptions::max_partial_frame_bytes)");
        break;
      }
      if (s.has_output()) {
        if (absl::Status st = co_await s.flush_output(); !st.ok()) {
          end_why = std::move(st);
          graceful = false;
          break;
        }
      }
      if (s.codec_holds_input()) {
        s.keep_received();  // a frame's start is in it
      } else {
        s.release_previous();  // (a frame over three buffers: copied)
      }
      s.let_go_received();
      s.watch_idle(true);
      auto buf = co_await s.stream_.read();
      s.watch_idle(false);
      const bool in_place = s.finish_receive_in_place();
      if (!buf.ok()) {
        if (absl::IsCancelled(buf.status()) && !s.stream_.state()->last_read_interrupted()) {
          p.result.emplace(buf.status());  // the caller's stop token; the stream stays usable
          break;
        }
        // An idle timeout or shutdown (an interrupt) says goodbye with its
        // reason; anything else is a broken connection.
        end_why = buf.status();
        graceful = s.stream_.state()->last_read_interrupted();
        break;
      }
      if (buf->empty()) {
        end_why = end_of_stream_error();
        graceful = false;
        break;
      }
      if (in_place) {
        s.tail_in_ = true;  // the bytes are in the codec's buffer already
        if constexpr (std::is_same_v<S, Stream>) {
          if (s.pipelines_large_frames()) s.grow_receive_buffer();
        }
        continue;
      }
      s.tail_in_place_ = false;
      s.current_ = std::move(*buf);
      s.received_ = s.current_.span();
      s.input_ = s.received_;
    }
    if (!end_why.ok()) {
      co_await s.end(std::move(end_why), graceful);
      p.result.emplace(s.terminal_);
    }
    p.token = {};
    co_await HandBack{};
    if (std::exchange(p.self->yield_turn_, false)) {
      // The next request finds the turn's budget spent: a NOP's round trip
      // through the ring puts this reader behind the completions already
      // there. (Not yield(): the ready queue cannot forget a reader
      // destroyed while queued.) Here, after the body, because GCC lays
      // the frame out in the body's order, and the NOP's awaiter (about 140
      // bytes, made once per turn's budget) would otherwise lie between the
      // fields every request touches. (A reader's first request does not
      // yield: it can only find the budget spent by frames read without
      // the reader, and the next request yields.)
      (void)co_await coring::nop();
    }
  }
}

template <FrameCodec C, ByteStream S>
Task<absl::Status> FramedStream<C, S>::flush_then_write(const typename C::Encoded& encoded) {
  if (absl::Status s = co_await flush_output(); !s.ok()) co_return s;
  absl::Span<const absl::Span<const uint8_t>> parts = encoded.parts();
  co_return co_await stream_.write(parts);
}

template <FrameCodec C, ByteStream S>
Task<absl::Status> FramedStream<C, S>::flush_output() {
  // Always copied: the codec may move its output buffer once consumed.
  // Writes complete in order, so consuming in completion order is right.
  absl::Span<const uint8_t> pending = codec_.pending_output();
  if (pending.size() <= output_in_flight_) co_return absl::OkStatus();
  const absl::Span<const uint8_t> chunk = pending.subspan(output_in_flight_);
  output_in_flight_ += chunk.size();
  const absl::Span<const uint8_t> parts[1] = {chunk};
  absl::Status s = co_await stream_.write_copy(parts);
  output_in_flight_ -= chunk.size();
  codec_.consume_output(chunk.size());
  co_return s;
}

template <FrameCodec C, ByteStream S>
Task<absl::Status> FramedStream<C, S>::close(absl::Status why) {
  // (No conditional expression inside co_await: GCC 12 destroys its
  // temporary twice.)
  if (!closed_) co_await end(std::move(why), /*graceful=*/true);
  co_return absl::OkStatus();
}

template <FrameCodec C, ByteStream S>
Task<> FramedStream<C, S>::refuse(absl::Status why) {
  if (closed_) co_return;
  closed_ = true;
  terminal_ = why;
  if (!stream_.valid()) co_return;
  codec_.close(why);
  (void)co_await flush_output();
  (void)co_await stream_.close();
}

template <FrameCodec C, ByteStream S>
Task<> FramedStream<C, S>::end(absl::Status why, bool graceful) {
  if (closed_ || ending_) co_return;
  ending_ = true;
  // close() with OK leaves reading "ended" as FailedPrecondition.
  terminal_ = why.ok() ? absl::FailedPreconditionError("closed by this side") : why;
  input_ = {};
  let_go_received();
  if constexpr (requires(C & c) { c.unhold(); }) {
    if (codec_holds_input()) codec_.unhold();  // it must not view what goes now
  }
  release_previous();
  if (graceful && stream_.valid() && stream_.state()->write_error().ok()) {
    co_await HoldWait(this);  // answers owed go out before the goodbye
  }
  closed_ = true;
  if (!stream_.valid()) co_return;
  detail::StreamState* state = stream_.state();
  state->mid_frame = false;
  if (!graceful || !state->write_error().ok()) {
    (void)co_await stream_.close();
    co_return;
  }
  // One deadline for the whole goodbye: flush, half-close, drain.
  state->arm_deadline(options_.close_timeout);
  const auto goodbye_deadline = std::chrono::steady_clock::now() + options_.close_timeout;
  codec_.close(why);
  (void)co_await flush_output();
  const absl::Status half_closed = co_await stream_.shutdown_write();
  if (half_closed.ok()) {
    // Until the peer closes, the deadline aborts the stream, or the peer
    // sent more than it had in flight when it saw the goodbye.
    size_t drained = 0;
    for (;;) {
      auto buf = co_await stream_.read();
      if (!buf.ok() || buf->empty()) break;
      drained += buf->size();
      if (drained > options_.close_drain_bytes) break;
    }
    if (drained > options_.close_drain_bytes) {
      // Take no more input until the deadline: the peer's sends stall on a
      // full window and cost nothing more, while one that heeds the goodbye
      // still reads every answer queued before it, and the goodbye.
      ++stream_.context().stats().drain_overruns;
      state->cancel_deadline();
      (void)co_await sleep_until(goodbye_deadline);
      // Then what the socket holds, without waiting (interrupt_read), and
      // what the peer's kernel had queued behind it (its send buffer: at
      // most 4 MiB with Linux's default tcp_wmem): a peer that stopped
      // sending gets our close without a reset (closing over unread input
      // resets, which can destroy the goodbye before the peer reads it).
      state->interrupt_read(absl::DeadlineExceededError("the goodbye is over"));
      for (size_t left = options_.close_drain_bytes + (size_t{4} << 20);;) {
        auto rest = co_await stream_.read();
        if (!rest.ok() || rest->empty() || rest->size() >= left) break;
        left -= rest->size();
      }
    }
  }
  (void)co_await stream_.close();
}

}  // namespace coring::net
