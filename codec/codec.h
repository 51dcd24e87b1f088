// Codec: one SBMP connection's protocol state - streaming decoder, encoder,
// HELLO negotiation, PING/PONG and GOAWAY - with no transport in it. It is
// shaped to satisfy net/'s FrameCodec concept (net/frame_codec.h) without
// including it, so `coring::net::FramedStream<coring::sbmp::Codec>` works.
//
//   Codec codec;                          // server side, defaults
//   Codec client({.role = Role::kClient}); // queues its HELLO at once
//
//   // read loop
//   absl::StatusOr<std::optional<Frame>> f = codec.decode(input);
//   // ... send codec.pending_output() first, then report consume_output(n)
//   // write
//   Codec::Encoded encoded;
//   codec.encode(frame, encoded);  // send encoded.parts()
//
// Control frames never reach the application: PINGs are answered with PONGs
// (payload and REQUEST_ID copied) in pending_output(), PONGs are counted,
// HELLO/HELLO_ACK drive the negotiation, and a peer's GOAWAY ends decoding
// with an error status carrying FrameError{remote = true}. A protocol error
// queues GOAWAY(code) and ends decoding with the error. After a GOAWAY either
// way, encode() refuses and nothing more is queued.
//
// Output bytes (handshake, PINGs and PONGs, GOAWAY) live in one buffer of
// fixed capacity, allocated when the first of them is queued and freed once
// they have all been consumed, so that an idle connection holds none of it
// (its 16 KiB were most of a connection's memory); application frames,
// which encode() hands out as a scatter list, never touch it. A connection
// that exchanges PINGs keeps it until trim(), so that keep-alive traffic
// allocates nothing per message. The span pending_output() returns is never
// moved by later queuing.
#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coring/codec/control.h"
#include "coring/codec/decoder.h"
#include "coring/codec/encoder.h"
#include "coring/codec/error.h"
#include "coring/codec/frame.h"
#include "coring/codec/negotiation.h"
#include "coring/codec/version_registry.h"

namespace coring::sbmp {

enum class Role { kClient, kServer };

struct CodecOptions {
  Role role = Role::kServer;
  // This side's receive limit (announced in HELLO / HELLO_ACK).
  uint32_t max_frame = kDefaultMaxFrame;
  // Features offered (client) or accepted (server).
  uint32_t features = kFeatureCrc32c;
  // Client: open with HELLO. Without it both sides use the defaults.
  bool send_hello = true;
  std::string agent = "coring/0.1";
  // nullptr means VersionRegistry::standard(). Not owned; must outlive the codec.
  const VersionRegistry* versions = nullptr;
};

class Codec {
 public:
  using Frame = ::coring::sbmp::Frame;
  using Encoded = EncodedFrame;
  using TraceContext = ::coring::sbmp::TraceContext;
  // The extension block of a stamped frame (inline up to 64 bytes).
  using CallHeader = ExtensionBuilder;

  // Room for the handshake, a GOAWAY and dozens of PONGs. A peer that keeps
  // PINGing while never reading its PONGs fills it and gets GOAWAY(OVERLOADED).
  static constexpr size_t kOutputCapacity = 16 * 1024;

  Codec() : Codec(CodecOptions{}) {}
  explicit Codec(CodecOptions options);
  Codec(const Codec&) = delete;
  Codec& operator=(const Codec&) = delete;
  Codec(Codec&&) = default;
  Codec& operator=(Codec&&) = default;

