#include "coring/codec/header.h"

#include <bit>
#include <cstring>

#include "absl/strings/str_format.h"
#include "coring/codec/crc16.h"
#include "coring/codec/crc16_clmul.h"
#include "coring/codec/error.h"

namespace coring::sbmp {
namespace {

uint16_t load16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
// The header as two big-endian words: one load (and byte swap) each instead
// of a load per byte, and the fields are shifts of them.
uint64_t load_be64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  if constexpr (std::endian::native == std::endian::little) v = __builtin_bswap64(v);
  return v;
}
void store_be64(uint8_t* p, uint64_t v) {
  if constexpr (std::endian::native == std::endian::little) v = __builtin_bswap64(v);
  std::memcpy(p, &v, 8);
}

constexpr uint8_t kMagicBytes[4] = {'S', 'B', 'M', 'P'};

// Out of line so the validation fast path stays small.
[[gnu::noinline, gnu::cold]] absl::Status header_error(ErrorCode code, ErrorField field,
                                                       uint64_t offset, const uint8_t* bytes,
                                                       const HeaderLimits& limits) {
  std::string detail;
  switch (field) {
    case ErrorField::kMagic:
      detail = absl::StrFormat("first bytes %02x %02x %02x %02x are not \"SBMP\"", bytes[0],
                               bytes[1], bytes[2], bytes[3]);
      break;
    case ErrorField::kHcrc:
      detail = absl::StrFormat("header checksum 0x%04x, computed 0x%04x", load16(bytes + 14),
                               crc16_ccitt_false(absl::MakeConstSpan(bytes, 14)));
      break;
    case ErrorField::kVersion:
      detail = absl::StrFormat("version %d.%d is not spoken here", version_major(bytes[4]),
                               version_minor(bytes[4]));
      break;
    case ErrorField::kFlags:
      detail = absl::StrFormat("reserved flag bits set in 0x%02x", bytes[5]);
      break;
    case ErrorField::kLength:
      detail =
          absl::StrFormat("length %d exceeds max frame %d", load32(bytes + 8), limits.max_frame);
      break;
    default:
      detail = absl::StrFormat("ext_len %d does not fit length %d%s", load16(bytes + 12),
                               load32(bytes + 8), (bytes[5] & kFlagChk) ? " minus trailer" : "");
  }
  return make_frame_error({code, offset, field}, detail);
}

}  // namespace

namespace {

// encode/decode come in two builds, picked per call by one well-predicted
// branch: one compiled for PCLMULQDQ with the CRC kernel inlined, and a
// portable one using the lookup tables.
template <bool kClmul>
uint16_t header_crc(uint64_t hi, uint64_t lo);
template <>
inline uint16_t header_crc<false>(uint64_t hi, uint64_t lo) {
  return crc16_header_table(hi, lo);
}
#if defined(__x86_64__)
template <>
inline uint16_t header_crc<true>(uint64_t hi, uint64_t lo) {
  return internal::crc16_header_clmul_kernel(hi, lo);
}
#endif

template <bool kClmul>
[[gnu::always_inline]] inline void encode_words(const Header& h, uint8_t* out) {
  const uint64_t hi =
      (uint64_t{kMagic} << 32) | (uint64_t{h.version} << 24) | (uint64_t{h.flags} << 16) | h.type;
  const uint64_t lo = (uint64_t{h.length} << 32) | (uint64_t{h.ext_len} << 16);
  store_be64(out, hi);
  store_be64(out + 8, lo | header_crc<kClmul>(hi, lo));
}

template <bool kClmul>
[[gnu::always_inline]] inline absl::StatusOr<Header> decode_words(const uint8_t* b,
                                                                  const HeaderLimits& limits,
                                                                  uint64_t offset) {
  const uint64_t hi = load_be64(b);
  const uint64_t lo = load_be64(b + 8);
  Header h;
  h.version = static_cast<uint8_t>(hi >> 24);
  h.flags = static_cast<uint8_t>(hi >> 16);
  h.type = static_cast<uint16_t>(hi);
  h.length = static_cast<uint32_t>(lo >> 32);
  h.ext_len = static_cast<uint16_t>(lo >> 16);
  ErrorCode code;
  ErrorField field;
  if ((hi >> 32) != kMagic) {
    code = ErrorCode::kBadMagic, field = ErrorField::kMagic;
  } else if (header_crc<kClmul>(hi, lo) != static_cast<uint16_t>(lo)) {
    code = ErrorCode::kHeaderChecksum, field = ErrorField::kHcrc;
  } else if (((limits.majors >> version_major(h.version)) & 1) == 0) {
    code = ErrorCode::kUnsupportedVersion, field = ErrorField::kVersion;
  } else if ((h.flags & ~kFlagChk) != 0) {
    code = ErrorCode::kReservedFlags, field = ErrorField::kFlags;
  } else if (h.length > limits.max_frame) {
    code = ErrorCode::kFrameTooLarge, field = ErrorField::kLength;
  } else if (uint64_t{h.ext_len} + (h.chk() ? kTrailerSize : 0) > h.length) {
    // 64-bit sum: ext_len + trailer cannot wrap, so one compare covers both
    // "length too short for the trailer" and "ext_len past the payload".
    code = ErrorCode::kBadExtension, field = ErrorField::kExtLen;
  } else {
    return h;
  }
  return header_error(code, field, offset, b, limits);
}

#if defined(__x86_64__)
__attribute__((target("pclmul,sse2"), flatten)) void encode_header_clmul(const Header& h,
                                                                         uint8_t* out) {
  encode_words<true>(h, out);
}
__attribute__((target("pclmul,sse2"), flatten)) absl::StatusOr<Header> decode_header_clmul(
    const uint8_t* b, const HeaderLimits& limits, uint64_t offset) {
  return decode_words<true>(b, limits, offset);
}
#endif

// Separate functions so that the public entry points are a test and a
// tail jump, without a stack frame of their own.
[[gnu::noinline]] void encode_header_portable(const Header& h, uint8_t* out) {
  encode_words<false>(h, out);
}
[[gnu::noinline]] absl::StatusOr<Header> decode_header_portable(const uint8_t* b,
                                                                const HeaderLimits& limits,
                                                                uint64_t offset) {
  return decode_words<false>(b, limits, offset);
}

}  // namespace

void encode_header(const Header& h, uint8_t* out) {
#if defined(__x86_64__)
  if (internal::kCrc16HasClmul) return encode_header_clmul(h, out);
#endif
  encode_header_portable(h, out);
}

absl::StatusOr<Header> decode_header(const uint8_t* b, const HeaderLimits& limits,
                                     uint64_t offset) {
#if defined(__x86_64__)
  if (internal::kCrc16HasClmul) return decode_header_clmul(b, limits, offset);
#endif
  return decode_header_portable(b, limits, offset);
}

bool magic_prefix_mismatch(absl::Span<const uint8_t> prefix) {
  for (size_t i = 0; i < prefix.size() && i < 4; ++i) {
    if (prefix[i] != kMagicBytes[i]) return true;
  }
  return false;
}

}  // namespace coring::sbmp
