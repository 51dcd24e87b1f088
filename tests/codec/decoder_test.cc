#include "coring/codec/decoder.h"

#include <algorithm>
#include <string>
#include <vector>

#include "coring/codec/encoder.h"
#include "coring/codec/error.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace coring::sbmp {
namespace {

std::vector<uint8_t> make(uint16_t type, const std::string& payload, bool chk = false,
                          Extensions ext = {}) {
  Frame f = make_frame(type, testing::as_bytes(payload), ext);
  std::vector<uint8_t> out(kHeaderSize + kTrailerSize + ext.bytes().size() + payload.size());
  auto n = encode_frame(f, {.chk = chk}, absl::MakeSpan(out));
  EXPECT_TRUE(n.ok());
  out.resize(*n);
  return out;
}

TEST(DecoderTest, ContiguousFrameIsAViewIntoTheInput) {
  auto a = make(0x100, "hello");
  auto b = make(0x101, "world", true);
  std::vector<uint8_t> stream = a;
  stream.insert(stream.end(), b.begin(), b.end());
  Decoder d;
  absl::Span<const uint8_t> in(stream);
  auto f1 = d.next(in);
  ASSERT_TRUE(f1.ok() && f1->has_value());
  EXPECT_EQ((*f1)->payload.data(), stream.data() + kHeaderSize);
  EXPECT_EQ((*f1)->type(), 0x100);
  auto f2 = d.next(in);
  ASSERT_TRUE(f2.ok() && f2->has_value());
  EXPECT_EQ((*f2)->payload.data(), stream.data() + a.size() + kHeaderSize);
  EXPECT_EQ((*f2)->offset, a.size());
  EXPECT_TRUE((*f2)->chk());
  EXPECT_TRUE(in.empty());
  auto none = d.next(in);
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
  EXPECT_FALSE(d.mid_frame());
  EXPECT_EQ(d.offset(), stream.size());
}

TEST(DecoderTest, BufferGrownForALargeSplitFrameIsReleasedAfterIt) {
  auto big = make(0x100, std::string(1 << 20, 'b'));
  auto small = make(0x100, std::string(100, 's'));
  Decoder d;
  size_t peak = 0;
  for (size_t at = 0; at < big.size(); at += 16 * 1024) {  // as 16 KiB reads
    absl::Span<const uint8_t> chunk =
        absl::MakeConstSpan(big).subspan(at, std::min<size_t>(16 * 1024, big.size() - at));
    auto r = d.next(chunk);
    ASSERT_TRUE(r.ok()) << r.status();
    peak = std::max(peak, d.buffer_bytes());
    if (r->has_value()) {
      EXPECT_EQ((*r)->payload.size(), 1u << 20);
    }
  }
  EXPECT_GE(peak, 1u << 20);
  EXPECT_LT(peak, 3u << 20);  // grown with the bytes received, doubling
  // The next frame (whole in its input) comes after the big one was handed out.
  absl::Span<const uint8_t> in(small);
  auto r = d.next(in);
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_LE(d.buffer_bytes(), Decoder::kKeptBuffer);
  // A small split frame keeps its (small) buffer for the next one.
  absl::Span<const uint8_t> half = absl::MakeConstSpan(small).subspan(0, 50);
  absl::Span<const uint8_t> other = absl::MakeConstSpan(small).subspan(50);
  ASSERT_TRUE(d.next(half).ok());
  auto again = d.next(other);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_GT(d.buffer_bytes(), 0u);
  EXPECT_LE(d.buffer_bytes(), Decoder::kKeptBuffer);
}

// 64 KiB messages read 16 KiB at a time: each frame is split. The buffer
// grows during the first one and is kept: every later frame reassembles in
// it (before, a 64 KiB frame was over the kept size, and every frame grew a
// new buffer: four allocations and three moves each).
TEST(DecoderTest, SplitFramesUpToTheKeptSizeReuseOneBuffer) {
  std::vector<uint8_t> stream;
  for (int i = 0; i < 8; ++i) {
    auto f = make(0x100, std::string(64 * 1024, static_cast<char>('a' + i)));
    stream.insert(stream.end(), f.begin(), f.end());
  }
  const size_t frame_size = stream.size() / 8;
  ASSERT_LE(frame_size, Decoder::kKeptBuffer);
  Decoder d;
  std::vector<const uint8_t*> payloads;
  for (size_t at = 0; at < stream.size(); at += 16 * 1024) {
    absl::Span<const uint8_t> chunk =
        absl::MakeConstSpan(stream).subspan(at, std::min<size_t>(16 * 1024, stream.size() - at));
    if (at == 0) {
      auto r = d.next(chunk);
      ASSERT_TRUE(r.ok() && !r->has_value());
      EXPECT_LT(d.buffer_bytes(), frame_size);  // what arrived, not what the header claims
    }
    for (;;) {
      auto r = d.next(chunk);
      ASSERT_TRUE(r.ok()) << r.status();
      if (!r->has_value()) break;
      ASSERT_EQ((*r)->payload.size(), 64u * 1024);
      EXPECT_EQ((*r)->payload[0], 'a' + payloads.size());
      payloads.push_back((*r)->payload.data());
    }
  }
  ASSERT_EQ(payloads.size(), 8u);
  for (const uint8_t* p : payloads) EXPECT_EQ(p, payloads[0]);  // one buffer throughout
  EXPECT_EQ(d.buffer_bytes(), frame_size);
}

// exchange_buffer(): the buffer a split frame was reassembled in goes to the
// caller, frame and all, and the next split frame is reassembled in the
// buffer given in exchange. A whole frame (a view into the input), or a
// buffer over kKeptBuffer, is not traded.
TEST(DecoderTest, ExchangeBufferTradesTheSplitFramesBuffer) {
  const std::vector<uint8_t> one = make(0x100, std::string(20000, 'x'));
  const std::vector<uint8_t> two = make(0x101, std::string(20000, 'y'));
  Decoder d;
  std::vector<uint8_t> given(one.size());
  const uint8_t* const given_memory = given.data();

  absl::Span<const uint8_t> in = absl::MakeConstSpan(one).subspan(0, 100);
  ASSERT_TRUE(d.next(in).ok());
  in = absl::MakeConstSpan(one).subspan(100);
  auto f1 = d.next(in);
  ASSERT_TRUE(f1.ok() && f1->has_value());
  const uint8_t* const payload = (*f1)->payload.data();
  EXPECT_FALSE(d.exchange_buffer(one.data() + kHeaderSize, given));  // not the decoder's
  ASSERT_TRUE(d.exchange_buffer(payload, given));
  EXPECT_GE(payload, given.data());  // the frame now lies in the buffer handed over
  EXPECT_LT(payload, given.data() + given.size());
  EXPECT_EQ(std::string(payload, payload + 20000), std::string(20000, 'x'));
  EXPECT_FALSE(d.owns(payload));

  in = absl::MakeConstSpan(two).subspan(0, 100);
  ASSERT_TRUE(d.next(in).ok());
  in = absl::MakeConstSpan(two).subspan(100);
  auto f2 = d.next(in);
  ASSERT_TRUE(f2.ok() && f2->has_value());
  EXPECT_EQ((*f2)->payload.data(), given_memory + kHeaderSize);  // reassembled in the one given
  EXPECT_EQ((*f2)->payload[0], 'y');

  in = absl::MakeConstSpan(one);
  auto whole = d.next(in);
  ASSERT_TRUE(whole.ok() && whole->has_value());
  std::vector<uint8_t> other;
  EXPECT_FALSE(d.exchange_buffer((*whole)->payload.data(), other));

  const std::vector<uint8_t> big = make(0x102, std::string(Decoder::kKeptBuffer, 'z'));
  in = absl::MakeConstSpan(big).subspan(0, 100);
  ASSERT_TRUE(d.next(in).ok());
  in = absl::MakeConstSpan(big).subspan(100);
  auto f3 = d.next(in);
  ASSERT_TRUE(f3.ok() && f3->has_value());
  EXPECT_FALSE(d.exchange_buffer((*f3)->payload.data(), other));
  EXPECT_TRUE(other.empty());
}

// A header claiming a frame the kept buffer would hold allocates no more
// than the bytes that came with it.
TEST(DecoderTest, HeaderAloneAllocatesOnlyWhatArrived) {
  auto frame = make(0x100, std::string(64 * 1024, 'h'));
  Decoder d;
  absl::Span<const uint8_t> first = absl::MakeConstSpan(frame).subspan(0, kHeaderSize + 1);
  auto r = d.next(first);
  ASSERT_TRUE(r.ok() && !r->has_value());
  EXPECT_TRUE(d.mid_frame());
  EXPECT_LE(d.buffer_bytes(), 2 * (kHeaderSize + 1));
}

TEST(DecoderTest, TrimFreesTheKeptBufferBetweenFramesOnly) {
  auto frame = make(0x100, std::string(1000, 'x'));
  Decoder d;
  absl::Span<const uint8_t> first = absl::MakeConstSpan(frame).subspan(0, 500);
  absl::Span<const uint8_t> rest = absl::MakeConstSpan(frame).subspan(500);
  ASSERT_TRUE(d.next(first).ok());
  ASSERT_TRUE(d.mid_frame());
  const size_t held = d.buffer_bytes();
  EXPECT_GT(held, 0u);
  d.trim();  // mid-frame: the bytes so far are kept
  EXPECT_EQ(d.buffer_bytes(), held);
  auto r = d.next(rest);
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->payload.size(), 1000u);
  EXPECT_GT(d.buffer_bytes(), 0u);  // kept for the next split frame...
  d.trim();
  EXPECT_EQ(d.buffer_bytes(), 0u);  // ...until trimmed
  // And the decoder goes on as before.
  first = absl::MakeConstSpan(frame).subspan(0, 10);
  rest = absl::MakeConstSpan(frame).subspan(10);
  ASSERT_TRUE(d.next(first).ok());
  auto again = d.next(rest);
  ASSERT_TRUE(again.ok() && again->has_value());
  EXPECT_EQ((*again)->offset, frame.size());
}

