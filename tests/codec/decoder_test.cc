#include "coring/codec/decoder.h"

#include <algorithm>
#include <optional>
#include <string>
#include <tuple>
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

// next_whole() takes what next() would for a whole application frame, and
// declines everything else without consuming or failing: next() then
// decides.
TEST(DecoderTest, NextWholeTakesWholeApplicationFramesOnly) {
  auto a = make(0x100, "hello");
  auto b = make(0x101, "world", true);
  auto ping = make(kTypePing, "p");
  std::vector<uint8_t> stream = a;
  stream.insert(stream.end(), b.begin(), b.end());
  stream.insert(stream.end(), ping.begin(), ping.end());
  Decoder d;
  absl::Span<const uint8_t> in(stream);
  Frame f;
  ASSERT_TRUE(d.next_whole(in, f));
  EXPECT_EQ(f.type(), 0x100);
  EXPECT_EQ(f.wire, stream.data());
  EXPECT_EQ(f.payload.data(), stream.data() + kHeaderSize);
  EXPECT_EQ(f.offset, 0u);
  ASSERT_TRUE(d.next_whole(in, f));
  EXPECT_EQ(f.type(), 0x101);
  EXPECT_TRUE(f.chk());
  EXPECT_EQ(f.offset, a.size());
  EXPECT_EQ(testing::to_hex(f.payload), testing::to_hex(testing::as_bytes("world")));
  // A control frame is next()'s.
  EXPECT_FALSE(d.next_whole(in, f));
  EXPECT_EQ(in.size(), ping.size());
  auto p = d.next(in);
  ASSERT_TRUE(p.ok() && p->has_value());
  EXPECT_EQ((*p)->type(), kTypePing);
  EXPECT_EQ(d.offset(), stream.size());

  // A frame not all here, and then the rest of it while next() holds its
  // start: declined.
  Decoder d2;
  absl::Span<const uint8_t> head = absl::MakeConstSpan(a).first(10);
  EXPECT_FALSE(d2.next_whole(head, f));
  EXPECT_EQ(head.size(), 10u);
  ASSERT_TRUE(d2.next(head).ok());
  absl::Span<const uint8_t> rest = absl::MakeConstSpan(a).subspan(10);
  EXPECT_FALSE(d2.next_whole(rest, f));
  auto whole = d2.next(rest);
  ASSERT_TRUE(whole.ok() && whole->has_value());
  EXPECT_EQ((*whole)->type(), 0x100);
  // Between frames again: taken.
  absl::Span<const uint8_t> again(b);
  ASSERT_TRUE(d2.next_whole(again, f));
  EXPECT_EQ(f.offset, a.size());
}

// next_whole(input, make) asks make() for the frame to set only when it has
// one: a declined frame (a control frame, a bad checksum, a partial one)
// makes nothing, and what is made gets every field, none left as default.
TEST(DecoderTest, NextWholeMakesTheFrameOnlyWhenItHasOne) {
  auto a = make(0x100, "hello", true);
  auto ping = make(kTypePing, "p");
  std::vector<uint8_t> bad = a;
  bad[14] ^= 1;  // the header checksum
  int made = 0;
  std::optional<Frame> out;
  auto maker = [&]() -> Frame& {
    ++made;
    // Every field something the decoder must overwrite.
    Frame& f = out.emplace();
    f.header = Header{.version = 0x20, .flags = 0xff, .type = 1, .length = 9, .ext_len = 7};
    f.extensions = Extensions(absl::MakeConstSpan(ping));
    f.payload_tail = absl::MakeConstSpan(ping);
    f.offset = 1234;
    f.wire = ping.data();
    return f;
  };
  for (const std::vector<uint8_t>* declined : {&ping, &bad}) {
    Decoder d;
    absl::Span<const uint8_t> in(*declined);
    EXPECT_FALSE(d.next_whole(in, maker));
    absl::Span<const uint8_t> part = absl::MakeConstSpan(a).first(a.size() - 1);
    EXPECT_FALSE(d.next_whole(part, maker));
  }
  EXPECT_EQ(made, 0);
  EXPECT_FALSE(out.has_value());

  Decoder d;
  absl::Span<const uint8_t> in(a);
  ASSERT_TRUE(d.next_whole(in, maker));
  EXPECT_EQ(made, 1);
  EXPECT_TRUE(in.empty());
  Decoder check;
  absl::Span<const uint8_t> again(a);
  auto expected = check.next(again);
  ASSERT_TRUE(expected.ok() && expected->has_value());
  EXPECT_EQ(out->header, (*expected)->header);
  EXPECT_EQ(out->extensions.bytes().size(), 0u);
  EXPECT_EQ(out->payload.data(), (*expected)->payload.data());
  EXPECT_EQ(out->payload.size(), (*expected)->payload.size());
  EXPECT_TRUE(out->payload_tail.empty());
  EXPECT_EQ(out->offset, 0u);
  EXPECT_EQ(out->wire, a.data());
}

