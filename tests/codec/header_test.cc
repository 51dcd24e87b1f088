#include "coring/codec/header.h"

#include <algorithm>
#include <random>
#include <vector>

#include "coring/codec/crc16.h"
#include "coring/codec/error.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace coring::sbmp {
namespace {

std::vector<uint8_t> encoded(const Header& h) {
  std::vector<uint8_t> out(kHeaderSize);
  encode_header(h, out.data());
  return out;
}

ErrorField field_of(const absl::StatusOr<Header>& h) {
  EXPECT_FALSE(h.ok());
  auto e = frame_error(h.status());
  EXPECT_TRUE(e.has_value());
  return e ? e->field : ErrorField::kNone;
}

TEST(HeaderTest, SpecExampleBytes) {
  auto bytes = encoded({.type = 0x0003, .length = 2});
  EXPECT_EQ(testing::to_hex(absl::MakeConstSpan(bytes).subspan(0, 14)),
            "53424d50130000030000000200"
            "00");
}

TEST(HeaderTest, RoundTrip) {
  Header h{.version = 0x1F, .flags = kFlagChk, .type = 0xBEEF, .length = 1000, .ext_len = 996};
  auto bytes = encoded(h);
  auto back = decode_header(bytes.data(), {}, 0);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(*back, h);
  EXPECT_EQ(back->payload_size(), 0u);
}

TEST(HeaderTest, RandomHeadersRoundTripWithSpecChecksum) {
  std::mt19937 rng(11);
  for (int i = 0; i < 5000; ++i) {
    Header h{.version = static_cast<uint8_t>(0x10 | (rng() & 0x0F)),
             .flags = static_cast<uint8_t>(rng() & kFlagChk),
             .type = static_cast<uint16_t>(rng()),
             .length = static_cast<uint32_t>(rng() % (kDefaultMaxFrame + 1))};
    if (h.chk() && h.length < kTrailerSize) h.length = kTrailerSize;
    const uint32_t room = h.length - (h.chk() ? kTrailerSize : 0);
    h.ext_len = static_cast<uint16_t>(rng() % (std::min<uint32_t>(room, 0xFFFF) + 1));
    auto bytes = encoded(h);
    ASSERT_EQ((bytes[14] << 8) | bytes[15], crc16_ccitt_false(absl::MakeConstSpan(bytes).first(14)))
        << i;
    auto back = decode_header(bytes.data(), {}, 0);
    ASSERT_TRUE(back.ok()) << back.status();
    ASSERT_EQ(*back, h);
  }
}

TEST(HeaderTest, EverySingleBitFlipIsRejected) {
  auto bytes = encoded({.flags = kFlagChk, .type = 0x1234, .length = 5000, .ext_len = 12});
  for (size_t bit = 0; bit < kHeaderSize * 8; ++bit) {
    auto b = bytes;
    b[bit / 8] ^= static_cast<uint8_t>(0x80 >> (bit % 8));
    EXPECT_EQ(field_of(decode_header(b.data(), {}, 0)),
              bit < 32 ? ErrorField::kMagic : ErrorField::kHcrc)
        << "bit " << bit;
  }
}

TEST(HeaderTest, ValidationOrderAndErrors) {
  Header good{.type = 0x100, .length = 10, .ext_len = 2};
  auto bytes = encoded(good);
  {  // bad magic beats everything, including a bad checksum
    auto b = bytes;
    b[0] = 'X';
    EXPECT_EQ(field_of(decode_header(b.data(), {}, 0)), ErrorField::kMagic);
  }
  {
    auto b = bytes;
    b[15] ^= 1;
    EXPECT_EQ(field_of(decode_header(b.data(), {}, 0)), ErrorField::kHcrc);
  }
  // With a valid checksum: version before flags before length before ext_len.
  EXPECT_EQ(
      field_of(decode_header(
          encoded({.version = 0x23, .flags = 2, .length = 1u << 30, .ext_len = 0xFFFF}).data(), {},
          0)),
      ErrorField::kVersion);
  EXPECT_EQ(field_of(decode_header(
                encoded({.flags = 0x82, .length = 1u << 30, .ext_len = 0xFFFF}).data(), {}, 0)),
            ErrorField::kFlags);
  EXPECT_EQ(field_of(decode_header(encoded({.length = 101, .ext_len = 0xFFFF}).data(),
                                   {.max_frame = 100}, 0)),
            ErrorField::kLength);
  EXPECT_EQ(field_of(decode_header(encoded({.length = 100, .ext_len = 101}).data(), {}, 0)),
            ErrorField::kExtLen);
  EXPECT_EQ(field_of(decode_header(encoded({.flags = kFlagChk, .length = 3}).data(), {}, 0)),
            ErrorField::kExtLen);
  EXPECT_EQ(field_of(decode_header(encoded({.flags = kFlagChk, .length = 10, .ext_len = 7}).data(),
                                   {}, 0)),
            ErrorField::kExtLen);
  EXPECT_TRUE(
      decode_header(encoded({.flags = kFlagChk, .length = 10, .ext_len = 6}).data(), {}, 0).ok());
  EXPECT_TRUE(
      decode_header(encoded({.length = 100, .ext_len = 100}).data(), {.max_frame = 100}, 0).ok());
}

// The limits at the ends of their types: the checks' arithmetic must not wrap.
TEST(HeaderTest, LimitsAtTheEndsOfTheirTypes) {
  constexpr uint32_t kMax = 0xFFFF'FFFF;
  EXPECT_TRUE(decode_header(encoded({.length = kMax}).data(), {.max_frame = kMax}, 0).ok());
  EXPECT_EQ(field_of(decode_header(encoded({.length = kMax}).data(), {.max_frame = kMax - 1}, 0)),
            ErrorField::kLength);
  EXPECT_TRUE(decode_header(encoded({.length = 0}).data(), {.max_frame = 0}, 0).ok());
  EXPECT_TRUE(
      decode_header(encoded({.flags = kFlagChk, .length = 0xFFFF + 4, .ext_len = 0xFFFF}).data(),
                    {}, 0)
          .ok());
  EXPECT_EQ(
      field_of(decode_header(
          encoded({.flags = kFlagChk, .length = 0xFFFF + 3, .ext_len = 0xFFFF}).data(), {}, 0)),
      ErrorField::kExtLen);
  EXPECT_EQ(field_of(decode_header(encoded({.flags = kFlagChk, .length = 0}).data(), {}, 0)),
            ErrorField::kExtLen);
  EXPECT_TRUE(decode_header(encoded({.flags = kFlagChk, .length = 4}).data(), {}, 0).ok());
  EXPECT_TRUE(
      decode_header(encoded({.length = kMax, .ext_len = 0xFFFF}).data(), {.max_frame = kMax}, 0)
          .ok());
  // Majors 0 and 15, the ends of the bit set.
  EXPECT_TRUE(decode_header(encoded({.version = 0xF3}).data(), {.majors = 0x8000}, 0).ok());
  EXPECT_EQ(field_of(decode_header(encoded({.version = 0xF3}).data(), {.majors = 0x7FFF}, 0)),
            ErrorField::kVersion);
  EXPECT_TRUE(decode_header(encoded({.version = 0x03}).data(), {.majors = 1}, 0).ok());
}

TEST(HeaderTest, ErrorCarriesCodeOffsetField) {
  auto b = encoded({.length = 1});
  b[14] ^= 0xFF;
  auto h = decode_header(b.data(), {}, 12345);
  ASSERT_FALSE(h.ok());
  EXPECT_EQ(h.status().code(), absl::StatusCode::kDataLoss);
  auto e = frame_error(h.status());
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(*e, (FrameError{ErrorCode::kHeaderChecksum, 12345, ErrorField::kHcrc, false}));
  EXPECT_NE(h.status().message().find("HEADER_CHECKSUM"), absl::string_view::npos);
}

TEST(HeaderTest, MajorsAccepted) {
  auto b = encoded({.version = 0x25});
  EXPECT_FALSE(decode_header(b.data(), {}, 0).ok());
  EXPECT_TRUE(decode_header(b.data(), {.majors = 1 << 2}, 0).ok());
  auto v10 = encoded({.version = 0x10});
  EXPECT_TRUE(decode_header(v10.data(), {}, 0).ok());
  EXPECT_FALSE(decode_header(v10.data(), {.majors = 1 << 2}, 0).ok());
  auto v03 = encoded({.version = 0x03});
  EXPECT_FALSE(decode_header(v03.data(), {}, 0).ok());
}

TEST(HeaderTest, MagicPrefix) {
  std::vector<uint8_t> s = {'S', 'B', 'M'}, bad = {'S', 'X'};
  EXPECT_FALSE(magic_prefix_mismatch(s));
  EXPECT_FALSE(magic_prefix_mismatch({}));
  EXPECT_TRUE(magic_prefix_mismatch(bad));
}

TEST(ErrorTest, NamesRoundTrip) {
  for (uint32_t c = 0; c <= 11; ++c) {
    auto code = static_cast<ErrorCode>(c);
    EXPECT_EQ(error_code_from_name(error_code_name(code)), code);
  }
  EXPECT_EQ(error_code_name(static_cast<ErrorCode>(99)), "UNKNOWN");
  EXPECT_EQ(error_field_from_name("trailer"), ErrorField::kTrailer);
  EXPECT_EQ(error_field_from_name("bogus"), std::nullopt);
  EXPECT_FALSE(frame_error(absl::InternalError("x")).has_value());
}

TEST(ErrorTest, RemoteGoaway) {
  absl::Status st = make_remote_goaway_error(10, 77, "bye");
  EXPECT_EQ(st.code(), absl::StatusCode::kUnavailable);
  auto e = frame_error(st);
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->remote);
  EXPECT_EQ(e->code, ErrorCode::kShutdown);
  EXPECT_EQ(e->offset, 77u);
  EXPECT_EQ(make_remote_goaway_error(0, 0, "").code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(make_remote_goaway_error(1234, 0, "").code(), absl::StatusCode::kAborted);
  EXPECT_EQ(static_cast<uint32_t>(frame_error(make_remote_goaway_error(1234, 0, ""))->code), 1234u);
}

}  // namespace
}  // namespace coring::sbmp
