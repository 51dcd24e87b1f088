// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0):
// the SBMP header checksum over header bytes 0..13 (SBMP.md 1.1, 1.4).
//
//   uint16_t hcrc = crc16_ccitt_false(absl::MakeConstSpan(header, 14));
//   uint16_t same = crc16_header(header);  // the fast form for exactly 14 bytes
//
// The header forms take the header as two big-endian 64-bit words, hi = bytes
// 0..7 and lo = bytes 8..15 (bytes 14..15, the hcrc itself, are ignored), so
// that encode/decode, which hold the header in registers anyway, never go
// back to single bytes.
#pragma once

#include <cstdint>

#include "absl/types/span.h"

namespace coring::sbmp {

inline constexpr uint16_t kCrc16Init = 0xFFFF;

// Continues `crc` (start with kCrc16Init) over `data`: any length, byte-serial.
uint16_t crc16_ccitt_false(absl::Span<const uint8_t> data, uint16_t crc = kCrc16Init);

// The CRC of the 14 bytes a header checksum covers. Uses a carry-less multiply
// (PCLMULQDQ, chosen at run time) when the CPU has one, else crc16_header_table.
inline uint16_t crc16_header(uint64_t hi, uint64_t lo);
uint16_t crc16_header(const uint8_t* bytes14);

// The two implementations behind crc16_header, exposed for tests and benchmarks.
// Table form: the CRC is affine in the input bits over a fixed length, so it
// is the XOR of one lookup per byte position (14 tables of 256 entries, 7 KiB),
// lookups that do not wait on each other.
uint16_t crc16_header_table(uint64_t hi, uint64_t lo);
// Carry-less form: the header as a 128-bit polynomial reduced modulo the CRC
// polynomial by Barrett reduction, four multiplies of which three run at once.
// Only call it when crc16_clmul_available().
uint16_t crc16_header_clmul(uint64_t hi, uint64_t lo);
bool crc16_clmul_available();

namespace internal {
// Set once during static initialization from a CPU check, constant after:
// read before that (from another static initializer) it is false, which
// selects the table form, also correct.
extern const bool kCrc16HasClmul;
}  // namespace internal

inline uint16_t crc16_header(uint64_t hi, uint64_t lo) {
  return internal::kCrc16HasClmul ? crc16_header_clmul(hi, lo) : crc16_header_table(hi, lo);
}

}  // namespace coring::sbmp
