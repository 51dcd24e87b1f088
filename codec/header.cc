#include "coring/codec/header.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "coring/codec/crc16.h"
#include "coring/codec/error.h"

namespace coring::sbmp {
namespace {

uint16_t load16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
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

bool magic_prefix_mismatch(absl::Span<const uint8_t> prefix) {
  for (size_t i = 0; i < prefix.size() && i < 4; ++i) {
    if (prefix[i] != kMagicBytes[i]) return true;
  }
  return false;
}

}  // namespace coring::sbmp
