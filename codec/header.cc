#include "coring/codec/header.h"

#include "absl/strings/str_format.h"
#include "coring/codec/crc16.h"
#include "coring/codec/error.h"

namespace coring::sbmp {
namespace {

uint16_t load16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
void store16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void store32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
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

void encode_header(const Header& h, uint8_t* out) {
  store32(out, kMagic);
  out[4] = h.version;
  out[5] = h.flags;
  store16(out + 6, h.type);
  store32(out + 8, h.length);
  store16(out + 12, h.ext_len);
  store16(out + 14, crc16_header(out));
}

absl::StatusOr<Header> decode_header(const uint8_t* b, const HeaderLimits& limits,
                                     uint64_t offset) {
  Header h;
  h.version = b[4];
  h.flags = b[5];
  h.type = load16(b + 6);
  h.length = load32(b + 8);
  h.ext_len = load16(b + 12);
  ErrorCode code;
  ErrorField field;
  if (load32(b) != kMagic) {
    code = ErrorCode::kBadMagic, field = ErrorField::kMagic;
  } else if (crc16_header(b) != load16(b + 14)) {
    code = ErrorCode::kHeaderChecksum, field = ErrorField::kHcrc;
  } else if (((limits.majors >> version_major(h.version)) & 1) == 0) {
    code = ErrorCode::kUnsupportedVersion, field = ErrorField::kVersion;
  } else if ((h.flags & ~kFlagChk) != 0) {
    code = ErrorCode::kReservedFlags, field = ErrorField::kFlags;
  } else if (h.length > limits.max_frame) {
    code = ErrorCode::kFrameTooLarge, field = ErrorField::kLength;
  } else if (h.chk() ? (h.length < kTrailerSize || h.ext_len > h.length - kTrailerSize)
                     : h.ext_len > h.length) {
    code = ErrorCode::kBadExtension, field = ErrorField::kExtLen;
  } else {
    return h;
  }
  return header_error(code, field, offset, b, limits);
}

bool magic_prefix_mismatch(absl::Span<const uint8_t> prefix) {
  for (size_t i = 0; i < prefix.size() && i < 4; ++i) {
    if (prefix[i] != kMagicBytes[i]) return true;
  }
  return false;
}

}  // namespace coring::sbmp
