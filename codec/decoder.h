// Decoder: the streaming SBMP frame decoder. Feed it the byte stream in
// whatever pieces the transport read; it hands back one frame at a time.
//
//   Decoder decoder({.max_frame = 1 << 20});
//   absl::Span<const uint8_t> input = bytes_just_read;
//   for (;;) {
//     absl::StatusOr<std::optional<Frame>> next = decoder.next(input);
//     if (!next.ok()) return next.status();   // protocol error: frame_error(status)
//     if (!next->has_value()) break;          // input used up: read more
//     handle(**next);
//   }
//   // At end of stream: decoder.mid_frame() means "incomplete".
//
// A frame that lies whole inside `input` comes back as a view into `input`
// (no copy). Only a frame split across inputs is copied, into one internal
// buffer that grows with the bytes received (at most max_frame + 16 bytes);
// it is kept for the next split frame when it is at most kKeptBuffer bytes
// (or shared with other decoders: set_buffer_pool()), and released
// otherwise. A frame from it stays valid until the next call to next().
// The header is validated as soon as its 16 bytes are in, so an oversized
// `length` is refused before any body byte is read or buffered. Errors are
// final: every later call returns the same error.
#pragma once

#include <array>
#include <concepts>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coring/codec/frame.h"
#include "coring/codec/header.h"
#include "coring/codec/version_registry.h"

namespace coring::sbmp {

struct DecoderOptions {
  // The largest `length` accepted (SBMP.md 2).
  uint32_t max_frame = kDefaultMaxFrame;
  // The versions spoken; nullptr means VersionRegistry::standard(). Not owned.
  const VersionRegistry* versions = nullptr;
};

class Decoder {
 public:
  explicit Decoder(DecoderOptions options = {});

  // Decodes the next frame from `input`, advancing it past the bytes used.
  // Returns a frame, nullopt once `input` is used up (all of it has then
  // been consumed), or the first protocol error (see frame_error()).
  absl::StatusOr<std::optional<Frame>> next(absl::Span<const uint8_t>& input);

