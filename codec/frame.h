// Frame: a non-owning view of one SBMP frame - its header fields, extension
// block and payload - into the bytes it was decoded from (or, for a frame
// being sent, into the application's own memory). Cheap to copy; valid as
// long as those bytes are.
//
//   // Echo: the decoded view goes straight back to the encoder.
//   encoder_output = encode_frame(frame, options, out);
//
//   // Build one to send:
//   Frame f = make_frame(0x0100, payload, builder.view());
#pragma once

#include <cstdint>

#include "absl/types/span.h"
#include "coring/codec/extensions.h"
#include "coring/codec/header.h"

namespace coring::sbmp {

struct Frame {
  // As received; for a frame to send only `type` matters (the encoder sets
  // version, flags, length and ext_len).
  Header header;
  Extensions extensions;
  absl::Span<const uint8_t> payload;
  // The rest of the payload, when the frame arrived split across two
  // inputs and the decoder was allowed to leave it there
  // (Decoder::set_split_payloads()): the payload is `payload` followed by
  // `payload_tail`, both views, neither copied. Empty otherwise. A frame to
  // send may set it too: the encoder sends both parts, in order.
  absl::Span<const uint8_t> payload_tail;
  // Where the frame starts in the stream it was decoded from.
  uint64_t offset = 0;
  // A decoded frame's bytes as received (header to trailer,
  // header.frame_size() of them), when they lie together in the input it
  // was decoded from (or the decoder's buffer); null otherwise. A frame sent
  // unchanged (the header fields encoded equal to these bytes', and
  // `extensions` and `payload` the views decoded) goes out as these bytes:
  // an echo encodes no header and computes no checksum.
  const uint8_t* wire = nullptr;

  uint16_t type() const { return header.type; }
  uint8_t version() const { return header.version; }
  bool chk() const { return header.chk(); }
  size_t payload_size() const { return payload.size() + payload_tail.size(); }
};

inline Frame make_frame(uint16_t type, absl::Span<const uint8_t> payload,
                        Extensions extensions = {}) {
  Frame f;
  f.header.type = type;
  f.extensions = extensions;
  f.payload = payload;
  return f;
}

// Control types (SBMP.md 3): 0x0000-0x00FF; application types above.
inline constexpr uint16_t kTypeHello = 0x0001;
inline constexpr uint16_t kTypeHelloAck = 0x0002;
inline constexpr uint16_t kTypePing = 0x0003;
inline constexpr uint16_t kTypePong = 0x0004;
inline constexpr uint16_t kTypeGoaway = 0x0005;
inline constexpr uint16_t kFirstApplicationType = 0x0100;

constexpr bool is_control_type(uint16_t type) { return type < kFirstApplicationType; }

}  // namespace coring::sbmp
