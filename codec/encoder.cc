#include "coring/codec/encoder.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"
#include "coring/codec/crc32c.h"

namespace coring::sbmp {
namespace {

void store32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

uint32_t body_crc(const Frame& frame) {
  return crc32c(frame.payload_tail, crc32c(frame.payload, crc32c(frame.extensions.bytes())));
}

// The frame's `length`, or why it cannot be sent.
absl::StatusOr<uint32_t> frame_length(const Frame& frame, const EncodeOptions& options) {
  size_t ext_len = frame.extensions.bytes().size();
  if (ext_len > 0xFFFF) {
    return absl::InvalidArgumentError(
        absl::StrFormat("extension block of %d bytes (at most 65535)", ext_len));
  }
  uint64_t length = uint64_t{ext_len} + frame.payload_size() + (options.chk ? kTrailerSize : 0);
  if (length > options.max_frame) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "frame length %d exceeds the receiver's max frame %d", length, options.max_frame));
  }
  return static_cast<uint32_t>(length);
}

// Sets h's fields one by one. (Building a Header elsewhere and copying it
// would load whole words just written a field at a time: a store-forwarding
// stall, measured as most of encode_frame()'s cost for a small frame.)
void set_header(Header& h, const Frame& frame, const EncodeOptions& options, uint32_t length) {
  h.version = options.version;
  h.flags = options.chk ? kFlagChk : 0;
  h.type = frame.type();
  h.length = length;
  h.ext_len = static_cast<uint16_t>(frame.extensions.bytes().size());
}

}  // namespace

absl::StatusOr<Header> frame_header(const Frame& frame, const EncodeOptions& options) {
  absl::StatusOr<uint32_t> length = frame_length(frame, options);
  if (!length.ok()) return length.status();
  Header h;
  set_header(h, frame, options, *length);
  return h;
}

absl::StatusOr<size_t> encode_frame(const Frame& frame, const EncodeOptions& options,
                                    absl::Span<uint8_t> out) {
  absl::StatusOr<Header> h = frame_header(frame, options);
  if (!h.ok()) return h.status();
  if (out.size() < h->frame_size()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "frame of %d bytes does not fit a buffer of %d", h->frame_size(), out.size()));
  }
  uint8_t* p = out.data();
  encode_header(*h, p);
  p += kHeaderSize;
  absl::Span<const uint8_t> ext = frame.extensions.bytes();
  if (!ext.empty()) std::memcpy(p, ext.data(), ext.size());
  p += ext.size();
  if (!frame.payload.empty()) std::memcpy(p, frame.payload.data(), frame.payload.size());
  p += frame.payload.size();
  if (!frame.payload_tail.empty()) {
    std::memcpy(p, frame.payload_tail.data(), frame.payload_tail.size());
  }
  p += frame.payload_tail.size();
  if (options.chk) store32(p, body_crc(frame));
  return h->frame_size();
}

EncodedFrame& EncodedFrame::operator=(const EncodedFrame& other) {
  num_parts_ = other.num_parts_;
  if (num_parts_ == 0) return *this;  // nothing encoded: nothing else to copy
  header_ = other.header_;
  // (Only what `other` set: the rest of it was never written.)
  std::copy_n(other.parts_.begin(), num_parts_, parts_.begin());
  // Header and trailer parts encoded into `other` point into it: into this
  // one now. (A frame sent as received is one part, its own bytes.)
  if (parts_[0].data() == other.header_bytes_.data()) {
    header_bytes_ = other.header_bytes_;
    parts_[0] = absl::MakeConstSpan(header_bytes_);
  }
  absl::Span<const uint8_t>& last = parts_[num_parts_ - 1];
  if (last.data() == other.trailer_bytes_.data()) {
    trailer_bytes_ = other.trailer_bytes_;
    last = absl::MakeConstSpan(trailer_bytes_);
  }
  return *this;
}

absl::Status EncodedFrame::encode_parts(const Frame& frame, const EncodeOptions& options) {
  absl::StatusOr<uint32_t> length = frame_length(frame, options);
  if (!length.ok()) {
    num_parts_ = 0;  // nothing to send
    return length.status();
  }
  Header& h = header_;
  set_header(h, frame, options, *length);
  encode_header(h, header_bytes_.data());
  if (options.chk) store32(trailer_bytes_.data(), body_crc(frame));
  uint32_t n = 0;
  parts_[n++] = absl::MakeConstSpan(header_bytes_);
  if (!frame.extensions.bytes().empty()) parts_[n++] = frame.extensions.bytes();
  if (!frame.payload.empty()) parts_[n++] = frame.payload;
  if (!frame.payload_tail.empty()) parts_[n++] = frame.payload_tail;
  if (h.chk()) parts_[n++] = absl::MakeConstSpan(trailer_bytes_);
  num_parts_ = n;
  return absl::OkStatus();
}

}  // namespace coring::sbmp