TEST(DecoderTest, SplitFrameIsReassembledOnlyWhenSplit) {
  auto a = make(0x100, std::string(1000, 'x'));
  auto b = make(0x100, "tail");
  std::vector<uint8_t> stream = a;
  stream.insert(stream.end(), b.begin(), b.end());
  Decoder d;
  absl::Span<const uint8_t> first = absl::MakeConstSpan(stream).subspan(0, 500);
  auto r = d.next(first);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  EXPECT_TRUE(first.empty());
  EXPECT_TRUE(d.mid_frame());
  absl::Span<const uint8_t> rest = absl::MakeConstSpan(stream).subspan(500);
  r = d.next(rest);
  ASSERT_TRUE(r.ok() && r->has_value());
  const uint8_t* p = (*r)->payload.data();
  EXPECT_FALSE(p >= stream.data() && p < stream.data() + stream.size());  // reassembled copy
  EXPECT_EQ((*r)->payload.size(), 1000u);
  r = d.next(rest);  // the next frame lies whole in `rest`: a view again
  ASSERT_TRUE(r.ok() && r->has_value());
  EXPECT_EQ((*r)->payload.data(), stream.data() + a.size() + kHeaderSize);
}

TEST(DecoderTest, OversizeLengthRejectedFromHeaderAlone) {
  auto big = make(0x100, std::string(2000, 'x'));
  Decoder d({.max_frame = 1024});
  absl::Span<const uint8_t> header = absl::MakeConstSpan(big).subspan(0, kHeaderSize);
  auto r = d.next(header);
  ASSERT_FALSE(r.ok());
  auto e = frame_error(r.status());
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, ErrorCode::kFrameTooLarge);
  EXPECT_EQ(e->field, ErrorField::kLength);
  // Errors are final.
  absl::Span<const uint8_t> more = absl::MakeConstSpan(big).subspan(kHeaderSize);
  EXPECT_EQ(d.next(more).status(), r.status());
  EXPECT_TRUE(d.failed());
}

