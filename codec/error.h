// SBMP error vocabulary: the spec's error codes (section 4), the fields a
// decoder blames, and FrameError, the typed error every failing decode carries.
//
// Errors travel as absl::Status; the typed FrameError rides along as a status
// payload so callers never parse messages:
//
//   absl::Status st = ...;
//   if (auto e = coring::sbmp::frame_error(st)) {
//     log(error_code_name(e->code), e->offset, error_field_name(e->field));
//   }
//
// Errors this side detects map to absl::StatusCode::kDataLoss; a GOAWAY
// received from the peer maps by code (see make_remote_goaway_error).
#pragma once

#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace coring::sbmp {

// Section 4. The enum holds any u32 so that a GOAWAY with an unknown code
// survives a round trip.
enum class ErrorCode : uint32_t {
  kNoError = 0,
  kProtocolError = 1,
  kBadMagic = 2,
  kHeaderChecksum = 3,
  kPayloadChecksum = 4,
  kFrameTooLarge = 5,
  kUnsupportedVersion = 6,
  kBadExtension = 7,
  kReservedFlags = 8,
  kIdleTimeout = 9,
  kShutdown = 10,
  kOverloaded = 11,
};

// The part of a frame at fault (section 4).
enum class ErrorField : uint8_t {
  kNone = 0,
  kMagic,
  kHcrc,
  kVersion,
  kFlags,
  kLength,
  kExtLen,
  kExtensions,
  kTrailer,
  kType,
  kPayload,
};

// "BAD_MAGIC" etc.; "UNKNOWN" for a code outside the table.
absl::string_view error_code_name(ErrorCode code);
std::optional<ErrorCode> error_code_from_name(absl::string_view name);
// "magic", "hcrc", ...; "" for kNone.
absl::string_view error_field_name(ErrorField field);
std::optional<ErrorField> error_field_from_name(absl::string_view name);

struct FrameError {
  ErrorCode code = ErrorCode::kProtocolError;
  // Stream offset of the first byte of the frame at fault.
  uint64_t offset = 0;
  ErrorField field = ErrorField::kNone;
  // True when the peer reported the error in its GOAWAY (then `field` is kNone).
  bool remote = false;

  friend bool operator==(const FrameError&, const FrameError&) = default;
};

// A kDataLoss status for an error this side detected, carrying `error`.
absl::Status make_frame_error(const FrameError& error, absl::string_view detail);

// The status for a well-formed GOAWAY(code, reason) received from the peer:
// NO_ERROR -> kCancelled, SHUTDOWN -> kUnavailable, OVERLOADED ->
// kResourceExhausted, IDLE_TIMEOUT -> kDeadlineExceeded, anything else ->
// kAborted. Carries FrameError{code, offset, kNone, remote = true}.
absl::Status make_remote_goaway_error(uint32_t code, uint64_t offset, absl::string_view reason);

// The FrameError a status carries, if any.
std::optional<FrameError> frame_error(const absl::Status& status);

}  // namespace coring::sbmp
