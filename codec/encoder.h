// Encoding SBMP frames. Two forms:
//  * encode_frame(frame, options, out): the whole frame into caller memory;
//  * encode_frame(frame, options, encoded): an EncodedFrame, a scatter list
//    of at most five parts - header, extension block, payload (one part, or
//    two for a split one: Frame::payload_tail), trailer - where the
//    extension block and payload are views of the frame's own
//    memory, so a large payload is never copied (hand parts() to writev or
//    an io_uring send of several buffers). A decoded frame sent unchanged
//    is one part: its bytes as received (Frame::wire).
// The frame's type, extension block and payload are written as they are, so
// echoing a decoded frame reproduces its extensions (unknown kinds, order
// and padding included) and payload exactly. Version and CHK come from the
// options, not from the frame.
//
//   EncodedFrame encoded;  // reuse it: encoding allocates nothing
//   if (absl::Status st = encode_frame(frame, {.chk = true}, encoded); !st.ok()) ...
//   send(encoded.parts());
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <limits>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coring/codec/frame.h"
#include "coring/codec/header.h"

namespace coring::sbmp {

struct EncodeOptions {
  uint8_t version = kVersion13;
  // Append a CRC-32C trailer.
  bool chk = false;
  // The largest `length` the receiver accepts (its announced max_frame).
  uint32_t max_frame = std::numeric_limits<uint32_t>::max();
};

// The header `frame` gets, or an error (extension block over 65535 bytes,
// `length` over the limit) - in which case nothing is written anywhere.
absl::StatusOr<Header> frame_header(const Frame& frame, const EncodeOptions& options);

// Writes the whole frame into `out`; returns the bytes written. Fails when
// `out` is too small (see Header::frame_size()).
absl::StatusOr<size_t> encode_frame(const Frame& frame, const EncodeOptions& options,
                                    absl::Span<uint8_t> out);

namespace internal {
// The frame sent unchanged (an echo), as its bytes as received: the header
// fields to encode are those at frame.wire (compared with those bytes, not
// with frame.header, which the application may have changed), and the body
// views are the received ones. Then those bytes, their hcrc and trailer CRC
// included (both verified when the frame was decoded), are this encoding.
// False when anything differs, or the frame breaks a limit (the full
// encoding then says which).
inline bool as_received(const Frame& frame, const EncodeOptions& options, Header& h,
                        absl::Span<const uint8_t>& out) noexcept {
  const uint8_t* wire = frame.wire;
  const uint8_t flags = options.chk ? kFlagChk : 0;
  const uint64_t hi = load_be64(wire);
  const uint64_t lo = load_be64(wire + 8);
  const uint64_t want_hi = (uint64_t{kMagic} << 32) | (uint64_t{options.version} << 24) |
                           (uint64_t{flags} << 16) | frame.type();
  const auto length = static_cast<uint32_t>(lo >> 32);
  const auto ext_len = static_cast<uint16_t>(lo >> 16);
  const absl::Span<const uint8_t> ext = frame.extensions.bytes();
  const uint8_t* payload_at = wire + kHeaderSize + ext_len;
  if (hi != want_hi || ext.size() != ext_len ||
      (ext_len != 0 && ext.data() != wire + kHeaderSize) || frame.payload.data() != payload_at ||
      !frame.payload_tail.empty() ||
      uint64_t{ext_len} + frame.payload.size() + (flags != 0 ? kTrailerSize : 0) != length ||
      length > options.max_frame) {
    return false;
  }
  h.version = options.version;
  h.flags = flags;
  h.type = frame.type();
  h.length = length;
  h.ext_len = ext_len;
  out = absl::MakeConstSpan(wire, kHeaderSize + size_t{length});
  return true;
}
}  // namespace internal

class EncodedFrame {
 public:
  // Not "= default", which the unions below would delete: header_ and
  // parts_ are left unmade.
  EncodedFrame() {}
  EncodedFrame(const EncodedFrame& other) { *this = other; }
  EncodedFrame& operator=(const EncodedFrame& other);

  // The frame's bytes in order; empty parts are left out. The header and
  // trailer parts point into this object.
  absl::Span<const absl::Span<const uint8_t>> parts() const {
    return absl::MakeConstSpan(parts_.data(), num_parts_);
  }
  // The header and size of the frame last encoded; only after an encode
  // that succeeded.
  size_t size() const { return header_.frame_size(); }
  const Header& header() const { return header_; }

 private:
  friend absl::Status encode_frame(const Frame&, const EncodeOptions&, EncodedFrame&);
  // encode_frame() of a frame not sent as received: header, extension
  // block, payload, trailer.
  absl::Status encode_parts(const Frame& frame, const EncodeOptions& options);

  // (Only what parts() needs: an encoded frame lives in every write's
  // awaiter, in the writer's coroutine frame.) What a frame sent as
  // received writes comes first, and the rest is not cleared when made:
  // parts() reads num_parts_ parts only, and the header and trailer bytes
  // are written before a part views them. With thousands of connections
  // the frame is out of the cache at each message, and each line written
  // is a miss. So header_ and parts_ are in unions, which construct
  // nothing: as plain members, Header's default values and the five
  // Spans' (null, 0) were stored at every write, 17 instructions and 96
  // bytes of stores per frame in sbmp_echo_server's echo. Both types are
  // trivially copyable and destructible; each encode assigns what it
  // later reads.
  union {
    Header header_;
  };
  uint32_t num_parts_ = 0;
  union {
    std::array<absl::Span<const uint8_t>, 5> parts_;
  };
  std::array<uint8_t, kHeaderSize> header_bytes_;
  std::array<uint8_t, kTrailerSize> trailer_bytes_;
};

// Encodes into `encoded` (whose previous contents are replaced). The frame's
// extension block and payload must outlive the use of encoded.parts().
// Inline (as encode_header()): an echo sent as received costs no call.
inline absl::Status encode_frame(const Frame& frame, const EncodeOptions& options,
                                 EncodedFrame& encoded) {
  if (frame.wire != nullptr &&
      internal::as_received(frame, options, encoded.header_, encoded.parts_[0])) {
    encoded.num_parts_ = 1;
    return absl::OkStatus();
  }
  return encoded.encode_parts(frame, options);
}

}  // namespace coring::sbmp
