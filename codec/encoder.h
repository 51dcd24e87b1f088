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

class EncodedFrame {
 public:
  EncodedFrame() = default;
  EncodedFrame(const EncodedFrame& other) { *this = other; }
  EncodedFrame& operator=(const EncodedFrame& other);

  // The frame's bytes in order; empty parts are left out. The header and
  // trailer parts point into this object.
  absl::Span<const absl::Span<const uint8_t>> parts() const {
    return absl::MakeConstSpan(parts_.data(), num_parts_);
  }
  size_t size() const { return header_.frame_size(); }
  const Header& header() const { return header_; }

 private:
  friend absl::Status encode_frame(const Frame&, const EncodeOptions&, EncodedFrame&);

  // (Only what parts() needs: an encoded frame lives in every write's
  // awaiter, in the writer's coroutine frame.)
  std::array<absl::Span<const uint8_t>, 5> parts_{};
  std::array<uint8_t, kHeaderSize> header_bytes_{};
  Header header_;
  std::array<uint8_t, kTrailerSize> trailer_bytes_{};
  uint32_t num_parts_ = 0;
};

// Encodes into `encoded` (whose previous contents are replaced). The frame's
// extension block and payload must outlive the use of encoded.parts().
absl::Status encode_frame(const Frame& frame, const EncodeOptions& options, EncodedFrame& encoded);

}  // namespace coring::sbmp
