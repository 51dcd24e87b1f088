// The 16-byte SBMP frame header (SBMP.md 1.1): its fields, how to write it,
// and how to read and validate it in exactly the spec's order (magic, hcrc,
// version, flags, length, ext_len) before any body byte is looked at.
//
//   uint8_t out[kHeaderSize];
//   encode_header({.type = 0x0100, .length = 5}, out);
//   absl::StatusOr<Header> h = decode_header(out, HeaderLimits{}, /*offset=*/0);
#pragma once

#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coring/codec/crc16.h"
#include "coring/codec/crc16_clmul.h"

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

namespace internal {
// The header as two big-endian words, bytes 0..7 and 8..15: one load (and
// byte swap) each, and the fields are shifts of them.
inline uint64_t load_be64(const uint8_t* p) noexcept {
  uint64_t v;
  std::memcpy(&v, p, 8);
  if constexpr (std::endian::native == std::endian::little) v = __builtin_bswap64(v);
  return v;
}
inline void store_be64(uint8_t* p, uint64_t v) noexcept {
  if constexpr (std::endian::native == std::endian::little) v = __builtin_bswap64(v);
  std::memcpy(p, &v, 8);
}

// The hcrc of a header whose magic is "SBMP", from `fields` (bytes 4..7:
// version, flags, type) and `lo` (bytes 8..15; the hcrc bits are ignored).
// Carry-less multiplies when the CPU has them (one well-predicted branch),
// else the lookup tables. Always inlined, as check_header() below: in
// sbmp_echo_server (two decoders, plain and TLS) GCC made it a function of
// its own, called by every frame's decode, with the caller's live
// registers spilled around the call.
[[gnu::always_inline]] inline uint16_t sbmp_header_crc(uint32_t fields, uint64_t lo) noexcept {
#if defined(__x86_64__)
  if (kCrc16HasClmul) [[likely]]
    return crc16_sbmp_header_clmul_kernel(fields, lo);
#endif
  return crc16_header_table((uint64_t{kMagic} << 32) | fields, lo);
}
}  // namespace internal

// Writes magic, the fields and hcrc into out[0..16). Inline, as
// decode_header: a sender and a receiver pay no call per frame.
inline void encode_header(const Header& h, uint8_t* out) noexcept {
  const uint32_t fields = (uint32_t{h.version} << 24) | (uint32_t{h.flags} << 16) | h.type;
  const uint64_t lo = (uint64_t{h.length} << 32) | (uint64_t{h.ext_len} << 16);
  internal::store_be64(out, (uint64_t{kMagic} << 32) | fields);
  internal::store_be64(out + 8, lo | internal::sbmp_header_crc(fields, lo));
}

namespace internal {
// What decode_header's fast path returns: the header as two big-endian
// words (bytes 0..7 and 8..15) and whether every check passed. Fields are
// shifts of the words, so that validating, inlined (check_header() is),
// needs no memory round trip. (Not inlined, these 24 bytes come back
// through memory; the verdict once rode in lo's low bits to fit two
// registers, which cost two instructions per header inlined.)
struct HeaderWords {
  uint64_t hi;
  uint64_t lo;
  bool valid;
  bool ok() const { return valid; }
  uint8_t version() const { return static_cast<uint8_t>(hi >> 24); }
  uint8_t flags() const { return static_cast<uint8_t>(hi >> 16); }
  uint16_t type() const { return static_cast<uint16_t>(hi); }
  uint32_t length() const { return static_cast<uint32_t>(lo >> 32); }
  uint16_t ext_len() const { return static_cast<uint16_t>(lo >> 16); }
  Header header() const {
    return Header{.version = version(),
                  .flags = flags(),
                  .type = type(),
                  .length = length(),
                  .ext_len = ext_len()};
  }
  // Sets h's fields one by one. (A Header built in a local and copied is
  // stored a field at a time and reloaded as whole words: a
  // store-forwarding stall, measured as most of FramedStream's
  // try_read_now() time per small frame.)
  void set(Header& h) const {
    h.version = version();
    h.flags = flags();
    h.type = type();
    h.length = length();
    h.ext_len = ext_len();
  }
};

// Every check of SBMP.md 1.1, combined without short cuts into one result
// (header_error() sorts out which one failed): no branch to mispredict, and
// nothing waits on the CRC but that one bit. Always inlined: a program with
// several decoders (sbmp_echo_server's plain and TLS FramedStreams) had GCC
// make it a function of its own, and its 24-byte result then came back
// through memory on every frame.
[[gnu::always_inline]] inline HeaderWords check_header(const uint8_t* bytes,
                                                       HeaderLimits limits) noexcept {
  const uint64_t hi = load_be64(bytes);
  const uint64_t lo = load_be64(bytes + 8);
  const auto length = static_cast<uint32_t>(lo >> 32);
  const auto ext_len = static_cast<uint16_t>(lo >> 16);
  // Magic (bits 32..63) and the reserved flag bits (flags: bits 16..23) in
  // one compare.
  constexpr uint64_t kMagicAndReserved =
      (uint64_t{0xFFFF'FFFF} << 32) | (uint64_t{0xFF & ~kFlagChk} << 16);
  uint64_t bad = (hi & kMagicAndReserved) ^ (uint64_t{kMagic} << 32);
  bad |= static_cast<uint16_t>(sbmp_header_crc(static_cast<uint32_t>(hi), lo) ^ lo);
  // The version's major (bits 28..31; of the low word, so no mask) must be
  // spoken.
  bad |= (~uint32_t{limits.majors} >> (static_cast<uint32_t>(hi) >> 28)) & 1;
  // Negative when length > max_frame, or when ext_len and the trailer do
  // not fit length: 64-bit differences of 32-bit values cannot wrap. Its
  // sign bit joins `bad`, so one compare with zero decides.
  const auto trailer = static_cast<int64_t>(((hi >> 16) & kFlagChk) * kTrailerSize);
  const int64_t room = (int64_t{limits.max_frame} - length) | (int64_t{length} - ext_len - trailer);
  bad |= static_cast<uint64_t>(room) >> 63;
  return {hi, lo, bad == 0};
}
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