TEST(DecoderTest, NextWholeLeavesErrorsToNext) {
  auto good = make(0x100, "hello", true);
  std::vector<uint8_t> bad_trailer = good;
  bad_trailer[bad_trailer.size() - 1] ^= 1;
  std::vector<uint8_t> bad_hcrc = good;
  bad_hcrc[14] ^= 1;
  const std::vector<uint8_t> truncated_tlv = {0x05};  // a kind without its length
  std::vector<uint8_t> bad_ext = make(0x100, "x", false, Extensions(truncated_tlv));
  for (const auto& [what, bytes, code] :
       {std::tuple{"trailer", bad_trailer, ErrorCode::kPayloadChecksum},
        std::tuple{"hcrc", bad_hcrc, ErrorCode::kHeaderChecksum},
        std::tuple{"extensions", bad_ext, ErrorCode::kBadExtension}}) {
    SCOPED_TRACE(what);
    Decoder d;
    absl::Span<const uint8_t> in(bytes);
    Frame f;
    EXPECT_FALSE(d.next_whole(in, f));
    EXPECT_EQ(in.size(), bytes.size());
    EXPECT_FALSE(d.failed());
    auto next = d.next(in);
    ASSERT_FALSE(next.ok());
    ASSERT_TRUE(frame_error(next.status()).has_value());
    EXPECT_EQ(frame_error(next.status())->code, code);
    // Failed: declined from now on.
    absl::Span<const uint8_t> fine(good);
    EXPECT_FALSE(d.next_whole(fine, f));
  }
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

// ---- Receiving the rest of a split frame in place (lend_buffer()) ----

// A payload whose every byte depends on its position (and `seed`): a byte
// received out of place, or twice, changes it.
std::string pattern(size_t n, int seed) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>((i * 31 + i / 251 + seed) & 0xFF);
  return s;
}

std::string as_string(absl::Span<const uint8_t> bytes) {
  return std::string(bytes.begin(), bytes.end());
}

std::vector<uint8_t> concat(std::initializer_list<const std::vector<uint8_t>*> parts) {
  std::vector<uint8_t> out;
  for (const auto* part : parts) out.insert(out.end(), part->begin(), part->end());
  return out;
}

// Plays the transport that receives in place: lends the decoder's buffer for
// `want` more bytes of the frame, puts `bytes` at the offset it says (the
// bytes received so far being there already) and gives it back. Returns the
// room lent.
size_t receive_in_place(Decoder& d, size_t want, absl::Span<const uint8_t> bytes) {
  std::vector<uint8_t> out;
  size_t offset = ~size_t{0};
  const size_t received = d.frame_received();
  const size_t room = d.lend_buffer(want, out, offset);
  EXPECT_TRUE(d.lent());
  EXPECT_EQ(offset, received);
  EXPECT_LE(bytes.size(), room);
  EXPECT_LE(offset + room, out.size());
  const size_t n = std::min({bytes.size(), room, out.size() - std::min(offset, out.size())});
  std::copy_n(bytes.begin(), n, out.begin() + offset);
  d.return_buffer(std::move(out), n);
  EXPECT_FALSE(d.lent());
  return room;
}

