// Encoder tests, including the round-trip property: random frames, encoded
// both ways, decode back to the same type, extensions and payload.
#include "coring/codec/encoder.h"

#include <random>
#include <string>
#include <vector>

#include "coring/codec/decoder.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace coring::sbmp {
namespace {

std::vector<uint8_t> flatten(const EncodedFrame& e) {
  std::vector<uint8_t> out;
  for (auto part : e.parts()) out.insert(out.end(), part.begin(), part.end());
  return out;
}

TEST(EncoderTest, SpecExamplePing) {
  std::string hi = "hi";
  std::vector<uint8_t> out(64);
  auto n = encode_frame(make_frame(kTypePing, testing::as_bytes(hi)), {}, absl::MakeSpan(out));
  ASSERT_TRUE(n.ok());
  out.resize(*n);
  std::string want =
      testing::read_file(std::string(CORING_SBMP_VECTORS_DIR) + "/spec_example_ping.bin");
  EXPECT_EQ(testing::to_hex(out), testing::to_hex(testing::as_bytes(want)));
}

TEST(EncoderTest, ScatterListViewsPayloadAndMatchesFlatEncoding) {
  std::string payload(10000, 'p');
  ExtensionBuilder ext;
  ext.set_request_id(9);
  Frame f = make_frame(0x200, testing::as_bytes(payload), ext.view());
  EncodedFrame e;
  ASSERT_TRUE(encode_frame(f, {.chk = true}, e).ok());
  ASSERT_EQ(e.parts().size(), 4u);
  EXPECT_EQ(e.parts()[2].data(), f.payload.data());  // not copied
  EXPECT_EQ(e.parts()[1].data(), ext.bytes().data());
  std::vector<uint8_t> flat(e.size());
  ASSERT_EQ(*encode_frame(f, {.chk = true}, absl::MakeSpan(flat)), e.size());
  EXPECT_EQ(flatten(e), flat);
  // Copies re-point their own header and trailer.
  EncodedFrame copy = e;
  EXPECT_NE(copy.parts()[0].data(), e.parts()[0].data());
  EXPECT_NE(copy.parts()[3].data(), e.parts()[3].data());  // the trailer
  EXPECT_EQ(copy.parts()[2].data(), f.payload.data());
  EXPECT_EQ(flatten(copy), flat);
}

TEST(EncoderTest, RefusesOversizeAndLeavesNothingToSend) {
  std::string payload(100, 'x');
  Frame f = make_frame(0x100, testing::as_bytes(payload));
  EncodedFrame e;
  ASSERT_TRUE(encode_frame(f, {}, e).ok());
  EXPECT_FALSE(encode_frame(f, {.chk = true, .max_frame = 103}, e).ok());
  EXPECT_TRUE(e.parts().empty());
  EXPECT_TRUE(encode_frame(f, {.chk = true, .max_frame = 104}, e).ok());
  std::vector<uint8_t> small(50);
  EXPECT_FALSE(encode_frame(f, {}, absl::MakeSpan(small)).ok());
}

TEST(EncoderTest, EchoReproducesExtensionsExactly) {
  // Unknown kinds, repeats, padding: all come back byte for byte.
  std::vector<uint8_t> block = testing::from_hex(
      "0000"
      "0501aa"
      "80020102"
      "8000"
      "0108"
      "0000000000000007");
  ASSERT_EQ(validate_extensions(block), std::nullopt);
  std::string payload = "body";
  std::vector<uint8_t> wire(100);
  size_t n = *encode_frame(make_frame(0x300, testing::as_bytes(payload), Extensions(block)), {},
                           absl::MakeSpan(wire));
  Decoder d;
  absl::Span<const uint8_t> in = absl::MakeConstSpan(wire).subspan(0, n);
  auto frame = d.next(in);
  ASSERT_TRUE(frame.ok() && frame->has_value());
  EncodedFrame echo;
  ASSERT_TRUE(encode_frame(**frame, {}, echo).ok());
  EXPECT_EQ(flatten(echo), std::vector<uint8_t>(wire.begin(), wire.begin() + n));
}

// A decoded frame (extensions, CHK trailer) sent back unchanged: one part,
// its bytes as received, also in a copy of the encoding.
TEST(EncoderTest, UnchangedDecodedFrameIsSentAsItsReceivedBytes) {
  ExtensionBuilder ext;
  ext.set_request_id(77);
  std::string payload = "payload bytes";
  const EncodeOptions options{.chk = true};
  std::vector<uint8_t> wire(200);
  const size_t n = *encode_frame(make_frame(0x321, testing::as_bytes(payload), ext.view()), options,
                                 absl::MakeSpan(wire));
  Decoder d;
  absl::Span<const uint8_t> in = absl::MakeConstSpan(wire).first(n);
  auto frame = d.next(in);
  ASSERT_TRUE(frame.ok() && frame->has_value());
  EXPECT_EQ((*frame)->wire, wire.data());
  EncodedFrame echo;
  ASSERT_TRUE(encode_frame(**frame, options, echo).ok());
  ASSERT_EQ(echo.parts().size(), 1u);
  EXPECT_EQ(echo.parts()[0].data(), wire.data());
  EXPECT_EQ(echo.parts()[0].size(), n);
  EXPECT_EQ(echo.size(), n);
  EncodedFrame copy = echo;
  ASSERT_EQ(copy.parts().size(), 1u);
  EXPECT_EQ(copy.parts()[0].data(), wire.data());
  EXPECT_EQ(copy.parts()[0].size(), n);
  // Over the peer's max frame: refused, as any frame.
  EXPECT_FALSE(encode_frame(**frame, {.chk = true, .max_frame = 20}, echo).ok());
}

// Anything changed - payload, type, an extension block of the same size,
// CHK, version - is encoded afresh, and correctly.
TEST(EncoderTest, ChangedDecodedFrameIsEncodedAfresh) {
  ExtensionBuilder ext;
  ext.set_request_id(77);
  std::string payload = "payload bytes";
  std::vector<uint8_t> wire(200);
  const size_t n = *encode_frame(make_frame(0x321, testing::as_bytes(payload), ext.view()),
                                 {.chk = true}, absl::MakeSpan(wire));
  Decoder d;
  absl::Span<const uint8_t> in = absl::MakeConstSpan(wire).first(n);
  auto decoded = d.next(in);
  ASSERT_TRUE(decoded.ok() && decoded->has_value());
  const Frame received = **decoded;
  ExtensionBuilder other;
  other.set_request_id(78);  // the same size
  struct Change {
    const char* what;
    Frame frame;
    EncodeOptions options;
  };
  std::vector<Change> changes;
  changes.push_back({"payload shortened", received, {.chk = true}});
  changes.back().frame.payload.remove_suffix(1);
  changes.push_back({"payload moved", received, {.chk = true}});
  changes.back().frame.payload = testing::as_bytes(payload);
  changes.push_back({"type", received, {.chk = true}});
  changes.back().frame.header.type = 0x322;
  changes.push_back({"extensions", received, {.chk = true}});
  changes.back().frame.extensions = other.view();
  changes.push_back({"no CHK", received, {.chk = false}});
  changes.push_back({"version", received, {.version = 0x14, .chk = true}});
  for (const Change& c : changes) {
    SCOPED_TRACE(c.what);
    EncodedFrame e;
    ASSERT_TRUE(encode_frame(c.frame, c.options, e).ok());
    EXPECT_GT(e.parts().size(), 1u);
    Frame fresh = c.frame;
    fresh.wire = nullptr;
    std::vector<uint8_t> flat(e.size());
    ASSERT_EQ(*encode_frame(fresh, c.options, absl::MakeSpan(flat)), e.size());
    EXPECT_EQ(flatten(e), flat);
    Decoder check({.versions = nullptr});
    check.set_accepted_majors(0xFFFF);
    absl::Span<const uint8_t> back = absl::MakeConstSpan(flat);
    auto again = check.next(back);
    ASSERT_TRUE(again.ok()) << again.status();
    ASSERT_TRUE(again->has_value());
    EXPECT_EQ((*again)->type(), c.frame.type());
    EXPECT_EQ(testing::to_hex((*again)->payload), testing::to_hex(c.frame.payload));
    EXPECT_EQ(testing::to_hex((*again)->extensions.bytes()),
              testing::to_hex(c.frame.extensions.bytes()));
  }
}

TEST(EncoderTest, RoundTripProperty) {
  std::mt19937 rng(2024);
  Decoder decoder;
  std::vector<uint8_t> stream;
  struct Sent {
    uint16_t type;
    bool chk;
    uint8_t version;
    std::vector<uint8_t> ext;
    std::vector<uint8_t> payload;
  };
  std::vector<Sent> sent;
  for (int i = 0; i < 500; ++i) {
    Sent s;
    s.type = static_cast<uint16_t>(rng());
    s.chk = rng() & 1;
    s.version = static_cast<uint8_t>(0x10 | (rng() & 0xF));
    ExtensionBuilder b;
    if (rng() & 1) b.set_request_id((uint64_t{rng()} << 32) | rng());
    if (rng() & 1) b.set_timeout_us(rng());
    if (rng() & 1) b.set_state_version(rng());
    if (rng() % 4 == 0) {
      TraceContext tc;
      tc.trace_flags = 1;
      tc.trace_id[3] = static_cast<uint8_t>(rng());
      b.set_trace_context(tc);
    }
    for (int k = rng() % 3; k > 0; --k) {
      std::vector<uint8_t> v(rng() % 20, static_cast<uint8_t>(rng()));
      ASSERT_TRUE(b.add(static_cast<uint8_t>(0x05 + rng() % 250), v).ok());
    }
    s.ext.assign(b.bytes().begin(), b.bytes().end());
    s.payload.resize(rng() % (rng() % 8 == 0 ? 70000 : 200));
    for (uint8_t& x : s.payload) x = static_cast<uint8_t>(rng());
    Frame f = make_frame(s.type, s.payload, Extensions(s.ext));
    EncodedFrame e;
    ASSERT_TRUE(encode_frame(f, {.version = s.version, .chk = s.chk}, e).ok());
    auto bytes = flatten(e);
    stream.insert(stream.end(), bytes.begin(), bytes.end());
    sent.push_back(std::move(s));
  }
  // Decode the whole stream in random pieces.
  size_t got = 0;
  size_t pos = 0;
  while (pos < stream.size()) {
    size_t piece = std::min<size_t>(stream.size() - pos, 1 + rng() % 5000);
    absl::Span<const uint8_t> in = absl::MakeConstSpan(stream).subspan(pos, piece);
    pos += piece;
    for (;;) {
      auto r = decoder.next(in);
      ASSERT_TRUE(r.ok()) << r.status();
      if (!r->has_value()) break;
      const Frame& f = **r;
      ASSERT_LT(got, sent.size());
      const Sent& s = sent[got++];
      EXPECT_EQ(f.type(), s.type);
      EXPECT_EQ(f.chk(), s.chk);
      EXPECT_EQ(f.version(), s.version);
      EXPECT_EQ(std::vector<uint8_t>(f.extensions.bytes().begin(), f.extensions.bytes().end()),
                s.ext);
      EXPECT_EQ(std::vector<uint8_t>(f.payload.begin(), f.payload.end()), s.payload);
    }
  }
  EXPECT_EQ(got, sent.size());
  EXPECT_FALSE(decoder.mid_frame());
}

}  // namespace
}  // namespace coring::sbmp
