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

}  // namespace

absl::Status internal::header_error(const uint8_t* bytes, const HeaderLimits& limits,
                                    uint64_t offset) {
  // The checks again, one by one in the spec's order (SBMP.md 1.1), with the
  // general CRC: this runs once per connection at most.
  const uint8_t version = bytes[4];
  const uint8_t flags = bytes[5];
  const uint32_t length = load32(bytes + 8);
  const uint16_t ext_len = load16(bytes + 12);
  ErrorCode code = ErrorCode::kBadExtension;
  ErrorField field = ErrorField::kExtLen;
  std::string detail;
  if (load32(bytes) != kMagic) {
    code = ErrorCode::kBadMagic, field = ErrorField::kMagic;
    detail = absl::StrFormat("first bytes %02x %02x %02x %02x are not \"SBMP\"", bytes[0], bytes[1],
                             bytes[2], bytes[3]);
  } else if (const uint16_t crc = crc16_ccitt_false(absl::MakeConstSpan(bytes, 14));
             crc != load16(bytes + 14)) {
    code = ErrorCode::kHeaderChecksum, field = ErrorField::kHcrc;
    detail = absl::StrFormat("header checksum 0x%04x, computed 0x%04x", load16(bytes + 14), crc);
  } else if (((limits.majors >> version_major(version)) & 1) == 0) {
    code = ErrorCode::kUnsupportedVersion, field = ErrorField::kVersion;
    detail = absl::StrFormat("version %d.%d is not spoken here", version_major(version),
                             version_minor(version));
  } else if ((flags & ~kFlagChk) != 0) {
    code = ErrorCode::kReservedFlags, field = ErrorField::kFlags;
    detail = absl::StrFormat("reserved flag bits set in 0x%02x", flags);
  } else if (length > limits.max_frame) {
    code = ErrorCode::kFrameTooLarge, field = ErrorField::kLength;
    detail = absl::StrFormat("length %d exceeds max frame %d", length, limits.max_frame);
  } else {
    detail = absl::StrFormat("ext_len %d does not fit length %d%s", ext_len, length,
                             (flags & kFlagChk) ? " minus trailer" : "");
  }
  return make_frame_error({code, offset, field}, detail);
}

namespace {

// encode/check come in two builds, picked per call by one well-predicted
// branch: one compiled for PCLMULQDQ with the CRC kernel inlined, and a
// portable one using the lookup tables. Both take the header as two
// big-endian words: one load (and byte swap) each, the fields are shifts.
// The hcrc of a header with the right magic, from hi and lo (hcrc bits ignored).
template <bool kClmul>
uint16_t header_crc(uint64_t hi, uint64_t lo);
template <>
inline uint16_t header_crc<false>(uint64_t hi, uint64_t lo) {
  return crc16_header_table(hi, lo);
}
#if defined(__x86_64__)
template <>
__attribute__((target("pclmul,sse2"))) inline uint16_t header_crc<true>(uint64_t hi, uint64_t lo) {
  return internal::crc16_sbmp_header_clmul_kernel(static_cast<uint32_t>(hi), lo);
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
[[gnu::always_inline]] inline internal::HeaderWords check_words(const uint8_t* b,
                                                                HeaderLimits limits) {
  const uint64_t hi = load_be64(b);
  const uint64_t lo = load_be64(b + 8);
  const auto version = static_cast<uint8_t>(hi >> 24);
  const auto flags = static_cast<uint8_t>(hi >> 16);
  const auto length = static_cast<uint32_t>(lo >> 32);
  const auto ext_len = static_cast<uint16_t>(lo >> 16);
  // Every check, combined without short cuts into one result (the error
  // path sorts out which one failed): no branch to mispredict, and nothing
  // waits on the CRC but that one bit. The CRC assumes the magic, which is
  // checked alongside. ext_len + trailer is a 64-bit sum that cannot wrap,
  // so one compare covers "length too short for the trailer" and "ext_len
  // past the payload".
  unsigned bad = (hi >> 32) != kMagic;
  bad |= header_crc<kClmul>(hi, lo) != static_cast<uint16_t>(lo);
  bad |= ((limits.majors >> version_major(version)) & 1) == 0;
  bad |= (flags & ~kFlagChk) != 0;
  bad |= length > limits.max_frame;
  bad |= uint64_t{ext_len} + (flags & kFlagChk) * kTrailerSize > length;
  return {hi, (lo & ~uint64_t{0xFFFF}) | (bad ^ 1)};
}

#if defined(__x86_64__)
__attribute__((target("pclmul,sse2"), flatten)) void encode_header_clmul(const Header& h,
                                                                         uint8_t* out) {
  encode_words<true>(h, out);
}
__attribute__((target("pclmul,sse2"), flatten)) internal::HeaderWords check_header_clmul(
    const uint8_t* b, HeaderLimits limits) {
  return check_words<true>(b, limits);
}
#endif

// Separate functions so that the public entry points are a test and a
// tail jump, without a stack frame of their own.
[[gnu::noinline]] void encode_header_portable(const Header& h, uint8_t* out) {
  encode_words<false>(h, out);
}
[[gnu::noinline]] internal::HeaderWords check_header_portable(const uint8_t* b,
                                                              HeaderLimits limits) {
  return check_words<false>(b, limits);
}

}  // namespace

void encode_header(const Header& h, uint8_t* out) {
#if defined(__x86_64__)
  if (internal::kCrc16HasClmul) return encode_header_clmul(h, out);
#endif
  encode_header_portable(h, out);
}

internal::HeaderWords internal::check_header(const uint8_t* b, HeaderLimits limits) noexcept {
#if defined(__x86_64__)
  if (internal::kCrc16HasClmul) return check_header_clmul(b, limits);
#endif
  return check_header_portable(b, limits);
}

bool magic_prefix_mismatch(absl::Span<const uint8_t> prefix) {
  for (size_t i = 0; i < prefix.size() && i < 4; ++i) {
    if (prefix[i] != kMagicBytes[i]) return true;
  }
  return false;
}

}  // namespace coring::sbmp
