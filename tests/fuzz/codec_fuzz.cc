// libFuzzer target for the connection-level Codec: arbitrary peer bytes in
// arbitrary pieces, interleaved with the application's encode(), close(),
// ping() and partial consume_output(). Besides "no crash, no sanitizer
// report", it checks the Codec's contract:
//  * decode() hands the application only frames of type >= 0x0100;
//  * once decode() fails it keeps failing, whatever it is fed;
//  * a local protocol error queues a GOAWAY (goaway_sent), a peer's GOAWAY
//    sets goaway_received, and either way encode() is refused after;
//  * encode() is refused after close(); close() twice queues one GOAWAY;
//  * pending output never exceeds Codec::kOutputCapacity;
//  * everything the codec asked to send, in order, decodes cleanly as an
//    SBMP stream (no error, no partial frame) and, when a GOAWAY was sent,
//    ends with that GOAWAY, which parses.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "coring/codec/codec.h"
#include "coring/codec/control.h"
#include "coring/codec/decoder.h"
#include "coring/codec/error.h"
#include "coring/codec/frame.h"

namespace {

using coring::sbmp::Codec;
using coring::sbmp::CodecOptions;
using coring::sbmp::Decoder;
using coring::sbmp::Frame;
using coring::sbmp::Role;

void check(bool ok) {
  if (!ok) std::abort();
}

// What the codec asked to send, in order, as the peer would receive it.
class Wire {
 public:
  explicit Wire(Codec& codec) : codec_(codec) {}

  // Takes up to `n` bytes of pending output.
  void take(size_t n) {
    absl::Span<const uint8_t> out = codec_.pending_output();
    check(out.size() <= Codec::kOutputCapacity);
    n = std::min(n, out.size());
    bytes_.insert(bytes_.end(), out.begin(), out.begin() + n);
    codec_.consume_output(n);
  }
  void take_all() { take(Codec::kOutputCapacity); }
  void append(const Codec::Encoded& encoded) {
    for (absl::Span<const uint8_t> part : encoded.parts()) {
      bytes_.insert(bytes_.end(), part.begin(), part.end());
    }
  }

  // The whole stream decodes; returns the last frame's type (0 if none) and
  // checks a GOAWAY at the end parses.
  uint16_t verify() const {
    Decoder decoder;
    absl::Span<const uint8_t> in(bytes_);
    uint16_t last = 0;
    for (;;) {
      auto next = decoder.next(in);
      check(next.ok());
      if (!next->has_value()) break;
      last = (*next)->type();
      if (last == coring::sbmp::kTypeGoaway) {
        check(coring::sbmp::parse_goaway(**next).ok());
      }
    }
    check(!decoder.mid_frame());
    return last;
  }

 private:
  Codec& codec_;
  std::vector<uint8_t> bytes_;
};

// Reads control values from the front of the input.
class Controls {
 public:
  Controls(const uint8_t*& data, size_t& size, size_t n) {
    if (size >= n && data[0] != 'S') {
      bytes_.assign(data, data + n);
      data += n;
      size -= n;
    }
  }
  // Cycles through the control bytes; 0 without them.
  uint8_t next() { return bytes_.empty() ? 0 : bytes_[i_++ % bytes_.size()]; }
  bool present() const { return !bytes_.empty(); }

 private:
  std::vector<uint8_t> bytes_;
  size_t i_ = 0;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // Seeds (the vectors) start with "SBMP": fed as they are to a server that
  // skips negotiation. Other inputs start with 8 control bytes: byte 0 picks
  // the role and options, the rest drive piece sizes and the actions between
  // pieces.
  Controls controls(data, size, 8);
  const uint8_t mode = controls.next();
  CodecOptions options;
  options.role = (mode & 1) ? Role::kClient : Role::kServer;
  options.send_hello = controls.present() ? (mode & 2) != 0 : false;
  options.max_frame = (mode & 4) ? 256 : coring::sbmp::kDefaultMaxFrame;
  if (mode & 8) options.features = 0;
  Codec codec(options);
  Wire wire(codec);

  bool failed = false;
  bool closed = false;
  size_t pos = 0;
  const std::vector<uint8_t> app_payload(300, 0xAB);
  while (pos < size) {
    const uint8_t c = controls.next();
    size_t piece = controls.present() ? std::min<size_t>(size - pos, 1 + c % 37) : size - pos;
    absl::Span<const uint8_t> in(data + pos, piece);
    pos += piece;

    for (;;) {
      const bool goaway_received_before = codec.goaway_received();
      auto next = codec.decode(in);
      if (!next.ok()) {
        // The error is a protocol error we detected or the peer's GOAWAY.
        check(codec.goaway_sent() || codec.goaway_received());
        check(goaway_received_before || failed || codec.goaway_received() ||
              coring::sbmp::frame_error(next.status()).has_value());
        failed = true;
        break;
      }
      check(!failed);  // once failed, decode() must keep failing
      if (!next->has_value()) {
        check(in.empty());
        break;
      }
      check((*next)->type() >= 0x0100);
    }
    // After a failure, more input still gives an error.
    if (failed) {
      absl::Span<const uint8_t> more(data + pos - piece, piece);
      check(!codec.decode(more).ok());
    }

    // Actions between pieces, picked by the control byte's upper bits.
    switch (c >> 5) {
      case 0:
      case 1:
        wire.take(c);  // partial write
        break;
      case 2: {
        wire.take_all();  // pending output goes before encoded frames
        Codec::Encoded encoded;
        Frame frame = coring::sbmp::make_frame(0x0100 + (c & 3),
                                               absl::MakeConstSpan(app_payload).first(c & 0x1F));
        absl::Status s = codec.encode(frame, encoded);
        if (closed || codec.goaway_sent() || codec.goaway_received()) check(!s.ok());
        if (s.ok()) wire.append(encoded);
        break;
      }
      case 3: {
        // A control frame is never the application's to encode.
        Codec::Encoded encoded;
        check(!codec.encode(coring::sbmp::make_frame(coring::sbmp::kTypePing, {}), encoded).ok());
        break;
      }
      case 4: {
        const bool goaway_before = codec.goaway_sent() || codec.goaway_received();
        codec.close(absl::UnavailableError("fuzz"));
        closed = true;
        check(codec.goaway_sent() || goaway_before);
        break;
      }
      case 5:
        (void)codec.ping(absl::MakeConstSpan(app_payload).first(c & 0x1F),
                         (c & 1) ? std::optional<uint64_t>(c) : std::nullopt);
        break;
      default:
        break;
    }
  }

  // Closing again never queues a second GOAWAY; encode stays refused.
  codec.close(absl::OkStatus());
  Codec::Encoded encoded;
  check(!codec.encode(coring::sbmp::make_frame(0x0100, {}), encoded).ok());
  wire.take_all();
  check(codec.pending_output().empty());
  const uint16_t last = wire.verify();
  if (codec.goaway_sent()) check(last == coring::sbmp::kTypeGoaway);
  return 0;
}