TEST(DecoderTest, HugeLengthAllocatesOnlyWhatArrived) {
  // A receiver with the largest limit: a header announcing 4 GiB must not
  // make the decoder allocate 4 GiB before the body arrives.
  Header h{.type = 0x100, .length = 0xFFFFFFF0};
  std::vector<uint8_t> bytes(kHeaderSize + 100, 0);
  encode_header(h, bytes.data());
  Decoder d({.max_frame = 0xFFFFFFFF});
  absl::Span<const uint8_t> in(bytes);
  auto r = d.next(in);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  EXPECT_TRUE(d.mid_frame());
  Decoder strict;
  absl::Span<const uint8_t> in2(bytes);
  EXPECT_EQ(frame_error(strict.next(in2).status())->code, ErrorCode::kFrameTooLarge);
}

TEST(DecoderTest, EarlyBadMagic) {
  std::vector<uint8_t> http = {'G', 'E'};
  Decoder d;
  absl::Span<const uint8_t> in(http);
  auto r = d.next(in);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(frame_error(r.status())->code, ErrorCode::kBadMagic);
}

TEST(DecoderTest, IncompleteStream) {
  auto a = make(0x100, "abc");
  Decoder d;
  absl::Span<const uint8_t> in = absl::MakeConstSpan(a).subspan(0, a.size() - 1);
  auto r = d.next(in);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  EXPECT_TRUE(d.mid_frame());
  EXPECT_EQ(d.offset(), 0u);
}

TEST(DecoderTest, ErrorOffsetIsTheBadFramesStart) {
  auto a = make(0x100, "abc");
  auto b = make(0x100, "defg", true);
  b.back() ^= 1;  // trailer
  std::vector<uint8_t> stream = a;
  stream.insert(stream.end(), b.begin(), b.end());
  Decoder d;
  absl::Span<const uint8_t> in(stream);
  ASSERT_TRUE(d.next(in).ok());
  auto r = d.next(in);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(*frame_error(r.status()),
            (FrameError{ErrorCode::kPayloadChecksum, a.size(), ErrorField::kTrailer, false}));
}

TEST(DecoderTest, MaxFrameChangesApplyToLaterFrames) {
  auto a = make(0x100, std::string(100, 'a'));
  Decoder d;
  d.set_max_frame(99);
  absl::Span<const uint8_t> in(a);
  EXPECT_FALSE(d.next(in).ok());
  Decoder d2;
  d2.set_max_frame(100);
  absl::Span<const uint8_t> in2(a);
  EXPECT_TRUE(d2.next(in2).ok());
}

}  // namespace
}  // namespace coring::sbmp
