#include "coring/codec/crc16.h"

#include <algorithm>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include "coring/codec/crc16_clmul.h"
#include "coring/codec/header.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace coring::sbmp {
namespace {

TEST(Crc16Test, CheckValue) {
  std::string check = "123456789";
  EXPECT_EQ(crc16_ccitt_false(testing::as_bytes(check)), 0x29B1);
}

TEST(Crc16Test, EmptyIsInit) { EXPECT_EQ(crc16_ccitt_false({}), 0xFFFF); }

TEST(Crc16Test, ContinuesAcrossPieces) {
  std::string check = "123456789";
  auto bytes = testing::as_bytes(check);
  EXPECT_EQ(crc16_ccitt_false(bytes.subspan(4), crc16_ccitt_false(bytes.subspan(0, 4))), 0x29B1);
}

uint64_t be64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

TEST(Crc16Test, HeaderFormsMatchGenericOnRandomData) {
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    uint8_t bytes[16];
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    // Sparse inputs too: single bits exercise each column of the linear map.
    if (i % 4 == 1) {
      std::fill(std::begin(bytes), std::end(bytes), 0);
      bytes[rng() % 16] = static_cast<uint8_t>(1u << (rng() % 8));
    }
    const uint16_t expected = crc16_ccitt_false(absl::MakeConstSpan(bytes, 14));
    const uint64_t hi = be64(bytes), lo = be64(bytes + 8);
    ASSERT_EQ(crc16_header(bytes), expected) << i;
    ASSERT_EQ(crc16_header(hi, lo), expected) << i;
    // Bytes 14..15 (the hcrc slot) are ignored.
    ASSERT_EQ(crc16_header_table(hi, lo), expected) << i;
    if (crc16_clmul_available()) {
      ASSERT_EQ(crc16_header_clmul(hi, lo), expected) << i;
    }
  }
}

// The SBMP header form behind encode_header/decode_header: "SBMP" assumed,
// from bytes 4..7 and 8..15; the carry-less kernel and the tables behind it.
TEST(Crc16Test, SbmpHeaderFormMatchesGenericOnRandomData) {
  std::mt19937 rng(9);
  for (int i = 0; i < 20000; ++i) {
    uint8_t bytes[16] = {'S', 'B', 'M', 'P'};
    for (int b = 4; b < 16; ++b) bytes[b] = static_cast<uint8_t>(rng());
    if (i % 4 == 1) {
      std::fill(std::begin(bytes) + 4, std::end(bytes), 0);
      bytes[4 + rng() % 12] = static_cast<uint8_t>(1u << (rng() % 8));
    }
    const uint16_t expected = crc16_ccitt_false(absl::MakeConstSpan(bytes, 14));
    const auto fields = static_cast<uint32_t>(be64(bytes));
    const uint64_t lo = be64(bytes + 8);
    ASSERT_EQ(internal::sbmp_header_crc(fields, lo), expected) << i;
    // What sbmp_header_crc falls back to without PCLMULQDQ.
    ASSERT_EQ(crc16_header_table((uint64_t{kMagic} << 32) | fields, lo), expected) << i;
#if defined(__x86_64__)
    if (crc16_clmul_available()) {
      ASSERT_EQ(internal::crc16_sbmp_header_clmul_kernel(fields, lo), expected) << i;
    }
#endif
  }
}

TEST(Crc16Test, HeaderFormsOnExtremes) {
  for (uint64_t hi : {uint64_t{0}, ~uint64_t{0}, uint64_t{1}, uint64_t{1} << 63}) {
    for (uint64_t lo : {uint64_t{0}, ~uint64_t{0}, uint64_t{1} << 16, uint64_t{1} << 63}) {
      uint8_t bytes[16];
      for (int i = 0; i < 8; ++i) {
        bytes[i] = static_cast<uint8_t>(hi >> (56 - 8 * i));
        bytes[8 + i] = static_cast<uint8_t>(lo >> (56 - 8 * i));
      }
      const uint16_t expected = crc16_ccitt_false(absl::MakeConstSpan(bytes, 14));
      EXPECT_EQ(crc16_header_table(hi, lo), expected);
      if (crc16_clmul_available()) {
        EXPECT_EQ(crc16_header_clmul(hi, lo), expected);
      }
    }
  }
}

TEST(Crc16Test, ClmulAvailableOnX86) {
#if defined(__x86_64__)
  // Every x86-64 CPU this runs on has PCLMULQDQ; without it the fast path
  // above would go untested.
  EXPECT_EQ(crc16_clmul_available(), __builtin_cpu_supports("pclmul") != 0);
#else
  EXPECT_FALSE(crc16_clmul_available());
#endif
}

TEST(Crc16Test, SpecExampleHeader) {
  // SBMP.md section 5: PING "hi"; the vector spec_example_ping holds the bytes.
  std::vector<uint8_t> h = testing::from_hex(
      "53424d501300000300000002"
      "0000");
  uint16_t crc = crc16_header(h.data());
  EXPECT_EQ(crc, crc16_ccitt_false(absl::MakeConstSpan(h.data(), 14)));
  uint64_t hi = be64(h.data());
  uint64_t lo = (uint64_t{h[8]} << 56) | (uint64_t{h[9]} << 48) | (uint64_t{h[10]} << 40) |
                (uint64_t{h[11]} << 32) | (uint64_t{h[12]} << 24) | (uint64_t{h[13]} << 16);
  EXPECT_EQ(crc16_header_table(hi, lo), crc);
  if (crc16_clmul_available()) {
    EXPECT_EQ(crc16_header_clmul(hi, lo), crc);
  }
  std::string bin =
      testing::read_file(std::string(CORING_SBMP_VECTORS_DIR) + "/spec_example_ping.bin");
  ASSERT_GE(bin.size(), 16u);
  EXPECT_EQ(crc, (static_cast<uint8_t>(bin[14]) << 8) | static_cast<uint8_t>(bin[15]));
}

}  // namespace
}  // namespace coring::sbmp
