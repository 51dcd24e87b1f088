// Internal to codec/: the carry-less-multiply kernel of crc16_header, inline
// so that header.cc can compile it into its PCLMULQDQ variants of
// encode_header/decode_header. Call it only from a function compiled with
// __attribute__((target("pclmul"))) and only when crc16_clmul_available().
#pragma once

#include <cstddef>
#include <cstdint>

#if defined(__x86_64__)
#include <immintrin.h>

namespace coring::sbmp::internal {

// Polynomials over GF(2) as integers, bit i = coefficient of x^i.
inline constexpr uint32_t kCrc16Poly = 0x1021;  // x^16 + x^12 + x^5 + 1 without the x^16

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
__attribute__((target("pclmul,sse2"))) inline uint16_t crc16_header_clmul_kernel(uint64_t hi,
                                                                                 uint64_t lo) {
  lo &= ~uint64_t{0xFFFF};
  const __m128i n = _mm_set_epi64x(static_cast<long long>(hi), static_cast<long long>(lo));
  const __m128i mu = _mm_set_epi64x(static_cast<long long>(kCrc16Mu >> 64),
                                    static_cast<long long>(static_cast<uint64_t>(kCrc16Mu)));
  const __m128i cross = _mm_xor_si128(_mm_clmulepi64_si128(n, mu, 0x01),   // n1 * m0
                                      _mm_clmulepi64_si128(n, mu, 0x10));  // n0 * m1
  const __m128i q = _mm_xor_si128(_mm_srli_si128(cross, 8), _mm_clmulepi64_si128(n, mu, 0x11));
  const __m128i qp = _mm_clmulepi64_si128(q, _mm_cvtsi32_si128(static_cast<int>(kCrc16Poly)), 0x00);
  // N's low 16 bits are zero, so the remainder is q * P mod x^16.
  return static_cast<uint16_t>(_mm_cvtsi128_si32(qp) ^ kCrc16HeaderInitShare);
}

}  // namespace coring::sbmp::internal

#endif  // __x86_64__
