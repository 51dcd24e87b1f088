// CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, xorout 0):
// the SBMP header checksum over header bytes 0..13 (SBMP.md 1.1, 1.4).
//
//   uint16_t hcrc = crc16_ccitt_false(absl::MakeConstSpan(header, 14));
#pragma once

#include <cstdint>

#include "absl/types/span.h"

namespace coring::sbmp {

inline constexpr uint16_t kCrc16Init = 0xFFFF;

// Continues `crc` (start with kCrc16Init) over `data`.
uint16_t crc16_ccitt_false(absl::Span<const uint8_t> data, uint16_t crc = kCrc16Init);

// The same CRC over exactly the 14 bytes a header checksum covers, computed
// with one table per byte position so the lookups do not wait on each other
// (the header is checked twice per frame, once by each side).
uint16_t crc16_header(const uint8_t* bytes14);

}  // namespace coring::sbmp
