#include "coring/codec/crc32c.h"

#include <array>
#include <bit>
#include <cstddef>
#include <cstring>

namespace coring::sbmp {
namespace {

constexpr uint32_t kPoly = 0x82F63B78;  // reflected 0x1EDC6F41

uint64_t load_le64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, 8);
  if constexpr (std::endian::native == std::endian::big) v = __builtin_bswap64(v);
  return v;
}

// kSlices[k][b]: the CRC register after byte b followed by k zero bytes.
constexpr std::array<std::array<uint32_t, 256>, 8> make_slices() {
  std::array<std::array<uint32_t, 256>, 8> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t crc = i;
    for (int bit = 0; bit < 8; ++bit) crc = (crc & 1) ? (crc >> 1) ^ kPoly : crc >> 1;
    t[0][i] = crc;
  }
  for (size_t k = 1; k < 8; ++k) {
    for (size_t i = 0; i < 256; ++i) t[k][i] = (t[k - 1][i] >> 8) ^ t[0][t[k - 1][i] & 0xFF];
  }
  return t;
}

constexpr auto kSlices = make_slices();

#if defined(__x86_64__)

// The hardware path runs three independent crc32 streams over adjacent
// blocks (the instruction has a latency of 3 and a throughput of 1), then
// joins them: CRC(A || B) = shift(CRC(A), |B|) ^ CRC0(B), where shift appends
// |B| zero bytes. The shift is linear, so it is a table lookup per byte.
constexpr size_t kLong = 4096;
constexpr size_t kShort = 256;

using ShiftTable = std::array<std::array<uint32_t, 256>, 4>;

uint32_t gf2_times(const std::array<uint32_t, 32>& mat, uint32_t vec) {
  uint32_t sum = 0;
  for (size_t i = 0; vec != 0; ++i, vec >>= 1) {
    if (vec & 1) sum ^= mat[i];
  }
  return sum;
}

std::array<uint32_t, 32> gf2_square(const std::array<uint32_t, 32>& mat) {
  std::array<uint32_t, 32> sq{};
  for (size_t i = 0; i < 32; ++i) sq[i] = gf2_times(mat, mat[i]);
  return sq;
}

// The operator appending `len` zero bytes (len a power of two).
ShiftTable make_shift(size_t len) {
  std::array<uint32_t, 32> op{};
  op[0] = kPoly;  // one zero bit
  for (size_t i = 1; i < 32; ++i) op[i] = uint32_t{1} << (i - 1);
  for (size_t bits = 1; bits < len * 8; bits *= 2) op = gf2_square(op);
  ShiftTable table{};
  for (uint32_t b = 0; b < 256; ++b) {
    for (size_t k = 0; k < 4; ++k) table[k][b] = gf2_times(op, b << (8 * k));
  }
  return table;
}

struct ShiftTables {
  ShiftTable long_shift = make_shift(kLong);
  ShiftTable short_shift = make_shift(kShort);
};

const ShiftTables& shift_tables() {
  static const ShiftTables tables;
  return tables;
}

uint32_t shift(const ShiftTable& t, uint32_t crc) {
  return t[0][crc & 0xFF] ^ t[1][(crc >> 8) & 0xFF] ^ t[2][(crc >> 16) & 0xFF] ^ t[3][crc >> 24];
}

__attribute__((target("sse4.2"))) uint64_t hw8(uint64_t crc, const uint8_t* p) {
  return __builtin_ia32_crc32di(crc, load_le64(p));
}

__attribute__((target("sse4.2"))) uint32_t hw1(uint32_t crc, uint8_t b) {
  return __builtin_ia32_crc32qi(crc, b);
}

// Three streams of `block` bytes each, as long as they fit.
__attribute__((target("sse4.2"))) uint64_t hw_interleaved(uint64_t crc0, const uint8_t*& p,
                                                          size_t& n, size_t block,
                                                          const ShiftTable& t) {
  while (n >= 3 * block) {
    uint64_t crc1 = 0;
    uint64_t crc2 = 0;
    const uint8_t* end = p + block;
    do {
      crc0 = __builtin_ia32_crc32di(crc0, load_le64(p));
      crc1 = __builtin_ia32_crc32di(crc1, load_le64(p + block));
      crc2 = __builtin_ia32_crc32di(crc2, load_le64(p + 2 * block));
      p += 8;
    } while (p < end);
    crc0 = shift(t, static_cast<uint32_t>(crc0)) ^ crc1;
    crc0 = shift(t, static_cast<uint32_t>(crc0)) ^ crc2;
    p += 2 * block;
    n -= 3 * block;
  }
  return crc0;
}

#endif  // __x86_64__

}  // namespace

uint32_t crc32c_table(absl::Span<const uint8_t> data, uint32_t crc) {
  const uint8_t* p = data.data();
  size_t n = data.size();
  crc = ~crc;
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t w = load_le64(p) ^ crc;
    crc = kSlices[7][w & 0xFF] ^ kSlices[6][(w >> 8) & 0xFF] ^ kSlices[5][(w >> 16) & 0xFF] ^
          kSlices[4][(w >> 24) & 0xFF] ^ kSlices[3][(w >> 32) & 0xFF] ^
          kSlices[2][(w >> 40) & 0xFF] ^ kSlices[1][(w >> 48) & 0xFF] ^ kSlices[0][w >> 56];
  }
  for (; n > 0; --n, ++p) crc = (crc >> 8) ^ kSlices[0][(crc ^ *p) & 0xFF];
  return ~crc;
}

#if defined(__x86_64__)

bool crc32c_hardware_available() {
  static const bool available = __builtin_cpu_supports("sse4.2");
  return available;
}

uint32_t crc32c_hardware(absl::Span<const uint8_t> data, uint32_t crc) {
  const uint8_t* p = data.data();
  size_t n = data.size();
  uint64_t c = static_cast<uint32_t>(~crc);
  if (n >= 3 * kShort) {
    const ShiftTables& tables = shift_tables();
    c = hw_interleaved(c, p, n, kLong, tables.long_shift);
    c = hw_interleaved(c, p, n, kShort, tables.short_shift);
  }
  for (; n >= 8; n -= 8, p += 8) c = hw8(c, p);
  uint32_t c32 = static_cast<uint32_t>(c);
  for (; n > 0; --n, ++p) c32 = hw1(c32, *p);
  return ~c32;
}

uint32_t crc32c(absl::Span<const uint8_t> data, uint32_t crc) {
  return crc32c_hardware_available() ? crc32c_hardware(data, crc) : crc32c_table(data, crc);
}

#else  // !__x86_64__

bool crc32c_hardware_available() { return false; }
uint32_t crc32c_hardware(absl::Span<const uint8_t> data, uint32_t crc) {
  return crc32c_table(data, crc);
}
uint32_t crc32c(absl::Span<const uint8_t> data, uint32_t crc) { return crc32c_table(data, crc); }

#endif

}  // namespace coring::sbmp
