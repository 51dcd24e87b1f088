#include "coring/codec/control.h"

#include <cstring>

#include "absl/strings/str_format.h"
#include "coring/codec/error.h"

namespace coring::sbmp {
namespace {

uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
void store32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

absl::string_view text(absl::Span<const uint8_t> bytes) {
  return absl::string_view(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

absl::Status payload_error(const Frame& frame, absl::string_view what) {
  return make_frame_error({ErrorCode::kProtocolError, frame.offset, ErrorField::kPayload},
                          absl::StrFormat("control frame 0x%04x: %s", frame.type(), what));
}

absl::StatusOr<size_t> write_common(uint8_t b0, uint8_t b1, uint32_t max_frame, uint32_t features,
                                    absl::string_view agent, absl::Span<uint8_t> out) {
  if (agent.size() > kMaxAgent) {
    return absl::InvalidArgumentError(
        absl::StrFormat("agent of %d bytes (at most %d)", agent.size(), kMaxAgent));
  }
  size_t size = kHelloFixedSize + agent.size();
  if (out.size() < size) return absl::InvalidArgumentError("buffer too small for HELLO");
  uint8_t* p = out.data();
  p[0] = b0;
  p[1] = b1;
  p[2] = p[3] = 0;
  store32(p + 4, max_frame);
  store32(p + 8, features);
  if (!agent.empty()) std::memcpy(p + kHelloFixedSize, agent.data(), agent.size());
  return size;
}

// The shared 12-byte prefix of HELLO and HELLO_ACK, with its length rules.
absl::Status check_hello_shape(const Frame& frame) {
  size_t n = frame.payload.size();
  if (n < kHelloFixedSize) {
    return payload_error(frame, absl::StrFormat("payload of %d bytes (at least 12)", n));
  }
  if (n - kHelloFixedSize > kMaxAgent) {
    return payload_error(frame, absl::StrFormat("agent of %d bytes (at most 255)", n - 12));
  }
  if (frame.payload[2] != 0 || frame.payload[3] != 0) {
    return payload_error(frame, "non-zero reserved field");
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<size_t> write_hello(const Hello& hello, absl::Span<uint8_t> out) {
  if (hello.min_version > hello.max_version) {
    return absl::InvalidArgumentError("HELLO with min_version > max_version");
  }
  return write_common(hello.min_version, hello.max_version, hello.max_frame, hello.features,
                      hello.agent, out);
}

absl::StatusOr<size_t> write_hello_ack(const HelloAck& ack, absl::Span<uint8_t> out) {
  return write_common(ack.version, 0, ack.max_frame, ack.features, ack.agent, out);
}

absl::StatusOr<size_t> write_goaway(const GoAway& goaway, absl::Span<uint8_t> out) {
  if (goaway.reason.size() > kMaxGoawayReason) {
    return absl::InvalidArgumentError(absl::StrFormat("GOAWAY reason of %d bytes (at most %d)",
                                                      goaway.reason.size(), kMaxGoawayReason));
  }
  size_t size = kGoawayFixedSize + goaway.reason.size();
  if (out.size() < size) return absl::InvalidArgumentError("buffer too small for GOAWAY");
  store32(out.data(), goaway.code);
  if (!goaway.reason.empty()) {
    std::memcpy(out.data() + kGoawayFixedSize, goaway.reason.data(), goaway.reason.size());
  }
  return size;
}

absl::StatusOr<Hello> parse_hello(const Frame& frame) {
  if (absl::Status st = check_hello_shape(frame); !st.ok()) return st;
  const uint8_t* p = frame.payload.data();
  Hello hello{p[0], p[1], load32(p + 4), load32(p + 8), text(frame.payload.subspan(12))};
  if (hello.min_version > hello.max_version) {
    return payload_error(frame, absl::StrFormat("min_version 0x%02x > max_version 0x%02x",
                                                hello.min_version, hello.max_version));
  }
  return hello;
}

absl::StatusOr<HelloAck> parse_hello_ack(const Frame& frame) {
  if (absl::Status st = check_hello_shape(frame); !st.ok()) return st;
  const uint8_t* p = frame.payload.data();
  if (p[1] != 0) return payload_error(frame, "non-zero reserved field");
  return HelloAck{p[0], load32(p + 4), load32(p + 8), text(frame.payload.subspan(12))};
}

absl::StatusOr<GoAway> parse_goaway(const Frame& frame) {
  size_t n = frame.payload.size();
  if (n < kGoawayFixedSize) {
    return payload_error(frame, absl::StrFormat("GOAWAY payload of %d bytes (at least 4)", n));
  }
  if (n - kGoawayFixedSize > kMaxGoawayReason) {
    return payload_error(frame, absl::StrFormat("GOAWAY reason of %d bytes (at most 1024)", n - 4));
  }
  return GoAway{load32(frame.payload.data()), text(frame.payload.subspan(4))};
}

absl::Status check_ping(const Frame& frame) {
  if (frame.payload.size() > kMaxPingPayload) {
    return payload_error(
        frame, absl::StrFormat("PING payload of %d bytes (at most 64)", frame.payload.size()));
  }
  return absl::OkStatus();
}

absl::Status check_control_type(const Frame& frame) {
  if (!is_control_type(frame.type()) || is_known_control_type(frame.type())) {
    return absl::OkStatus();
  }
  return make_frame_error({ErrorCode::kProtocolError, frame.offset, ErrorField::kType},
                          absl::StrFormat("reserved control type 0x%04x", frame.type()));
}

}  // namespace coring::sbmp