  // The next application frame from `input` (advanced past what was used):
  // a view into `input`, or into the decoder's buffer for a frame split
  // across inputs; valid until the next decode(). nullopt when `input` is
  // used up. An error when reading must stop: a protocol violation (GOAWAY
  // queued; kDataLoss with a FrameError) or the peer's GOAWAY.
  absl::StatusOr<std::optional<Frame>> decode(absl::Span<const uint8_t>& input);
  // decode()'s fast path, once negotiated: an application frame whole in
  // `input` that passes every check (Decoder::next_whole()). True with
  // `frame` set; false when decode() must be called.
  bool decode_whole(absl::Span<const uint8_t>& input, Frame& frame) {
    return negotiation_ == nullptr && error_.ok() && decoder_.next_whole(input, frame);
  }
  // The same, with the frame made by `make()` once there is one
  // (Decoder::next_whole()).
  template <std::invocable Make>
  bool decode_whole(absl::Span<const uint8_t>& input, Make&& make) {
    return negotiation_ == nullptr && error_.ok() &&
           decoder_.next_whole(input, std::forward<Make>(make));
  }
  // Part of a frame has arrived and the rest has not (for frame deadlines).
  bool mid_frame() const { return decoder_.mid_frame(); }
  // Memory held for reassembling a split frame (for memory budgets).
  size_t buffered_bytes() const { return decoder_.buffer_bytes(); }
  // `p` lies in memory of the codec's that a decoded frame may view (the
  // reassembly buffer), reused by a later decode().
  bool owns(const uint8_t* p) const { return decoder_.owns(p); }
  // Gives the reassembly buffer holding the frame just decoded (`p` lies in
  // it) to the caller in exchange for `other` (Decoder::exchange_buffer):
  // FramedStream sends an echoed frame from it instead of copying it.
  bool exchange_buffer(const uint8_t* p, std::vector<uint8_t>& other) {
    return decoder_.exchange_buffer(p, other);
  }
  // Reassembly buffers of large frames from a pool shared with other codecs
  // (Decoder::set_buffer_pool()), and this codec's given back to it
  // between frames (release_buffer(): the last frame is no longer in use).
  void set_buffer_pool(const Decoder::BufferPool& pool) { decoder_.set_buffer_pool(pool); }
  void release_buffer() { decoder_.release_buffer(); }
  // Frames split across two inputs handed out as two views of them, not
  // copied (Decoder::set_split_payloads(); Frame::payload_tail): while
  // holds_input(), the last input's bytes must stay as they are.
  void set_split_payloads(size_t max_rest) { decoder_.set_split_payloads(max_rest); }
  bool holds_input() const { return decoder_.holds_input(); }
  void unhold() { decoder_.unhold(); }
  // The rest of a split frame received in place (Decoder::lend_buffer()):
  // FramedStream has the transport receive it straight into the reassembly
  // buffer. While the buffer is lent, decode() refuses (FailedPrecondition,
  // no GOAWAY).
  size_t frame_remaining() const { return decoder_.frame_remaining(); }
  size_t frame_received() const { return decoder_.frame_received(); }
  size_t lend_buffer(size_t want, std::vector<uint8_t>& out, size_t& offset) {
    return decoder_.lend_buffer(want, out, offset);
  }
  void return_buffer(std::vector<uint8_t>&& buffer, size_t received) {
    decoder_.return_buffer(std::move(buffer), received);
  }
  // Bytes decode() has without being given any (Decoder::pending_input()).
  size_t pending_input() const { return decoder_.pending_input(); }
  // The next frame's header received ahead, between frames
  // (Decoder::take_prefix()): FramedStream then receives the rest of a
  // large frame in place from its first payload byte.
  static constexpr size_t frame_prefix_size() { return kHeaderSize; }
  void take_prefix(absl::Span<const uint8_t> bytes) { decoder_.take_prefix(bytes); }
  // The connection is idle between frames: frees the reassembly buffer kept
  // for the next split frame (a frame decoded into it must not be in use)
  // and the output buffer when nothing is pending.
  void trim();
  // Bytes of output buffer held (0 once everything queued was consumed).
  size_t output_buffer_bytes() const { return output_ ? kOutputCapacity : 0; }

  // Encodes an application frame (type >= 0x0100) with the negotiated
  // version and CHK. Fails with nothing to send when the frame exceeds the
  // peer's max_frame (kInvalidArgument), is a control frame
  // (kInvalidArgument), or the connection is closing (kFailedPrecondition).
  absl::Status encode(const Frame& frame, Encoded& encoded) {
    if (closing_ || !error_.ok() || is_control_type(frame.type())) [[unlikely]] {
      return refuse(frame);
    }
    return encode_frame(frame,
                        {.version = settings_.version,
                         .chk = settings_.chk(),
                         .max_frame = settings_.peer_max_frame},
                        encoded);
  }

  // Bytes to send before anything encoded later. The span stays valid (its
  // bytes do not move) until consume_output() has covered it.
  absl::Span<const uint8_t> pending_output() const {
    return absl::MakeConstSpan(output_.get() + out_begin_, out_end_ - out_begin_);
  }
  void consume_output(size_t n);

  // This side closes: queues GOAWAY (OK -> NO_ERROR, Unavailable -> SHUTDOWN,
  // ResourceExhausted -> OVERLOADED, DeadlineExceeded -> IDLE_TIMEOUT, a
  // status with a FrameError -> its code, anything else -> NO_ERROR; the
  // message is the reason) unless a GOAWAY was already sent or received, and
  // refuses further encodes. Frames received later are still decoded.
  void close(absl::Status why);