  // next()'s fast path, for the common case: between frames, a whole
  // application frame at the front of `input` that passes every check.
  // True with `frame` set and `input` advanced, as next() would; false when
  // next() must do it (anything else: a control frame, a frame not all in
  // `input`, an error, a split frame under way). (A reassembly buffer the
  // last split frame left is given back by the next next(), as `input`
  // runs out: not here, where every frame would pay for the test.)
  // Inline (as decode_header()): a receiver pays no call per frame.
  bool next_whole(absl::Span<const uint8_t>& input, Frame& frame) {
    return next_whole(input, [&frame]() -> Frame& { return frame; });
  }
  // The same, where `make()` gives the Frame to set, called only once there
  // is one: a caller that constructs the frame there (FramedStream, in the
  // reader's result) writes no field twice.
  template <std::invocable Make>
  bool next_whole(absl::Span<const uint8_t>& input, Make&& make) {
    if (input.size() < kHeaderSize || buffered_ != 0 || carry_len_ != 0 || lent_ ||
        !held_.empty() || !error_.ok()) {
      return false;
    }
    const internal::HeaderWords words = internal::check_header(input.data(), limits_);
    if (!words.ok()) return false;
    const size_t size = kHeaderSize + size_t{words.length()};
    if (size > input.size() || is_control_type(words.type())) return false;
    const uint8_t* bytes = input.data();
    const bool chk = (words.flags() & kFlagChk) != 0;
    const uint16_t ext_len = words.ext_len();
    if ((chk || ext_len != 0 || !standard_versions_) && !whole_body_ok(words.header(), bytes)) {
      return false;
    }
    // The frame's fields one by one, straight from the header's words (see
    // HeaderWords::set()).
    Frame& frame = make();
    words.set(frame.header);
    const uint8_t* body = bytes + kHeaderSize;
    frame.extensions = Extensions(absl::MakeConstSpan(body, ext_len));
    frame.payload =
        absl::MakeConstSpan(body + ext_len, words.length() - ext_len - (chk ? kTrailerSize : 0));
    frame.payload_tail = {};
    frame.offset = offset_;
    frame.wire = bytes;
    offset_ += size;
    input.remove_prefix(size);
    return true;
  }
  // True when part of a frame has been received: at end of stream, the
  // stream is incomplete.
  bool mid_frame() const { return buffered_ > 0 || carry_len_ > 0 || !held_.empty(); }
  // Memory the decoder holds for reassembling split frames. It grows with
  // the bytes of a split frame received, and a buffer over kKeptBuffer is
  // released once its frame has been handed out.
  size_t buffer_bytes() const { return lent_ ? lent_bytes_ : buffer_.capacity(); }
  // 64 KiB of payload with its header, trailer and up to ~1 KiB of
  // extensions: a stream of 64 KiB messages reassembles without allocating.
  static constexpr size_t kKeptBuffer = 65 * 1024;
  // Frees the reassembly buffer unless a split frame is being reassembled
  // (an idle connection keeps nothing). A frame handed out from it must no
  // longer be in use.
  void trim() {
    if (buffered_ != 0 || lent_) return;
    release_buffer();
    std::vector<uint8_t>().swap(buffer_);
  }
  // ---- Sharing reassembly buffers among decoders ----
  // Where the reassembly buffers of frames of at least `min_frame` bytes
  // come from and go back to. A transport with many connections (net/'s
  // FramedStream) keeps them in one pool of its own: a buffer is reused
  // while still in cache by whichever connection receives a large frame
  // next, and a connection between frames holds none, where otherwise each
  // connection a large frame ever passed through kept one (1,000 of them:
  // 65 MB, each page faulted in by its first frame). Plain function
  // pointers, so that the transport fills it in without naming codec types.
  struct BufferPool {
    void* owner = nullptr;
    // A buffer (size and capacity as they were), if possible one of at
    // least `want` bytes; an empty one when the pool has none.
    std::vector<uint8_t> (*take)(void* owner, size_t want) noexcept = nullptr;
    // Keeps `buffer` (moved from) for a later take(), or refuses it (false,
    // `buffer` untouched: the decoder keeps it, as without a pool).
    bool (*give)(void* owner, std::vector<uint8_t>& buffer) noexcept = nullptr;
    size_t min_frame = 0;
  };
  void set_buffer_pool(const BufferPool& pool) { pool_ = pool; }
  // Between frames, gives the reassembly buffer to the pool when it is one
  // of the pool's (at least min_frame, at most kKeptBuffer bytes). A frame
  // handed out from it must no longer be in use.
  void release_buffer() {
    const size_t capacity = buffer_.capacity();
    // (First what refuses a small frame's buffer: every frame asks. Most
    // have none, and pool_ lies past the fields every frame reads.)
    if (capacity == 0 || capacity < pool_.min_frame || buffered_ != 0 || lent_ ||
        pool_.give == nullptr || capacity > kKeptBuffer) {
      return;
    }
    if (pool_.give(pool_.owner, buffer_)) buffer_ = std::vector<uint8_t>();
  }
  static constexpr size_t kMaxGrowth = 1024 * 1024;
  // True when `p` lies in the reassembly buffer: a frame there is
  // overwritten by a later next().
  bool owns(const uint8_t* p) const {
    return p >= buffer_.data() && p < buffer_.data() + buffer_.size();
  }
  // Trades the reassembly buffer holding the frame just decoded (`p` lies in
  // it) for `other`, so that the frame's bytes can be sent from it with no
  // copy: the caller owns them now, and the decoder reassembles the next
  // split frame in `other` (a buffer it gave up before, or an empty one).
  // False, changing nothing, unless `p` lies in the buffer, no split frame
  // is under way and the buffer is one the decoder would keep
  // (<= kKeptBuffer).
  bool exchange_buffer(const uint8_t* p, std::vector<uint8_t>& other) {
    if (buffered_ != 0 || buffer_.capacity() > kKeptBuffer || !owns(p)) return false;
    buffer_.swap(other);
    return true;
  }
  // ---- Split payloads: a frame across two inputs, not copied ----
  // An application frame that starts in one input (its header, extension
  // block and some payload) and whose rest - at most `max_rest` bytes, with
  // the trailer - comes in the next one is handed out as two views:
  // Frame::payload in the first input, Frame::payload_tail in the second.
  // The decoder keeps a view of the first input's last bytes in between:
  // the caller must keep them unchanged while holds_input(), which stays
  // true until the call that returns the frame (or copies them, when the
  // next input does not complete it: then it is reassembled as usual).
  // 0 (the default): every split frame is reassembled by a copy.
  void set_split_payloads(size_t max_rest) { split_max_rest_ = max_rest; }
  bool holds_input() const { return !held_.empty(); }
  // Copies the frame's start it holds into the reassembly buffer: the
  // caller may let go of the input (the frame is reassembled as usual).
  void unhold();
  // ---- Receiving the rest of a split frame in place ----
  // A transport that can receive into memory of its choosing (net/'s
  // FramedStream) puts the rest of a large frame straight into the
  // reassembly buffer instead of handing it to next() (a copy).
  // Bytes of the frame under way still to come, once its header is in
  // (else 0), and those in already.
  size_t frame_remaining() const {
    return buffered_ >= kHeaderSize && !lent_ && error_.ok() ? header_.frame_size() - buffered_ : 0;
  }
  size_t frame_received() const { return buffered_; }
  // Lends the reassembly buffer, grown to take `want` (1..frame_remaining())
  // more bytes of the frame: `out` gets it, and the bytes go to
  // out[offset, offset + n), where n, returned, is `want` plus, when `want`
  // is the rest of the frame, room for the next frame's header: a stream of
  // large frames is then received with one recv per frame. Until
  // return_buffer(), next() refuses (FailedPrecondition) and buffer_bytes()
  // still counts the buffer.
  size_t lend_buffer(size_t want, std::vector<uint8_t>& out, size_t& offset);
  // Takes back the buffer lend_buffer() gave out, with `received` (<= n)
  // more bytes in it. next() returns the frame once they complete it (with
  // any input, even none); bytes past the frame are the start of the next
  // one, which the call after it takes first (pending_input()).
  void return_buffer(std::vector<uint8_t>&& buffer, size_t received);
  bool lent() const { return lent_; }
  // Bytes received past a frame by return_buffer() or given to
  // take_prefix(), not decoded yet: the next call to next() has input even
  // when given none.
  size_t pending_input() const { return carry_len_; }
  // ---- Receiving the next frame's header ahead ----
  // Between frames, a transport that receives large frames in place reads
  // the next frame's header alone first (kHeaderSize bytes, its own memory)
  // and hands it over: the rest of the frame, its length now known, then
  // goes in place too, and no byte of it is copied out of a receive buffer.
  // Takes up to kHeaderSize bytes; next() starts with them. Only between
  // frames: not mid_frame(), nothing pending, not lent.
  void take_prefix(absl::Span<const uint8_t> bytes);

