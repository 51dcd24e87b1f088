#include "coring/codec/crc32c.h"

#include <random>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "test_util.h"

namespace coring::sbmp {
namespace {

TEST(Crc32cTest, CheckValue) {
  std::string check = "123456789";
  EXPECT_EQ(crc32c_table(testing::as_bytes(check)), 0xE3069283u);
  EXPECT_EQ(crc32c(testing::as_bytes(check)), 0xE3069283u);
  if (crc32c_hardware_available()) {
    EXPECT_EQ(crc32c_hardware(testing::as_bytes(check)), 0xE3069283u);
  }
}

TEST(Crc32cTest, KnownVectors) {
  // RFC 3720 (iSCSI) B.4: 32 bytes of zeros, of 0xFF, and 0..31.
  std::vector<uint8_t> zeros(32, 0), ones(32, 0xFF), inc(32);
  for (size_t i = 0; i < 32; ++i) inc[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(crc32c(zeros), 0x8A9136AAu);
  EXPECT_EQ(crc32c(ones), 0x62A8AB43u);
  EXPECT_EQ(crc32c(inc), 0x46DD794Eu);
  EXPECT_EQ(crc32c_table(inc), 0x46DD794Eu);
}

TEST(Crc32cTest, EmptyIsZero) {
  EXPECT_EQ(crc32c({}), 0u);
  EXPECT_EQ(crc32c_table({}), 0u);
}

TEST(Crc32cTest, HardwareMatchesTableOnRandomData) {
  if (!crc32c_hardware_available()) GTEST_SKIP() << "no SSE4.2 on this CPU";
  std::mt19937 rng(42);
  // Sizes around the interleaving block boundaries (3 x 256, 3 x 4096) and
  // unaligned starts.
  std::vector<size_t> sizes = {0,   1,    7,    8,     9,     63,    255,   767,       768,
                               769, 1024, 4095, 12287, 12288, 12289, 16384, 65536 + 13};
  for (int i = 0; i < 40; ++i) sizes.push_back(rng() % 40000);
  std::vector<uint8_t> data(70000);
  for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
  for (size_t size : sizes) {
    for (size_t start : {0, 1, 3, 5}) {
      auto span = absl::MakeConstSpan(data).subspan(start, size);
      uint32_t seed = static_cast<uint32_t>(rng());
      ASSERT_EQ(crc32c_hardware(span, seed), crc32c_table(span, seed)) << size << " @" << start;
    }
  }
}

TEST(Crc32cTest, ContinuesAcrossPieces) {
  std::mt19937 rng(3);
  std::vector<uint8_t> data(5000);
  for (uint8_t& b : data) b = static_cast<uint8_t>(rng());
  auto all = absl::MakeConstSpan(data);
  for (size_t cut : {0, 1, 100, 2500, 4999, 5000}) {
    EXPECT_EQ(crc32c(all.subspan(cut), crc32c(all.subspan(0, cut))), crc32c(all));
    EXPECT_EQ(crc32c_table(all.subspan(cut), crc32c_table(all.subspan(0, cut))), crc32c(all));
  }
}

}  // namespace
}  // namespace coring::sbmp
