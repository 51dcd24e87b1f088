// Payloads of the SBMP control frames (SBMP.md 3): HELLO, HELLO_ACK, PING,
// PONG, GOAWAY - writing them and parsing them with every rule of the
// section's table checked. A payload that breaks its row is PROTOCOL_ERROR
// (field `payload`); a reserved control type is PROTOCOL_ERROR (field
// `type`). Parsed texts are views into the frame.
//
//   uint8_t buf[kMaxHelloPayload];
//   size_t n = *write_hello({.max_frame = 1 << 20, .features = kFeatureCrc32c}, buf);
//   absl::StatusOr<Hello> hello = parse_hello(frame);
#pragma once

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "coring/codec/frame.h"
#include "coring/codec/header.h"

namespace coring::sbmp {

// Feature bits (HELLO / HELLO_ACK `features`).
inline constexpr uint32_t kFeatureCrc32c = 1u << 0;
inline constexpr uint32_t kKnownFeatures = kFeatureCrc32c;

inline constexpr size_t kHelloFixedSize = 12;
inline constexpr size_t kMaxAgent = 255;
inline constexpr size_t kMaxHelloPayload = kHelloFixedSize + kMaxAgent;
inline constexpr size_t kMaxPingPayload = 64;
inline constexpr size_t kGoawayFixedSize = 4;
inline constexpr size_t kMaxGoawayReason = 1024;
inline constexpr size_t kMaxGoawayPayload = kGoawayFixedSize + kMaxGoawayReason;

struct Hello {
  uint8_t min_version = kVersion13;
  uint8_t max_version = kVersion13;
  // The sender's receive limit; 0 means the default (16 MiB).
  uint32_t max_frame = 0;
  uint32_t features = 0;
  absl::string_view agent;
};

struct HelloAck {
  uint8_t version = kVersion13;
  uint32_t max_frame = 0;
  uint32_t features = 0;
  absl::string_view agent;
};

struct GoAway {
  uint32_t code = 0;
  absl::string_view reason;
};

// Writers: return the payload size; fail on an agent over 255 bytes, a
// reason over 1024 bytes, min_version > max_version, or a small `out`.
absl::StatusOr<size_t> write_hello(const Hello& hello, absl::Span<uint8_t> out);
absl::StatusOr<size_t> write_hello_ack(const HelloAck& ack, absl::Span<uint8_t> out);
absl::StatusOr<size_t> write_goaway(const GoAway& goaway, absl::Span<uint8_t> out);

// Parsers for a received frame of the matching type. Errors are
// PROTOCOL_ERROR at the frame's offset, field `payload`.
absl::StatusOr<Hello> parse_hello(const Frame& frame);
absl::StatusOr<HelloAck> parse_hello_ack(const Frame& frame);
absl::StatusOr<GoAway> parse_goaway(const Frame& frame);
// PING payloads are at most 64 bytes.
absl::Status check_ping(const Frame& frame);

// True for 0x0001-0x0005; the other control types are reserved.
constexpr bool is_known_control_type(uint16_t type) {
  return type >= kTypeHello && type <= kTypeGoaway;
}
// PROTOCOL_ERROR (field `type`) for a reserved control type, OK otherwise.
absl::Status check_control_type(const Frame& frame);

// Values of received max_frame fields: 0 means the default.
constexpr uint32_t effective_max_frame(uint32_t announced) {
  return announced == 0 ? kDefaultMaxFrame : announced;
}

}  // namespace coring::sbmp
