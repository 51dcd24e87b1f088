#include "coring/codec/crc16.h"

#include <array>

namespace coring::sbmp {
namespace {

constexpr std::array<uint16_t, 256> make_table() {
  std::array<uint16_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    table[i] = crc;
  }
  return table;
}

constexpr std::array<uint16_t, 256> kTable = make_table();

constexpr size_t kHeaderBytes = 14;

// kByPosition[k][b]: CRC (init 0) of byte b followed by k zero bytes. The CRC
// is linear, so the CRC of 14 bytes is the XOR of each byte's contribution,
// with the init value folded into the first two bytes.
constexpr std::array<std::array<uint16_t, 256>, kHeaderBytes> make_position_tables() {
  std::array<std::array<uint16_t, 256>, kHeaderBytes> t{};
  t[0] = kTable;
  for (size_t k = 1; k < kHeaderBytes; ++k) {
    for (size_t b = 0; b < 256; ++b) {
      uint16_t prev = t[k - 1][b];
      t[k][b] = static_cast<uint16_t>((prev << 8) ^ kTable[prev >> 8]);
    }
  }
  return t;
}

constexpr auto kByPosition = make_position_tables();

}  // namespace

uint16_t crc16_ccitt_false(absl::Span<const uint8_t> data, uint16_t crc) {
  for (uint8_t byte : data) {
    crc = static_cast<uint16_t>((crc << 8) ^ kTable[((crc >> 8) ^ byte) & 0xFF]);
  }
  return crc;
}

uint16_t crc16_header(const uint8_t* p) {
  uint16_t a =
      kByPosition[13][p[0] ^ (kCrc16Init >> 8)] ^ kByPosition[12][p[1] ^ (kCrc16Init & 0xFF)];
  uint16_t b = kByPosition[11][p[2]] ^ kByPosition[10][p[3]] ^ kByPosition[9][p[4]];
  uint16_t c = kByPosition[8][p[5]] ^ kByPosition[7][p[6]] ^ kByPosition[6][p[7]];
  uint16_t d = kByPosition[5][p[8]] ^ kByPosition[4][p[9]] ^ kByPosition[3][p[10]];
  uint16_t e = kByPosition[2][p[11]] ^ kByPosition[1][p[12]] ^ kByPosition[0][p[13]];
  return static_cast<uint16_t>(a ^ b ^ c ^ d ^ e);
}

}  // namespace coring::sbmp
