#include "coring/codec/crc16.h"

#include <array>
#include <bit>
#include <cstring>

#include "coring/codec/crc16_clmul.h"

namespace coring::sbmp {
namespace {

constexpr uint32_t kPoly = 0x1021;  // x^16 + x^12 + x^5 + 1 without the x^16

constexpr std::array<uint16_t, 256> make_table() {
  std::array<uint16_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<uint16_t>((crc & 0x8000) ? (crc << 1) ^ kPoly : crc << 1);
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

uint64_t load_be64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  if constexpr (std::endian::native == std::endian::little) v = __builtin_bswap64(v);
  return v;
}

}  // namespace

uint16_t crc16_ccitt_false(absl::Span<const uint8_t> data, uint16_t crc) {
  for (uint8_t byte : data) {
    crc = static_cast<uint16_t>((crc << 8) ^ kTable[((crc >> 8) ^ byte) & 0xFF]);
  }
  return crc;
}

uint16_t crc16_header_table(uint64_t hi, uint64_t lo) {
  // Byte i of the header sits at bits 56 - 8i of hi (i < 8) or lo (i >= 8) and
  // is followed by 13 - i bytes.
  auto at = [](uint64_t word, int shift) { return static_cast<uint8_t>(word >> shift); };
  uint16_t a = kByPosition[13][at(hi, 56) ^ (kCrc16Init >> 8)] ^
               kByPosition[12][at(hi, 48) ^ (kCrc16Init & 0xFF)];
  uint16_t b =
      kByPosition[11][at(hi, 40)] ^ kByPosition[10][at(hi, 32)] ^ kByPosition[9][at(hi, 24)];
  uint16_t c = kByPosition[8][at(hi, 16)] ^ kByPosition[7][at(hi, 8)] ^ kByPosition[6][at(hi, 0)];
  uint16_t d = kByPosition[5][at(lo, 56)] ^ kByPosition[4][at(lo, 48)] ^ kByPosition[3][at(lo, 40)];
  uint16_t e = kByPosition[2][at(lo, 32)] ^ kByPosition[1][at(lo, 24)] ^ kByPosition[0][at(lo, 16)];
  return static_cast<uint16_t>(a ^ b ^ c ^ d ^ e);
}

uint16_t crc16_header(const uint8_t* bytes14) {
  // Bytes 14..15 are not part of the CRC and may not exist: load bytes 6..13.
  uint64_t hi = load_be64(bytes14);
  uint64_t lo = load_be64(bytes14 + 6) << 16;
  return crc16_header(hi, lo);
}

#if defined(__x86_64__)

uint16_t crc16_header_clmul(uint64_t hi, uint64_t lo) {
  return internal::crc16_header_clmul_kernel(hi, lo);
}

namespace internal {
const bool kCrc16HasClmul = [] {
  __builtin_cpu_init();  // may run before the runtime's own CPU probe
  return __builtin_cpu_supports("pclmul") != 0;
}();
}  // namespace internal

bool crc16_clmul_available() { return internal::kCrc16HasClmul; }

#else  // !__x86_64__

uint16_t crc16_header_clmul(uint64_t hi, uint64_t lo) { return crc16_header_table(hi, lo); }
namespace internal {
const bool kCrc16HasClmul = false;
}  // namespace internal

bool crc16_clmul_available() { return false; }

#endif

}  // namespace coring::sbmp
