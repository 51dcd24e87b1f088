// Internal to codec/: the carry-less-multiply kernels of the header CRC,
// inline so that encode_header/decode_header (header.h) inline into their
// callers. PCLMULQDQ goes through inline assembly unless the compiler
// targets it anyway: the assembler takes the instruction whatever the
// target, so the kernels need no target attribute (which would keep them
// from inlining into code built for baseline x86-64). Run them only when
// kCrc16HasClmul (crc16.h).
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__x86_64__)
#include <emmintrin.h>
#if defined(__PCLMUL__)
#include <wmmintrin.h>
#endif

namespace coring::sbmp::internal {

// a * b, of the 64-bit halves of a and b that kImm picks (as the
// instruction's immediate: bit 0 for a, bit 4 for b).
template <int kImm>
inline __m128i clmul(__m128i a, __m128i b) noexcept {
#if defined(__PCLMUL__)
  return _mm_clmulepi64_si128(a, b, kImm);
#elif defined(__AVX__)
  // VEX-encoded, as the code around it (x86-64-v3 has AVX but not PCLMUL):
  // a legacy-SSE instruction among AVX ones costs a state transition.
  __asm__("vpclmulqdq %2, %1, %0, %0" : "+x"(a) : "xm"(b), "i"(kImm));
  return a;
#else
  __asm__("pclmulqdq %2, %1, %0" : "+x"(a) : "xm"(b), "i"(kImm));
  return a;
#endif
}

// Polynomials over GF(2) as integers, bit i = coefficient of x^i.
inline constexpr uint32_t kCrc16Poly = 0x1021;  // x^16 + x^12 + x^5 + 1 without the x^16

// (q * P) mod x^16, from q's low 16 bits (bits 16.. of q's low lane do
// not reach the result): P mod x^16 = x^12 + x^5 + 1, so it is q ^ q << 5 ^
// q << 12, written q ^ (q ^ q << 7) << 5: SSE shifts overwrite their
// operand, so that is one register copy fewer. Shifts and XORs in the
// register q is in, not a third carry-less multiply: a header's encode +
// decode + validate (BM_HeaderBatch) took about 5% less time with them,
// measured side by side, and 1-3% less again in this order (on its own
// 0.95-0.98x, next to the header check's other cuts about 0.99x).
[[gnu::always_inline]] inline uint16_t crc16_times_poly_low16(__m128i q) noexcept {
  static_assert(kCrc16Poly == ((1u << 12) | (1u << 5) | 1u));
  const __m128i r = _mm_xor_si128(q, _mm_slli_epi64(_mm_xor_si128(q, _mm_slli_epi64(q, 7)), 5));
  return static_cast<uint16_t>(_mm_cvtsi128_si32(r));
}

// floor(x^128 / P), degree 112, by long division.
constexpr unsigned __int128 crc16_barrett_mu() {
  unsigned __int128 quotient = 0;
  uint32_t window = 0;
  for (int i = 128; i >= 0; --i) {
    window = (window << 1) | (i == 128 ? 1 : 0);
    if (window & 0x10000) {
      window ^= 0x10000 | kCrc16Poly;
      quotient |= static_cast<unsigned __int128>(1) << i;
    }
  }
  return quotient;
}
inline constexpr unsigned __int128 kCrc16Mu = crc16_barrett_mu();
static_assert((kCrc16Mu >> 112) == 1, "floor(x^128 / P) has degree 112");

// The CRC register after 14 zero bytes from the init value 0xFFFF: the init's
// share of every header CRC (the CRC with init 0 is linear in the bytes).
inline constexpr uint16_t kCrc16HeaderInitShare = [] {
  uint32_t crc = 0xFFFF;
  for (int bit = 0; bit < 14 * 8; ++bit) {
    crc = (crc & 0x8000) ? (crc << 1) ^ (0x10000 | kCrc16Poly) : crc << 1;
  }
  return static_cast<uint16_t>(crc);
}();

// With init 0 the CRC of the 14 bytes M is M(x) * x^16 mod P. With the hcrc
// bytes zeroed, N = hi * x^64 + lo is exactly M(x) * x^16, so the CRC is
// N mod P = N - q * P with q = floor(N / P). Only q mod x^16 matters for the
// low 16 bits of q * P, and Barrett gives q = floor(N * mu / x^128) exactly
// (deg N < 128). With N = n1 x^64 + n0 and mu = m1 x^64 + m0, the product's
// bits 128..143 come from n1*m1 (its low bits) and n1*m0 + n0*m1 (bits
// 64..79); n0*m0 has degree below 127 and never reaches them. Three
// independent multiplies, then one more: no 14-step chain.
inline uint16_t crc16_header_clmul_kernel(uint64_t hi, uint64_t lo) noexcept {
  lo &= ~uint64_t{0xFFFF};
  const __m128i n = _mm_set_epi64x(static_cast<long long>(hi), static_cast<long long>(lo));
  const __m128i mu = _mm_set_epi64x(static_cast<long long>(kCrc16Mu >> 64),
                                    static_cast<long long>(static_cast<uint64_t>(kCrc16Mu)));
  const __m128i cross = _mm_xor_si128(clmul<0x01>(n, mu),   // n1 * m0
                                      clmul<0x10>(n, mu));  // n0 * m1
  const __m128i q = _mm_xor_si128(_mm_srli_si128(cross, 8), clmul<0x11>(n, mu));
  // N's low 16 bits are zero, so the remainder is q * P mod x^16.
  return crc16_times_poly_low16(q) ^ kCrc16HeaderInitShare;
}

// floor(x^96 / P), degree 80, by long division.
constexpr unsigned __int128 crc16_barrett_mu96() {
  unsigned __int128 quotient = 0;
  uint32_t window = 0;
  for (int i = 96; i >= 0; --i) {
    window = (window << 1) | (i == 96 ? 1 : 0);
    if (window & 0x10000) {
      window ^= 0x10000 | kCrc16Poly;
      quotient |= static_cast<unsigned __int128>(1) << i;
    }
  }
  return quotient;
}
inline constexpr unsigned __int128 kCrc16Mu96 = crc16_barrett_mu96();
static_assert((kCrc16Mu96 >> 80) == 1, "floor(x^96 / P) has degree 80");
// The two slices of mu96 the SBMP kernel multiplies by (see below).
inline constexpr uint64_t kCrc16Mu96Low =
    static_cast<uint64_t>(kCrc16Mu96 & ((uint64_t{1} << 48) - 1)) << 15;
inline constexpr uint64_t kCrc16Mu96High = static_cast<uint64_t>(kCrc16Mu96 >> 33);

// The CRC register after "SBMP" and 10 zero bytes from the init value: the
// share of every SBMP header CRC that the init value and the magic make.
inline constexpr uint16_t kCrc16SbmpHeaderShare = [] {
  const uint8_t bytes[14] = {'S', 'B', 'M', 'P'};
  uint32_t crc = 0xFFFF;
  for (uint8_t byte : bytes) {
    crc ^= uint32_t{byte} << 8;
    for (int bit = 0; bit < 8; ++bit)
      crc = (crc & 0x8000) ? (crc << 1) ^ (0x10000 | kCrc16Poly) : crc << 1;
  }
  return static_cast<uint16_t>(crc);
}();

// The hcrc of a header whose magic is "SBMP" (what encode writes, and all
// that decode accepts: it checks the magic first), from its other 10 covered
// bytes: `fields` = bytes 4..7 (version, flags, type) and `lo` = bytes
// 8..15 as a big-endian word (its low 16 bits, the hcrc, are ignored).
// Half the work of the general kernel, and no chain of multiplies:
//   With init 0 the CRC is N mod P for N = M(x) * x^16, and N = magic * x^96
//   + T with T = fields * x^64 + L * x^16 (L = bytes 8..13). The magic's
//   and the init's shares are the constant above; T mod P = T - q * P with
//   q = floor(T / P) = floor(T * mu96 / x^96) (Barrett, exact for deg T <
//   96). T's low 16 bits are zero, so T mod P = (q * P) mod x^16, which
//   needs q mod x^16 only: bits 96..111 of T * mu96. Those are bits 32..47
//   of fields * mu96 (only mu96's bits 0..47 reach them) plus bits 80..95
//   of L * mu96 (only its bits 33..80 reach them, deg L < 48): two
//   independent 64-bit multiplies, aligned so both land at bits 47..62.
//   Then (q * P) mod x^16 by crc16_times_poly_low16.
[[gnu::always_inline]] inline uint16_t crc16_sbmp_header_clmul_kernel(uint32_t fields,
                                                                      uint64_t lo) noexcept {
  // Each input in a register of its own (no shuffle into one), each
  // constant as the other operand.
  const __m128i products =
      _mm_xor_si128(clmul<0x00>(_mm_cvtsi32_si128(static_cast<int>(fields)),
                                _mm_cvtsi64_si128(static_cast<long long>(kCrc16Mu96Low))),
                    clmul<0x00>(_mm_cvtsi64_si128(static_cast<long long>(lo >> 16)),
                                _mm_cvtsi64_si128(static_cast<long long>(kCrc16Mu96High))));
  return crc16_times_poly_low16(_mm_srli_epi64(products, 47)) ^ kCrc16SbmpHeaderShare;
}

}  // namespace coring::sbmp::internal

#endif  // __x86_64__