  // Queues a PING (payload <= 64 bytes); the PONG is counted in pongs().
  absl::Status ping(absl::Span<const uint8_t> payload, std::optional<uint64_t> request_id = {});

  // ---- Request/reply (net/'s CallCodec concept) ----
  // REQUEST_ID, TIMEOUT_US and TRACE_CONTEXT of `frame`, if present.
  static std::optional<uint64_t> correlation_id(const Frame& frame) {
    return frame.extensions.request_id();
  }
  static std::optional<std::chrono::microseconds> time_budget(const Frame& frame);
  static std::optional<TraceContext> trace_context(const Frame& frame) {
    return frame.extensions.trace_context();
  }
  // `frame` with REQUEST_ID = id, and TIMEOUT_US (clamped to u32) and
  // TRACE_CONTEXT replaced when given; its other extensions kept in order.
  // The extension block is built in `header`; the payload is not copied.
  static Frame stamp(const Frame& frame, uint64_t id,
                     std::optional<std::chrono::microseconds> budget,
                     const std::optional<TraceContext>& trace, CallHeader& header);
  // `frame` with its extension block and payload copied into `storage`.
  static Frame copy_frame(const Frame& frame, std::vector<uint8_t>& storage);

  Role role() const { return role_; }
  // Negotiation done (or skipped): settings() are final.
  bool established() const;
  // What this side sends with now (defaults until negotiated).
  const Settings& settings() const { return settings_; }
  bool goaway_sent() const { return goaway_sent_; }
  bool goaway_received() const { return goaway_received_; }
  uint64_t pongs() const { return pongs_; }

 private:
  // Why encode() sends nothing: closing, or a control type.
  absl::Status refuse(const Frame& frame) const;
  // Handles a control frame; returns an error when decoding must stop.
  absl::Status on_control(const Frame& frame);
  // What decode() does with a decoded frame (or error): the error becomes
  // the connection's; a control frame is answered or acted on.
  absl::Status take(const absl::StatusOr<std::optional<Frame>>& next);
  // decode()'s loop past a control frame, to the next application frame.
  absl::StatusOr<std::optional<Frame>> decode_after_control(absl::Span<const uint8_t>& input);
  absl::Status on_negotiation(const Frame& frame);
  // Encodes a frame into the output buffer. `chk` per the current settings.
  // Fails (and queues nothing) when it does not fit; GOAWAY may use the
  // room kept for it.
  bool queue(uint16_t type, absl::Span<const uint8_t> ext_block, absl::Span<const uint8_t> payload,
             bool for_goaway = false);
  void queue_goaway(uint32_t code, absl::string_view reason);
  // Records a protocol error, queues GOAWAY(code), returns the status.
  absl::Status fail(absl::Status status, absl::string_view reason = {});
  void apply(const Settings& settings);

  // The negotiation under way; nullptr once established.
  ServerNegotiation* server() const {
    return negotiation_ ? std::get_if<ServerNegotiation>(negotiation_.get()) : nullptr;
  }
  ClientNegotiation* client() const {
    return negotiation_ ? std::get_if<ClientNegotiation>(negotiation_.get()) : nullptr;
  }

  // First what every frame's decode_whole(), encode() and pending_output()
  // read, then the decoder, whose own such fields come first: with
  // thousands of connections a frame finds its codec out of the cache, and
  // each line it touches is a miss.
  //
  // One side's negotiation, by role, until it is established. On the heap
  // and then freed: the codec is part of every connection's memory, and an
  // idle connection has long finished its handshake. From then on HELLO and
  // HELLO_ACK are refused by role (check_established()).
  std::unique_ptr<std::variant<ServerNegotiation, ClientNegotiation>> negotiation_;
  absl::Status error_;  // decoding stopped
  Settings settings_;
  bool closing_ = false;
  bool goaway_sent_ = false;
  bool goaway_received_ = false;
  // PINGs or PONGs went through output_: keep it when consumed (until trim()).
  bool keep_output_ = false;
  // kOutputCapacity bytes while output is pending, else null.
  std::unique_ptr<uint8_t[]> output_;
  size_t out_begin_ = 0;
  size_t out_end_ = 0;
  Decoder decoder_;
  Role role_;
  uint64_t pongs_ = 0;
};

}  // namespace coring::sbmp