  // Stream offset of the next frame's first byte.
  uint64_t offset() const { return offset_; }
  bool failed() const { return !error_.ok(); }

  // Limits for frames not yet started.
  void set_max_frame(uint32_t max_frame) { limits_.max_frame = max_frame; }
  uint32_t max_frame() const { return limits_.max_frame; }
  // Restricts the majors accepted to those in `majors` (bit M = major M) that
  // the registry speaks: after negotiation, only the negotiated one.
  void set_accepted_majors(uint16_t majors) {
    limits_.majors = static_cast<uint16_t>(majors & versions_->majors());
  }
  const VersionRegistry& versions() const { return *versions_; }

 private:
  // Checks trailer and body of a complete frame at `bytes`, and builds it.
  absl::StatusOr<std::optional<Frame>> finish(const Header& header, const uint8_t* bytes);
  // finish() of a frame in two pieces: `head` (header, extension block,
  // payload) and `rest` (payload, trailer), the split at a payload byte.
  absl::StatusOr<std::optional<Frame>> finish_split(const Header& header,
                                                    absl::Span<const uint8_t> head,
                                                    absl::Span<const uint8_t> rest);
  // PAYLOAD_CHECKSUM for the frame at offset_.
  absl::Status trailer_mismatch(uint32_t expected, uint32_t actual) const;
  // The body check and the frame, once the trailer is verified. `wire`:
  // the whole frame's bytes, when they lie together (Frame::wire).
  absl::StatusOr<std::optional<Frame>> build(const Header& header,
                                             absl::Span<const uint8_t> ext_block,
                                             absl::Span<const uint8_t> payload,
                                             absl::Span<const uint8_t> tail, const uint8_t* wire);
  // next_whole()'s checks of a whole frame's trailer (CHK) and body (an
  // extension block, or versions other than the standard ones).
  bool whole_body_ok(const Header& header, const uint8_t* bytes) const;
  // Sets `frame` to a checked frame at offset_, and moves offset_ past it.
  void hand_out(Frame& frame, const Header& header, absl::Span<const uint8_t> ext_block,
                absl::Span<const uint8_t> payload, absl::Span<const uint8_t> tail,
                const uint8_t* wire);
  absl::Status fail(absl::Status status);
  // Moves the first n bytes of `input` to the end of buffer_, growing it
  // (doubling) to at most `limit` bytes unless n needs more.
  void append(absl::Span<const uint8_t>& input, size_t n, size_t limit);

  // First what next_whole() and release_buffer() read for every frame, in
  // 80 bytes (so in sbmp::Codec inside FramedStream<sbmp::Codec>, two cache
  // lines): with thousands of connections a frame finds its decoder out of
  // the cache, and each line it touches is a miss.
  //
  // versions_ is the standard registry: a 1.3 frame without extensions
  // needs no body check.
  bool standard_versions_;
  bool lent_ = false;  // buffer_ is out (lend_buffer())
  HeaderLimits limits_;
  uint32_t carry_len_ = 0;  // carry_[0, carry_len_): at most kHeaderSize (in limits_' padding)
  uint64_t offset_ = 0;
  // The split frame being reassembled: buffer_[0, buffered_).
  size_t buffered_ = 0;
  // The start of a split payload's frame in the caller's last input
  // (set_split_payloads()); header_ is its header.
  absl::Span<const uint8_t> held_;
  absl::Status error_;
  std::vector<uint8_t> buffer_;  // (release_buffer() looks at it for every frame)

  const VersionRegistry* versions_;
  Header header_;          // valid once buffered_ >= kHeaderSize
  size_t lent_bytes_ = 0;  // buffer_'s capacity while lent
  size_t split_max_rest_ = 0;
  BufferPool pool_;
  // The next frame's first bytes, received past a frame (return_buffer()).
  std::array<uint8_t, kHeaderSize> carry_{};
};

}  // namespace coring::sbmp