// The case the feature is for: a large frame's first bytes come through
// next(), the rest of it and the next frame's header in one receive into the
// lent buffer. The frame comes back from next() with no input, where it was
// received; the header received past it is the next frame's start.
TEST(DecoderTest, LentBufferTakesTheRestOfTheFrameAndTheNextHeader) {
  const std::string big = pattern(64 * 1024, 1);
  const std::string small = pattern(300, 7);
  const std::vector<uint8_t> a = make(0x100, big, true);
  const std::vector<uint8_t> b = make(0x101, small, true);
  const std::vector<uint8_t> stream = concat({&a, &b});
  Decoder d;
  absl::Span<const uint8_t> in = absl::MakeConstSpan(stream).subspan(0, 1000);
  auto r = d.next(in);
  ASSERT_TRUE(r.ok() && !r->has_value());
  EXPECT_TRUE(in.empty());
  const size_t remaining = a.size() - 1000;
  EXPECT_EQ(d.frame_remaining(), remaining);
  EXPECT_EQ(d.frame_received(), 1000u);

  std::vector<uint8_t> out;
  size_t offset = 0;
  const size_t room = d.lend_buffer(remaining, out, offset);
  EXPECT_EQ(room, remaining + kHeaderSize);  // the rest, and the next header
  EXPECT_EQ(offset, 1000u);
  EXPECT_TRUE(d.lent());
  ASSERT_GE(out.size(), offset + room);
  // The bytes received so far are in it already; one receive fills the room.
  EXPECT_TRUE(std::equal(stream.begin(), stream.begin() + 1000, out.begin()));
  std::copy_n(stream.begin() + 1000, room, out.begin() + offset);
  const uint8_t* const memory = out.data();
  d.return_buffer(std::move(out), room);
  EXPECT_FALSE(d.lent());
  EXPECT_EQ(d.pending_input(), kHeaderSize);
  EXPECT_EQ(d.frame_remaining(), 0u);
  EXPECT_TRUE(d.mid_frame());

  absl::Span<const uint8_t> none;
  auto f1 = d.next(none);
  ASSERT_TRUE(f1.ok()) << f1.status();
  ASSERT_TRUE(f1->has_value());
  EXPECT_EQ((*f1)->type(), 0x100);
  EXPECT_TRUE((*f1)->chk());
  EXPECT_EQ((*f1)->offset, 0u);
  EXPECT_EQ((*f1)->payload.data(), memory + kHeaderSize);  // where it was received: no copy
  EXPECT_EQ((*f1)->payload.size(), big.size());
  EXPECT_TRUE(as_string((*f1)->payload) == big);
  EXPECT_EQ(d.offset(), a.size());
  // The next frame's header is held, not decoded yet.
  EXPECT_EQ(d.pending_input(), kHeaderSize);
  EXPECT_TRUE(d.mid_frame());

  in = absl::MakeConstSpan(stream).subspan(a.size() + kHeaderSize);
  auto f2 = d.next(in);
  ASSERT_TRUE(f2.ok()) << f2.status();
  ASSERT_TRUE(f2->has_value());
  EXPECT_EQ((*f2)->type(), 0x101);
  EXPECT_TRUE((*f2)->chk());
  EXPECT_EQ((*f2)->offset, a.size());
  EXPECT_EQ(as_string((*f2)->payload), small);
  EXPECT_TRUE(in.empty());
  EXPECT_EQ(d.offset(), stream.size());
  EXPECT_EQ(d.pending_input(), 0u);
  EXPECT_FALSE(d.mid_frame());
  auto end = d.next(in);
  ASSERT_TRUE(end.ok());
  EXPECT_FALSE(end->has_value());
}

