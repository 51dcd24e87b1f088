// Split payloads (Decoder::set_split_payloads(), Frame::payload_tail): a
// frame across two inputs comes as two views of them, never copied; anything
// else is reassembled as before. The vectors are decoded this way too
// (vectors_test.cc); these are the cases the vectors do not pin down.
#include <string>
#include <vector>

#include "coring/codec/codec.h"
#include "coring/codec/decoder.h"
#include "coring/codec/encoder.h"
#include "coring/codec/error.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace coring::sbmp {
namespace {

std::vector<uint8_t> encode(const Frame& f, bool chk) {
  std::vector<uint8_t> out(kHeaderSize + kTrailerSize + f.extensions.bytes().size() +
                           f.payload_size());
  auto n = encode_frame(f, {.chk = chk}, absl::MakeSpan(out));
  EXPECT_TRUE(n.ok()) << n.status();
  out.resize(n.ok() ? *n : 0);
  return out;
}

std::string payload_of(const Frame& f) {
  std::string s(f.payload.begin(), f.payload.end());
  s.append(f.payload_tail.begin(), f.payload_tail.end());
  return s;
}

bool inside(absl::Span<const uint8_t> part, absl::Span<const uint8_t> in) {
  return part.data() >= in.data() && part.data() + part.size() <= in.data() + in.size();
}

struct Fixture {
  std::string payload = std::string(1000, 'p');
  ExtensionBuilder ext;
  std::vector<uint8_t> wire;
  explicit Fixture(bool chk, uint16_t type = 0x100) {
    for (size_t i = 0; i < payload.size(); ++i) payload[i] = static_cast<char>('a' + i % 26);
    ext.set_request_id(7);
    wire = encode(make_frame(type, testing::as_bytes(payload), ext.view()), chk);
  }
  size_t payload_at() const { return kHeaderSize + ext.view().bytes().size(); }
};

TEST(SplitPayloadTest, AFrameAcrossTwoInputsIsTwoViewsOfThem) {
  for (bool chk : {false, true}) {
    SCOPED_TRACE(chk ? "CHK" : "no CHK");
    Fixture fx(chk);
    const size_t cut = fx.payload_at() + 300;  // inside the payload
    Decoder d;
    d.set_split_payloads(64 * 1024);
    absl::Span<const uint8_t> first = absl::MakeConstSpan(fx.wire).first(cut);
    absl::Span<const uint8_t> second = absl::MakeConstSpan(fx.wire).subspan(cut);
    absl::Span<const uint8_t> a = first, b = second;
    auto none = d.next(a);
    ASSERT_TRUE(none.ok());
    EXPECT_FALSE(none->has_value());
    EXPECT_TRUE(a.empty());
    EXPECT_TRUE(d.holds_input());
    EXPECT_TRUE(d.mid_frame());
    EXPECT_EQ(d.buffer_bytes(), 0u);  // nothing copied
    absl::Span<const uint8_t> nothing;
    auto still = d.next(nothing);  // no input: it waits, still copying nothing
    ASSERT_TRUE(still.ok());
    EXPECT_FALSE(still->has_value());
    EXPECT_TRUE(d.holds_input());
    EXPECT_EQ(d.buffer_bytes(), 0u);

    auto f = d.next(b);
    ASSERT_TRUE(f.ok()) << f.status();
    ASSERT_TRUE(f->has_value());
    EXPECT_FALSE(d.holds_input());
    EXPECT_FALSE(d.mid_frame());
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(d.buffer_bytes(), 0u);
    const Frame& frame = **f;
    EXPECT_EQ(payload_of(frame), fx.payload);
    EXPECT_EQ(frame.payload.size(), 300u);
    EXPECT_TRUE(inside(frame.payload, first));
    EXPECT_TRUE(inside(frame.payload_tail, second));
    EXPECT_TRUE(inside(frame.extensions.bytes(), first));
    EXPECT_EQ(frame.extensions.request_id(), 7u);
    EXPECT_EQ(frame.offset, 0u);
    EXPECT_EQ(d.offset(), fx.wire.size());
  }
}

TEST(SplitPayloadTest, OnlyACutInsideThePayloadWithTheWholeTrailerAfterItSplits) {
  for (bool chk : {false, true}) {
    Fixture fx(chk);
    for (size_t cut = 1; cut < fx.wire.size(); ++cut) {
      SCOPED_TRACE("cut " + std::to_string(cut) + (chk ? " CHK" : ""));
      Decoder d;
      d.set_split_payloads(64 * 1024);
      absl::Span<const uint8_t> a = absl::MakeConstSpan(fx.wire).first(cut);
      absl::Span<const uint8_t> b = absl::MakeConstSpan(fx.wire).subspan(cut);
      ASSERT_TRUE(d.next(a).ok());
      const bool splits = cut > fx.payload_at() && cut < fx.wire.size() - (chk ? kTrailerSize : 0);
      EXPECT_EQ(d.holds_input(), splits);
      auto f = d.next(b);
      ASSERT_TRUE(f.ok() && f->has_value()) << f.status();
      EXPECT_EQ(payload_of(**f), fx.payload);
      EXPECT_EQ((*f)->payload_tail.empty(), !splits);
    }
  }
}

TEST(SplitPayloadTest, OffByDefaultAndOverTheLimit) {
  Fixture fx(false);
  const size_t cut = fx.payload_at() + 10;
  for (size_t max_rest : {size_t{0}, fx.wire.size() - cut - 1}) {
    Decoder d;
    d.set_split_payloads(max_rest);
    absl::Span<const uint8_t> a = absl::MakeConstSpan(fx.wire).first(cut);
    absl::Span<const uint8_t> b = absl::MakeConstSpan(fx.wire).subspan(cut);
    ASSERT_TRUE(d.next(a).ok());
    EXPECT_FALSE(d.holds_input());
    EXPECT_GT(d.buffer_bytes(), 0u);  // copied
    auto f = d.next(b);
    ASSERT_TRUE(f.ok() && f->has_value());
    EXPECT_TRUE((*f)->payload_tail.empty());
    EXPECT_EQ(payload_of(**f), fx.payload);
  }
}

TEST(SplitPayloadTest, AFrameOverThreeInputsIsReassembledAfterAll) {
  Fixture fx(true);
  const size_t cut1 = fx.payload_at() + 100, cut2 = cut1 + 200;
  Decoder d;
  d.set_split_payloads(64 * 1024);
  absl::Span<const uint8_t> a = absl::MakeConstSpan(fx.wire).first(cut1);
  absl::Span<const uint8_t> b = absl::MakeConstSpan(fx.wire).subspan(cut1, cut2 - cut1);
  absl::Span<const uint8_t> c = absl::MakeConstSpan(fx.wire).subspan(cut2);
  ASSERT_TRUE(d.next(a).ok());
  EXPECT_TRUE(d.holds_input());
  auto none = d.next(b);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_FALSE(d.holds_input());  // the first input's bytes were copied: it may go
  EXPECT_TRUE(d.mid_frame());
  EXPECT_TRUE(b.empty());
  auto f = d.next(c);
  ASSERT_TRUE(f.ok() && f->has_value()) << f.status();
  EXPECT_TRUE((*f)->payload_tail.empty());
  EXPECT_EQ(payload_of(**f), fx.payload);
  EXPECT_TRUE(d.owns((*f)->payload.data()));
}

TEST(SplitPayloadTest, AChecksumMismatchInEitherPartIsFound) {
  Fixture fx(true);
  const size_t cut = fx.payload_at() + 500;
  for (size_t flip : {fx.payload_at() + 1, cut + 1, fx.wire.size() - 1}) {
    SCOPED_TRACE(flip);
    std::vector<uint8_t> wire = fx.wire;
    wire[flip] ^= 0x20;
    Decoder d;
    d.set_split_payloads(64 * 1024);
    absl::Span<const uint8_t> a = absl::MakeConstSpan(wire).first(cut);
    absl::Span<const uint8_t> b = absl::MakeConstSpan(wire).subspan(cut);
    ASSERT_TRUE(d.next(a).ok());
    ASSERT_TRUE(d.holds_input());
    auto f = d.next(b);
    ASSERT_FALSE(f.ok());
    std::optional<FrameError> e = frame_error(f.status());
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->code, ErrorCode::kPayloadChecksum);
    EXPECT_EQ(e->offset, 0u);
    EXPECT_FALSE(d.holds_input());
  }
}

