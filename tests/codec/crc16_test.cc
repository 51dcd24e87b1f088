#include "coring/codec/crc16.h"

#include <random>
#include <string>
#include <vector>

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

TEST(Crc16Test, HeaderFormMatchesGenericOnRandomData) {
  std::mt19937 rng(7);
  for (int i = 0; i < 2000; ++i) {
    uint8_t bytes[14];
    for (uint8_t& b : bytes) b = static_cast<uint8_t>(rng());
    ASSERT_EQ(crc16_header(bytes), crc16_ccitt_false(absl::MakeConstSpan(bytes, 14)));
  }
}

TEST(Crc16Test, SpecExampleHeader) {
  // SBMP.md section 5: PING "hi"; the vector spec_example_ping holds the bytes.
  std::vector<uint8_t> h = testing::from_hex(
      "53424d501300000300000002"
      "0000");
  uint16_t crc = crc16_header(h.data());
  std::string bin =
      testing::read_file(std::string(CORING_SBMP_VECTORS_DIR) + "/spec_example_ping.bin");
  ASSERT_GE(bin.size(), 16u);
  EXPECT_EQ(crc, (static_cast<uint8_t>(bin[14]) << 8) | static_cast<uint8_t>(bin[15]));
}

}  // namespace
}  // namespace coring::sbmp