// frame_remaining() is 0 until the header is in; a lend of less than the
// rest gives exactly that room; returns of fewer bytes than lent, or none,
// leave the frame under way; the last bytes may come through next().
TEST(DecoderTest, PartialReturnsOfTheLentBufferCompleteTheFrameLater) {
  const std::string payload = pattern(40000, 3);
  const std::vector<uint8_t> a = make(0x100, payload, true);
  const std::vector<uint8_t> b = make(0x102, "after");
  Decoder d;
  absl::Span<const uint8_t> in = absl::MakeConstSpan(a).subspan(0, 10);
  ASSERT_TRUE(d.next(in).ok());
  EXPECT_EQ(d.frame_received(), 10u);
  EXPECT_EQ(d.frame_remaining(), 0u);  // the header is not in: nothing to lend for
  in = absl::MakeConstSpan(a).subspan(10, 990);
  ASSERT_TRUE(d.next(in).ok());
  size_t at = 1000;
  ASSERT_EQ(d.frame_remaining(), a.size() - at);

  // Half the rest lent, all of it received.
  const size_t half = d.frame_remaining() / 2;
  EXPECT_EQ(receive_in_place(d, half, absl::MakeConstSpan(a).subspan(at, half)), half);
  at += half;
  EXPECT_EQ(d.frame_received(), at);
  EXPECT_EQ(d.frame_remaining(), a.size() - at);
  EXPECT_EQ(d.pending_input(), 0u);
  absl::Span<const uint8_t> none;
  auto r = d.next(none);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->has_value());
  EXPECT_TRUE(d.mid_frame());
  EXPECT_EQ(d.offset(), 0u);

  // The rest lent (with room for a header), 100 bytes short of it received.
  const size_t rest = d.frame_remaining();
  EXPECT_EQ(receive_in_place(d, rest, absl::MakeConstSpan(a).subspan(at, rest - 100)),
            rest + kHeaderSize);
  at += rest - 100;
  EXPECT_EQ(d.frame_received(), at);
  EXPECT_EQ(d.frame_remaining(), 100u);
  EXPECT_EQ(d.pending_input(), 0u);
  r = d.next(none);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());

  // A lend that receives nothing changes nothing.
  EXPECT_EQ(receive_in_place(d, 100, {}), 100u + kHeaderSize);
  EXPECT_EQ(d.frame_received(), at);
  EXPECT_EQ(d.frame_remaining(), 100u);
  r = d.next(none);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());

  // The last 100 bytes come through next(), the next frame behind them.
  std::vector<uint8_t> tail(a.end() - 100, a.end());
  tail.insert(tail.end(), b.begin(), b.end());
  in = absl::MakeConstSpan(tail);
  auto f = d.next(in);
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE(f->has_value());
  EXPECT_EQ((*f)->offset, 0u);
  EXPECT_TRUE(as_string((*f)->payload) == payload);
  EXPECT_EQ(in.size(), b.size());
  auto g = d.next(in);
  ASSERT_TRUE(g.ok() && g->has_value());
  EXPECT_EQ((*g)->payload.data(), tail.data() + 100 + kHeaderSize);  // whole: a view again
  EXPECT_EQ((*g)->offset, a.size());
  EXPECT_FALSE(d.mid_frame());
}

