// FrameCodec: the contract between net/'s FramedStream and a frame protocol.
//
// net/ moves bytes; a codec turns them into frames and back and keeps the
// protocol's per-connection state (handshake, keep-alive, goodbye). net/
// defines this concept and never includes a codec; a codec satisfies it using
// only its own types and Abseil's, without knowing net/ exists. Applications
// compose the two: `FramedStream<coring::sbmp::Codec>`.
//
// One codec object serves one connection and is used from one thread.
#pragma once

#include <array>
#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace coring::net {

template <class C>
concept FrameCodec = requires(C& codec, absl::Span<const uint8_t>& input,
                              const typename C::Frame& frame, typename C::Encoded& encoded,
                              const typename C::Encoded& const_encoded, size_t n,
                              absl::Status why) {
  // A non-owning view of one decoded frame (type, extensions, payload).
  typename C::Frame;

  // A short scatter list for one outgoing frame: the codec's own bytes (header,
  // extension block, trailer) plus a view of the payload, which is never
  // copied. Default-constructible and reusable, so a connection keeps one per
  // write in flight and encoding allocates nothing.
  typename C::Encoded;
  requires std::default_initializable<typename C::Encoded>;
  { const_encoded.parts() } -> std::convertible_to<absl::Span<const absl::Span<const uint8_t>>>;

  // Decodes from `input` and advances it past what was consumed. Returns:
  //  * a frame for the application: a view into `input`'s memory, or into
  //    the codec's own buffer when the frame was split across inputs; valid
  //    until the next decode() call;
  //  * std::nullopt once `input` is used up without completing such a frame
  //    (protocol frames - keep-alives, handshakes - are handled inside and
  //    their answers queued in pending_output());
  //  * an error when reading must stop: a protocol violation (the codec has
  //    queued its goodbye in pending_output()), or the peer's own goodbye. The
  //    status names the protocol's error.
  { codec.decode(input) } -> std::same_as<absl::StatusOr<std::optional<typename C::Frame>>>;

  // Encodes `frame` (a decoded one to echo it, or one the application built)
  // into `encoded`. Fails, with nothing to send, when the frame breaks the
  // peer's limits or the connection is closing.
  { codec.encode(frame, encoded) } -> std::same_as<absl::Status>;

  // Bytes the codec wants sent (handshake answers, keep-alive replies,
  // goodbyes), in order; the transport sends them before anything it encodes
  // later and reports progress with consume_output().
  { codec.pending_output() } -> std::same_as<absl::Span<const uint8_t>>;
  codec.consume_output(n);

  // This side is closing the connection; `why` says why, in absl terms:
  // OK = normal close, Unavailable = server shutdown, ResourceExhausted =
  // overloaded, DeadlineExceeded = idle timeout. The codec queues its goodbye
  // (if the protocol has one) and refuses further encodes.
  codec.close(why);
};

// Optional members a codec may add, which FramedStream uses when present:
//  * bool mid_frame() const - part of a frame has arrived, not all of it
//    (the connection's frame deadline runs: ServerOptions::frame_timeout);
//  * size_t buffered_bytes() const - memory held to reassemble a split frame
//    (counted against NetOptions::max_partial_frame_bytes);
//  * bool owns(const uint8_t* p) const - p lies in the codec's own memory that
//    a decoded frame may view (a reassembly buffer), which a later decode()
//    reuses; FramedStream then treats a write from it as it treats one from
//    the receive buffer (see write_frame());
//  * bool exchange_buffer(const uint8_t* p, std::vector<uint8_t>& other) -
//    hands over the codec's buffer that `p` (a frame just decoded) lies in,
//    taking `other` in its place; false, changing nothing, when it will not.
//    FramedStream over a Stream then sends that frame from the buffer it got
//    without a copy or a wait, and gives the buffer back as `other` once
//    sent (write_frame());
//  * void trim() - the connection has been idle a while, between frames:
//    free memory kept for reuse (called from the server's idle sweep while
//    the reader waits for input; no frame handed out is in use then);
//  * void set_buffer_pool({owner, take, give, min_frame}) and
//    void release_buffer() - reassembly buffers for frames of at least
//    min_frame bytes come from take(owner, want) and go back through
//    give(owner, buffer) (false: refused, kept); FramedStream over a Stream
//    passes the loop's pool (NetContext::take_frame_buffer()) and calls
//    release_buffer() when a read_frame() begins (the last frame is no
//    longer in use then), so a connection between frames holds none;
//  * bool decode_whole(absl::Span<const uint8_t>& input, Frame& frame) -
//    decode()'s fast path: true with `frame` set (and `input` advanced)
//    when it decoded an application frame as decode() would, false
//    (consuming nothing) when decode() must be called. It spares the
//    common case decode()'s status and optional. Also, where the codec has
//    it, as decode_whole(input, make): make() returns the Frame to set,
//    called only once there is one (FramedStream then constructs the frame
//    in the reader's result and sets each field once).

// CallCodec: a FrameCodec whose frames carry what a request/reply channel
// (net/channel.h, net/channel_server.h) needs: a correlation id that a reply
// copies from its request (SBMP: REQUEST_ID), the time budget the caller
// grants (SBMP: TIMEOUT_US) and a W3C trace context (SBMP: TRACE_CONTEXT).
// All of it is static: reading and stamping frames needs no connection state.
template <class C>
concept CallCodec = FrameCodec<C> &&
    requires(const typename C::Frame& frame, const typename C::TraceContext& trace,
             typename C::TraceContext& mutable_trace, typename C::CallHeader& header,
             std::vector<uint8_t>& storage, uint64_t id,
             std::optional<std::chrono::microseconds> budget,
             std::optional<typename C::TraceContext> maybe_trace) {
  // W3C trace-context: a 16-byte trace id and an 8-byte parent (span) id.
  typename C::TraceContext;
  requires std::regular<typename C::TraceContext>;
  { mutable_trace.trace_id } -> std::same_as<std::array<uint8_t, 16>&>;
  { mutable_trace.parent_id } -> std::same_as<std::array<uint8_t, 8>&>;

  // Reusable storage for the codec's bytes of a stamped frame (default-
  // constructible; after warm-up, stamping allocates nothing).
  typename C::CallHeader;
  requires std::default_initializable<typename C::CallHeader>;

  { C::correlation_id(frame) } -> std::same_as<std::optional<uint64_t>>;
  { C::time_budget(frame) } -> std::same_as<std::optional<std::chrono::microseconds>>;
  { C::trace_context(frame) } -> std::same_as<std::optional<typename C::TraceContext>>;

  // `frame` with its correlation id set to `id`, and its time budget and trace
  // context set to `budget` / `trace` when those have a value (left as they
  // are otherwise); everything else kept. The result points into `header`
  // (the codec's bytes) and into `frame`'s memory (the payload).
  { C::stamp(frame, id, budget, maybe_trace, header) } -> std::same_as<typename C::Frame>;

  // A copy of `frame` whose bytes live in `storage` (its capacity reused), so
  // the frame outlives the receive buffer it was decoded into.
  { C::copy_frame(frame, storage) } -> std::same_as<typename C::Frame>;
};

}  // namespace coring::net
