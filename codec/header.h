// The 16-byte SBMP frame header (SBMP.md 1.1): its fields, how to write it,
// and how to read and validate it in exactly the spec's order (magic, hcrc,
// version, flags, length, ext_len) before any body byte is looked at.
//
//   uint8_t out[kHeaderSize];
//   encode_header({.type = 0x0100, .length = 5}, out);
//   absl::StatusOr<Header> h = decode_header(out, HeaderLimits{}, /*offset=*/0);
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/types/span.h"

namespace coring::sbmp {

inline constexpr uint32_t kMagic = 0x53424D50;  // "SBMP"
inline constexpr size_t kHeaderSize = 16;
inline constexpr size_t kTrailerSize = 4;
inline constexpr uint8_t kVersion13 = 0x13;
inline constexpr uint8_t kFlagChk = 0x01;
inline constexpr uint32_t kDefaultMaxFrame = 16 * 1024 * 1024;

constexpr uint8_t version_major(uint8_t version) { return version >> 4; }
constexpr uint8_t version_minor(uint8_t version) { return version & 0x0F; }

struct Header {
  uint8_t version = kVersion13;
  uint8_t flags = 0;
  uint16_t type = 0;
  // Bytes after the header: ext_len + payload + (CHK ? 4 : 0).
  uint32_t length = 0;
  uint16_t ext_len = 0;

  bool chk() const { return (flags & kFlagChk) != 0; }
  // Only meaningful for a validated header.
  uint32_t payload_size() const { return length - ext_len - (chk() ? kTrailerSize : 0); }
  size_t frame_size() const { return kHeaderSize + length; }

  friend bool operator==(const Header&, const Header&) = default;
};

// What a receiver accepts.
struct HeaderLimits {
  uint32_t max_frame = kDefaultMaxFrame;
  // Bit M set: major version M is spoken.
  uint16_t majors = uint16_t{1} << 1;
};

// Writes magic, the fields and hcrc into out[0..16).
void encode_header(const Header& header, uint8_t* out);

namespace internal {
// What decode_header's fast path returns: the header as two big-endian
// words (bytes 0..7 and 8..15), in two registers, so that validating needs
// no memory round trip and no stack frame. The low 16 bits of `lo` (the
// hcrc, checked) are replaced by 1 when every check passed, else 0.
struct HeaderWords {
  uint64_t hi;
  uint64_t lo;
  bool ok() const { return (lo & 1) != 0; }
  Header header() const {
    return Header{.version = static_cast<uint8_t>(hi >> 24),
                  .flags = static_cast<uint8_t>(hi >> 16),
                  .type = static_cast<uint16_t>(hi),
                  .length = static_cast<uint32_t>(lo >> 32),
                  .ext_len = static_cast<uint16_t>(lo >> 16)};
  }
};
HeaderWords check_header(const uint8_t* bytes, HeaderLimits limits) noexcept;
// The error for a header check_header() refused, in the spec's order.
absl::Status header_error(const uint8_t* bytes, const HeaderLimits& limits, uint64_t offset);
}  // namespace internal

// Reads and validates a header from its 16 bytes. `offset` (the frame's
// position in the stream) only goes into the error.
inline absl::StatusOr<Header> decode_header(const uint8_t* bytes, const HeaderLimits& limits,
                                            uint64_t offset) {
  const internal::HeaderWords words = internal::check_header(bytes, limits);
  if (words.ok()) [[likely]]
    return words.header();
  return internal::header_error(bytes, limits, offset);
}

// True when `prefix` (shorter than 4 bytes is fine) cannot begin "SBMP", so
// BAD_MAGIC can be reported before the whole header arrived.
bool magic_prefix_mismatch(absl::Span<const uint8_t> prefix);

}  // namespace coring::sbmp
