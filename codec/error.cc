#include "coring/codec/error.h"

#include <array>
#include <cstring>
#include <string>

#include "absl/strings/cord.h"
#include "absl/strings/str_format.h"

namespace coring::sbmp {
namespace {

constexpr absl::string_view kPayloadUrl = "type.coring.dev/coring.sbmp.FrameError";

constexpr std::array<absl::string_view, 12> kCodeNames = {
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "BAD_MAGIC",
    "HEADER_CHECKSUM",
    "PAYLOAD_CHECKSUM",
    "FRAME_TOO_LARGE",
    "UNSUPPORTED_VERSION",
    "BAD_EXTENSION",
    "RESERVED_FLAGS",
    "IDLE_TIMEOUT",
    "SHUTDOWN",
    "OVERLOADED",
};

constexpr std::array<absl::string_view, 11> kFieldNames = {
    "",        "magic",      "hcrc",    "version", "flags",   "length",
    "ext_len", "extensions", "trailer", "type",    "payload",
};

// Payload layout: code u32, offset u64, field u8, remote u8 (little endian;
// it never leaves the process).
constexpr size_t kEncodedSize = 14;

absl::Cord encode(const FrameError& e) {
  std::array<char, kEncodedSize> bytes{};
  uint32_t code = static_cast<uint32_t>(e.code);
  std::memcpy(bytes.data(), &code, 4);
  std::memcpy(bytes.data() + 4, &e.offset, 8);
  bytes[12] = static_cast<char>(e.field);
  bytes[13] = e.remote ? 1 : 0;
  return absl::Cord(absl::string_view(bytes.data(), bytes.size()));
}

}  // namespace

absl::string_view error_code_name(ErrorCode code) {
  auto i = static_cast<uint32_t>(code);
  return i < kCodeNames.size() ? kCodeNames[i] : absl::string_view("UNKNOWN");
}

std::optional<ErrorCode> error_code_from_name(absl::string_view name) {
  for (size_t i = 0; i < kCodeNames.size(); ++i) {
    if (kCodeNames[i] == name) return static_cast<ErrorCode>(i);
  }
  return std::nullopt;
}

absl::string_view error_field_name(ErrorField field) {
  auto i = static_cast<size_t>(field);
  return i < kFieldNames.size() ? kFieldNames[i] : absl::string_view("");
}

std::optional<ErrorField> error_field_from_name(absl::string_view name) {
  for (size_t i = 1; i < kFieldNames.size(); ++i) {
    if (kFieldNames[i] == name) return static_cast<ErrorField>(i);
  }
  return std::nullopt;
}

absl::Status make_frame_error(const FrameError& error, absl::string_view detail) {
  absl::Status status(
      absl::StatusCode::kDataLoss,
      absl::StrFormat("SBMP %s at offset %d (field %s): %s", error_code_name(error.code),
                      error.offset, error_field_name(error.field), detail));
  status.SetPayload(kPayloadUrl, encode(error));
  return status;
}

absl::Status make_remote_goaway_error(uint32_t code, uint64_t offset, absl::string_view reason) {
  absl::StatusCode status_code;
  switch (static_cast<ErrorCode>(code)) {
    case ErrorCode::kNoError:
      status_code = absl::StatusCode::kCancelled;
      break;
    case ErrorCode::kShutdown:
      status_code = absl::StatusCode::kUnavailable;
      break;
    case ErrorCode::kOverloaded:
      status_code = absl::StatusCode::kResourceExhausted;
      break;
    case ErrorCode::kIdleTimeout:
      status_code = absl::StatusCode::kDeadlineExceeded;
      break;
    default:
      status_code = absl::StatusCode::kAborted;
  }
  FrameError error{static_cast<ErrorCode>(code), offset, ErrorField::kNone, /*remote=*/true};
  absl::Status status(status_code, absl::StrFormat("peer sent GOAWAY(%s, code %d): %s",
                                                   error_code_name(error.code), code, reason));
  status.SetPayload(kPayloadUrl, encode(error));
  return status;
}

std::optional<FrameError> frame_error(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kPayloadUrl);
  if (!payload || payload->size() != kEncodedSize) return std::nullopt;
  std::string bytes(*payload);  // 14 bytes: fits the small-string buffer
  FrameError e;
  uint32_t code;
  std::memcpy(&code, bytes.data(), 4);
  std::memcpy(&e.offset, bytes.data() + 4, 8);
  e.code = static_cast<ErrorCode>(code);
  e.field = static_cast<ErrorField>(static_cast<uint8_t>(bytes[12]));
  e.remote = bytes[13] != 0;
  return e;
}

}  // namespace coring::sbmp
