// CRC-32C (Castagnoli): the SBMP payload trailer over extension block +
// payload (SBMP.md 1.3, 1.4).
//
// crc32c() picks the fastest implementation once, at run time: the SSE4.2
// `crc32` instruction (three interleaved streams) when the CPU has it,
// otherwise a portable slicing-by-8 table. Both are exposed so tests and
// benchmarks can compare them. Values are finished CRCs; pass one back in as
// `crc` to continue over more data:
//
//   uint32_t c = crc32c(ext_block);
//   c = crc32c(payload, c);  // == crc32c(ext_block + payload)
#pragma once

#include <cstdint>

#include "absl/types/span.h"

namespace coring::sbmp {

uint32_t crc32c(absl::Span<const uint8_t> data, uint32_t crc = 0);

// The portable path.
uint32_t crc32c_table(absl::Span<const uint8_t> data, uint32_t crc = 0);

// True when this CPU has SSE4.2 (and this build targets x86-64).
bool crc32c_hardware_available();
// The hardware path; only call it when crc32c_hardware_available().
uint32_t crc32c_hardware(absl::Span<const uint8_t> data, uint32_t crc = 0);

}  // namespace coring::sbmp