// While the buffer is lent next() refuses, consuming nothing, and the
// decoder has not failed: once the buffer is back, decoding goes on.
// buffer_bytes() counts the buffer while it is out.
TEST(DecoderTest, NextRefusesWhileTheBufferIsLentWithoutFailing) {
  const std::string payload = pattern(20000, 5);
  const std::vector<uint8_t> a = make(0x100, payload);
  const std::vector<uint8_t> b = make(0x101, "next");
  Decoder d;
  absl::Span<const uint8_t> in = absl::MakeConstSpan(a).subspan(0, 5000);
  ASSERT_TRUE(d.next(in).ok());
  const size_t want = d.frame_remaining();
  ASSERT_EQ(want, a.size() - 5000);

  std::vector<uint8_t> out;
  size_t offset = 0;
  const size_t room = d.lend_buffer(want, out, offset);
  ASSERT_EQ(room, want + kHeaderSize);
  const size_t lent_capacity = out.capacity();
  EXPECT_TRUE(d.lent());
  EXPECT_EQ(d.buffer_bytes(), lent_capacity);
  EXPECT_GE(d.buffer_bytes(), 5000 + want);
  EXPECT_TRUE(d.mid_frame());

  absl::Span<const uint8_t> other(b);
  auto refused = d.next(other);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(frame_error(refused.status()).has_value());  // not a protocol error
  EXPECT_EQ(other.size(), b.size());                        // nothing consumed
  absl::Span<const uint8_t> none;
  EXPECT_EQ(d.next(none).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(d.failed());
  EXPECT_TRUE(d.lent());

  std::copy_n(a.begin() + 5000, want, out.begin() + offset);
  d.return_buffer(std::move(out), want);  // exactly the rest: nothing past it
  EXPECT_FALSE(d.lent());
  EXPECT_EQ(d.buffer_bytes(), lent_capacity);
  EXPECT_EQ(d.pending_input(), 0u);
  auto f = d.next(other);  // the frame completed in place; `other` is left alone
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE(f->has_value());
  EXPECT_TRUE(as_string((*f)->payload) == payload);
  EXPECT_EQ(other.size(), b.size());
  auto g = d.next(other);
  ASSERT_TRUE(g.ok() && g->has_value());
  EXPECT_EQ((*g)->payload.data(), b.data() + kHeaderSize);
  EXPECT_EQ((*g)->offset, a.size());
  EXPECT_TRUE(other.empty());
  EXPECT_FALSE(d.failed());
  EXPECT_FALSE(d.mid_frame());
}

// A frame all in its header (length 0) received past a frame in place is a
// whole frame: the next call returns it without taking any of its input.
TEST(DecoderTest, CarriedHeaderOfAnEmptyFrameIsReturnedWhole) {
  const std::string payload = pattern(30000, 9);
  const std::vector<uint8_t> a = make(0x100, payload);
  const std::vector<uint8_t> empty = make(0x105, "");
  ASSERT_EQ(empty.size(), kHeaderSize);
  const std::vector<uint8_t> c = make(0x106, "third");
  const std::vector<uint8_t> stream = concat({&a, &empty});
  Decoder d;
  absl::Span<const uint8_t> in = absl::MakeConstSpan(stream).subspan(0, 2000);
  ASSERT_TRUE(d.next(in).ok());
  const size_t rest = d.frame_remaining();
  receive_in_place(d, rest, absl::MakeConstSpan(stream).subspan(2000));
  EXPECT_EQ(d.pending_input(), kHeaderSize);

  in = absl::MakeConstSpan(c);
  auto f1 = d.next(in);
  ASSERT_TRUE(f1.ok() && f1->has_value());
  EXPECT_TRUE(as_string((*f1)->payload) == payload);
  EXPECT_EQ(in.size(), c.size());
  auto f2 = d.next(in);
  ASSERT_TRUE(f2.ok()) << f2.status();
  ASSERT_TRUE(f2->has_value());
  EXPECT_EQ((*f2)->type(), 0x105);
  EXPECT_TRUE((*f2)->payload.empty());
  EXPECT_EQ((*f2)->offset, a.size());
  EXPECT_EQ(in.size(), c.size());  // the caller's input untouched
  EXPECT_EQ(d.pending_input(), 0u);
  EXPECT_FALSE(d.mid_frame());
  EXPECT_EQ(d.offset(), a.size() + kHeaderSize);
  auto f3 = d.next(in);
  ASSERT_TRUE(f3.ok() && f3->has_value());
  EXPECT_EQ((*f3)->payload.data(), c.data() + kHeaderSize);
  EXPECT_EQ((*f3)->offset, a.size() + kHeaderSize);
  EXPECT_TRUE(in.empty());
}

// Fewer than 16 bytes received past the frame: the next header is completed
// from next()'s input, even a few bytes at a time.
TEST(DecoderTest, ShortCarryIsCompletedByTheNextInput) {
  const std::string payload_a = pattern(30000, 11);
  const std::string payload_b = pattern(500, 13);
  const std::vector<uint8_t> a = make(0x100, payload_a, true);
  const std::vector<uint8_t> b = make(0x101, payload_b, true);
  const std::vector<uint8_t> stream = concat({&a, &b});
  Decoder d;
  absl::Span<const uint8_t> in = absl::MakeConstSpan(stream).subspan(0, 3000);
  ASSERT_TRUE(d.next(in).ok());
  const size_t rest = d.frame_remaining();
  receive_in_place(d, rest, absl::MakeConstSpan(stream).subspan(3000, rest + 5));
  EXPECT_EQ(d.pending_input(), 5u);

  in = absl::MakeConstSpan(stream).subspan(a.size() + 5, 4);
  auto f1 = d.next(in);
  ASSERT_TRUE(f1.ok() && f1->has_value());
  EXPECT_TRUE(as_string((*f1)->payload) == payload_a);
  EXPECT_EQ(in.size(), 4u);
  EXPECT_TRUE(d.mid_frame());
  auto r = d.next(in);  // 5 carried + 4: the header is not complete yet
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->has_value());
  EXPECT_TRUE(in.empty());
  EXPECT_EQ(d.pending_input(), 0u);
  EXPECT_EQ(d.frame_received(), 9u);
  EXPECT_EQ(d.frame_remaining(), 0u);
  EXPECT_TRUE(d.mid_frame());
  in = absl::MakeConstSpan(stream).subspan(a.size() + 9);
  auto f2 = d.next(in);
  ASSERT_TRUE(f2.ok()) << f2.status();
  ASSERT_TRUE(f2->has_value());
  EXPECT_EQ((*f2)->type(), 0x101);
  EXPECT_EQ(as_string((*f2)->payload), payload_b);
  EXPECT_EQ((*f2)->offset, a.size());
  EXPECT_TRUE(in.empty());
  EXPECT_EQ(d.offset(), stream.size());
  EXPECT_FALSE(d.mid_frame());
}