TEST(SplitPayloadTest, ControlFramesAreNeverSplit) {
  Fixture fx(false, kTypePing);
  const size_t cut = fx.payload_at() + 10;
  Decoder d;
  d.set_split_payloads(64 * 1024);
  absl::Span<const uint8_t> a = absl::MakeConstSpan(fx.wire).first(cut);
  absl::Span<const uint8_t> b = absl::MakeConstSpan(fx.wire).subspan(cut);
  ASSERT_TRUE(d.next(a).ok());
  EXPECT_FALSE(d.holds_input());
  auto f = d.next(b);
  ASSERT_TRUE(f.ok() && f->has_value());
  EXPECT_TRUE((*f)->payload_tail.empty());
}

// What a split frame is sent as: the same bytes as its payload in one piece,
// the trailer's CRC over both parts.
TEST(SplitPayloadTest, EncodingASplitFrameSendsBothPartsInOrder) {
  for (bool chk : {false, true}) {
    const std::string whole = "0123456789abcdefghij";
    ExtensionBuilder ext;
    ext.set_request_id(3);
    Frame one = make_frame(0x123, testing::as_bytes(whole), ext.view());
    Frame two = one;
    two.payload = one.payload.first(7);
    two.payload_tail = one.payload.subspan(7);
    const std::vector<uint8_t> want = encode(one, chk);
    EXPECT_EQ(encode(two, chk), want);
    EncodedFrame encoded;
    ASSERT_TRUE(encode_frame(two, {.chk = chk}, encoded).ok());
    std::vector<uint8_t> sent;
    for (absl::Span<const uint8_t> p : encoded.parts()) sent.insert(sent.end(), p.begin(), p.end());
    EXPECT_EQ(sent, want);
    EXPECT_EQ(encoded.parts().size(), chk ? 5u : 4u);
    EXPECT_EQ(encoded.size(), want.size());
  }
}

TEST(SplitPayloadTest, CopyFrameJoinsTheParts) {
  const std::string whole = "split payload, copied whole";
  Frame f = make_frame(0x100, testing::as_bytes(whole));
  f.payload = testing::as_bytes(whole).first(5);
  f.payload_tail = testing::as_bytes(whole).subspan(5);
  std::vector<uint8_t> storage;
  Frame copy = Codec::copy_frame(f, storage);
  EXPECT_EQ(payload_of(copy), whole);
  EXPECT_TRUE(copy.payload_tail.empty());
}

}  // namespace
}  // namespace coring::sbmp