// A bad next header received past a frame in place: the frame before it is
// still returned, then the next call reports the header's error at the next
// frame's offset, as for the same bytes given to next(); errors stay final.
TEST(DecoderTest, BadCarriedHeaderIsAFrameErrorAtItsOffset) {
  const std::vector<uint8_t> a = make(0x100, pattern(30000, 2));
  struct Case {
    size_t byte;   // of the next header, corrupted
    size_t carry;  // its bytes received past the frame
    FrameError error;
  };
  const Case cases[] = {
      {0, kHeaderSize, {ErrorCode::kBadMagic, a.size(), ErrorField::kMagic}},
      {1, 2, {ErrorCode::kBadMagic, a.size(), ErrorField::kMagic}},  // seen before 16 bytes
      {14, kHeaderSize, {ErrorCode::kHeaderChecksum, a.size(), ErrorField::kHcrc}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(::testing::Message() << "byte " << c.byte << ", carry " << c.carry);
    std::vector<uint8_t> b = make(0x101, "bad");
    b[c.byte] ^= 0x20;
    const std::vector<uint8_t> stream = concat({&a, &b});
    Decoder d;
    absl::Span<const uint8_t> in = absl::MakeConstSpan(stream).subspan(0, 1000);
    ASSERT_TRUE(d.next(in).ok());
    const size_t rest = d.frame_remaining();
    receive_in_place(d, rest, absl::MakeConstSpan(stream).subspan(1000, rest + c.carry));
    ASSERT_EQ(d.pending_input(), c.carry);
    absl::Span<const uint8_t> none;
    auto f = d.next(none);
    ASSERT_TRUE(f.ok()) << f.status();
    ASSERT_TRUE(f->has_value());
    EXPECT_EQ((*f)->offset, 0u);
    in = absl::MakeConstSpan(stream).subspan(a.size() + c.carry);
    auto r = d.next(in);
    ASSERT_FALSE(r.ok());
    auto e = frame_error(r.status());
    ASSERT_TRUE(e.has_value()) << r.status();
    EXPECT_EQ(*e, c.error);
    EXPECT_TRUE(d.failed());
    EXPECT_EQ(d.next(none).status(), r.status());
    // The same bytes given to next() get the same error.
    Decoder plain;
    absl::Span<const uint8_t> all(stream);
    ASSERT_TRUE(plain.next(all).ok());
    auto plain_error = plain.next(all);
    ASSERT_FALSE(plain_error.ok());
    EXPECT_EQ(frame_error(plain_error.status()), c.error);
  }
}

// A frame over kKeptBuffer received in place: once it has been handed out
// and the next frame has started from the carried header, the large buffer
// is released, as for a frame reassembled by next().
TEST(DecoderTest, LargeFrameReceivedInPlaceReleasesItsBufferAfterIt) {
  const std::string big = pattern(1 << 20, 4);
  const std::string small = pattern(100, 6);
  const std::vector<uint8_t> a = make(0x100, big);
  const std::vector<uint8_t> b = make(0x101, small);
  const std::vector<uint8_t> stream = concat({&a, &b});
  Decoder d;
  absl::Span<const uint8_t> in = absl::MakeConstSpan(stream).subspan(0, 16 * 1024);
  ASSERT_TRUE(d.next(in).ok());
  const size_t rest = d.frame_remaining();
  receive_in_place(d, rest, absl::MakeConstSpan(stream).subspan(16 * 1024, rest + kHeaderSize));
  EXPECT_GE(d.buffer_bytes(), a.size());
  absl::Span<const uint8_t> none;
  auto f1 = d.next(none);
  ASSERT_TRUE(f1.ok() && f1->has_value());
  EXPECT_TRUE(as_string((*f1)->payload) == big);
  in = absl::MakeConstSpan(stream).subspan(a.size() + kHeaderSize);
  auto f2 = d.next(in);
  ASSERT_TRUE(f2.ok()) << f2.status();
  ASSERT_TRUE(f2->has_value());
  EXPECT_EQ(as_string((*f2)->payload), small);
  EXPECT_EQ((*f2)->offset, a.size());
  EXPECT_LE(d.buffer_bytes(), Decoder::kKeptBuffer);
}

// A stream of 64 KiB frames received in place, one receive per frame after
// the first's start (the rest of the frame and the next header): every frame
// is received and returned in one buffer, kept throughout.
TEST(DecoderTest, StreamOfFramesReceivedInPlaceOneReceiveEach) {
  constexpr int kFrames = 8;
  std::vector<std::string> payloads;
  std::vector<uint8_t> stream;
  for (int i = 0; i < kFrames; ++i) {
    payloads.push_back(pattern(64 * 1024, i));
    auto f = make(static_cast<uint16_t>(0x100 + i), payloads.back());
    stream.insert(stream.end(), f.begin(), f.end());
  }
  const size_t frame_size = stream.size() / kFrames;
  Decoder d;
  absl::Span<const uint8_t> in = absl::MakeConstSpan(stream).subspan(0, 4096);
  ASSERT_TRUE(d.next(in).ok());
  size_t at = 4096;
  std::vector<const uint8_t*> memory;
  for (int i = 0; i < kFrames; ++i) {
    SCOPED_TRACE(i);
    const size_t rest = d.frame_remaining();
    ASSERT_EQ(rest, frame_size - d.frame_received());
    const size_t n = std::min(rest + kHeaderSize, stream.size() - at);
    EXPECT_EQ(receive_in_place(d, rest, absl::MakeConstSpan(stream).subspan(at, n)),
              rest + kHeaderSize);
    at += n;
    absl::Span<const uint8_t> none;
    auto f = d.next(none);
    ASSERT_TRUE(f.ok()) << f.status();
    ASSERT_TRUE(f->has_value());
    EXPECT_EQ((*f)->type(), 0x100 + i);
    EXPECT_EQ((*f)->offset, i * frame_size);
    EXPECT_TRUE(as_string((*f)->payload) == payloads[i]);
    memory.push_back((*f)->payload.data());
    if (i + 1 < kFrames) {
      ASSERT_EQ(d.pending_input(), kHeaderSize);
      auto r = d.next(none);  // the carried header starts the next frame
      ASSERT_TRUE(r.ok()) << r.status();
      EXPECT_FALSE(r->has_value());
      EXPECT_EQ(d.pending_input(), 0u);
      EXPECT_EQ(d.frame_received(), kHeaderSize);
    }
  }
  EXPECT_EQ(at, stream.size());
  EXPECT_FALSE(d.mid_frame());
  EXPECT_EQ(d.offset(), stream.size());
  for (const uint8_t* p : memory) EXPECT_EQ(p, memory[0]);  // one buffer throughout
  EXPECT_LE(d.buffer_bytes(), Decoder::kKeptBuffer);
}

// ---- The next frame's header received ahead (take_prefix()) ----

// Frames one at a time, each header received alone ahead of its frame: a
// large frame's rest then goes in place from its first payload byte, a
// header-only frame comes back whole, a short prefix is completed by the
// next input, and a bad one is the frame error it would be as input.
TEST(DecoderTest, HeaderReceivedAheadStartsTheNextFrame) {
  const std::string big = pattern(64 * 1024, 3);
  const std::vector<uint8_t> a = make(0x100, big);
  const std::vector<uint8_t> empty = make(0x102, "");
  const std::vector<uint8_t> c = make(0x103, pattern(700, 5), true);
  Decoder d;
  const uint8_t* kept = nullptr;
  for (int round = 0; round < 2; ++round) {  // the second with the buffer kept
    SCOPED_TRACE(round);
    d.take_prefix(absl::MakeConstSpan(a).first(kHeaderSize));
    EXPECT_TRUE(d.mid_frame());
    EXPECT_EQ(d.pending_input(), kHeaderSize);
    absl::Span<const uint8_t> none;
    auto r = d.next(none);
    ASSERT_TRUE(r.ok() && !r->has_value()) << r.status();
    EXPECT_EQ(d.frame_received(), kHeaderSize);
    ASSERT_EQ(d.frame_remaining(), a.size() - kHeaderSize);
    receive_in_place(d, d.frame_remaining(), absl::MakeConstSpan(a).subspan(kHeaderSize));
    auto f = d.next(none);
    ASSERT_TRUE(f.ok() && f->has_value()) << f.status();
    EXPECT_EQ((*f)->type(), 0x100);
    EXPECT_TRUE(as_string((*f)->payload) == big);
    if (round == 1) {
      EXPECT_EQ((*f)->payload.data(), kept);  // no allocation per frame
    }
    kept = (*f)->payload.data();
    EXPECT_FALSE(d.mid_frame());
  }
  // A frame that is all header.
  d.take_prefix(absl::MakeConstSpan(empty));
  absl::Span<const uint8_t> none;
  auto e = d.next(none);
  ASSERT_TRUE(e.ok() && e->has_value()) << e.status();
  EXPECT_EQ((*e)->type(), 0x102);
  EXPECT_TRUE((*e)->payload.empty());
  EXPECT_FALSE(d.mid_frame());
  // Ten bytes of a header: the next input completes it, and the frame.
  d.take_prefix(absl::MakeConstSpan(c).first(10));
  auto partial = d.next(none);
  ASSERT_TRUE(partial.ok() && !partial->has_value());
  EXPECT_EQ(d.frame_received(), 10u);
  absl::Span<const uint8_t> rest = absl::MakeConstSpan(c).subspan(10);
  auto g = d.next(rest);
  ASSERT_TRUE(g.ok() && g->has_value()) << g.status();
  EXPECT_EQ((*g)->type(), 0x103);
  EXPECT_TRUE((*g)->chk());
  EXPECT_EQ((*g)->offset, 2 * a.size() + empty.size());
  EXPECT_EQ(d.offset(), 2 * a.size() + empty.size() + c.size());
  // Nothing received ahead: nothing changes.
  d.take_prefix({});
  EXPECT_FALSE(d.mid_frame());
  // Not a header: the error next() gives for such input, at its offset.
  std::vector<uint8_t> bad = a;
  bad[0] = 'X';
  d.take_prefix(absl::MakeConstSpan(bad).first(kHeaderSize));
  auto b = d.next(none);
  ASSERT_FALSE(b.ok());
  ASSERT_TRUE(frame_error(b.status()).has_value()) << b.status();
  EXPECT_EQ(frame_error(b.status())->code, ErrorCode::kBadMagic);
  EXPECT_EQ(frame_error(b.status())->offset, d.offset());
}

}  // namespace
}  // namespace coring::sbmp
