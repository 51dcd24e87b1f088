// Size classes of the slab pool: 41 classes from 64 B to 64 KiB.
//
// Four classes per power of two (64, 80, 96, 112, 128, 160, ...), so a
// request of at least 64 bytes wastes less than 20% of its block (the issue's
// bound is 25%). Requests below 64 bytes, 0 included, get a 64-byte block.
// Every class is a multiple of 16, so every block is aligned for any scalar
// type (alignof(std::max_align_t)). Everything here is constexpr so the fast
// path compiles down to a few shifts.
#pragma once

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>

namespace coring::pool {

inline constexpr size_t kMinBlockSize = 64;
// The largest request the slab pool serves; larger ones are rejected with
// InvalidArgument (try_allocate returns nullptr) and belong on the heap.
inline constexpr size_t kMaxBlockSize = 64 * 1024;
inline constexpr uint32_t kSizeClassCount = 41;

// Size in bytes of class `c` (0 <= c < kSizeClassCount).
constexpr uint32_t size_class_bytes(uint32_t c) {
  if (c == 0) return kMinBlockSize;
  const uint32_t e = (c - 1) / 4 + 6;  // 2^e < size <= 2^(e+1)
  const uint32_t sub = (c - 1) % 4;
  return (1u << e) + ((sub + 1) << (e - 2));
}

// The class serving a request of `n` bytes; `n` must be <= kMaxBlockSize.
constexpr uint32_t size_class_of(size_t n) {
  if (n <= kMinBlockSize) return 0;
  const size_t m = n - 1;
  const uint32_t e = static_cast<uint32_t>(std::bit_width(m)) - 1;  // floor(log2(m)) >= 6
  const uint32_t sub = static_cast<uint32_t>(m >> (e - 2)) & 3u;
  return (e - 6) * 4 + sub + 1;
}

static_assert(size_class_bytes(0) == 64 && size_class_bytes(1) == 80 &&
              size_class_bytes(4) == 128 && size_class_bytes(5) == 160);
static_assert(size_class_bytes(kSizeClassCount - 1) == kMaxBlockSize);
static_assert(size_class_of(64) == 0 && size_class_of(65) == 1 && size_class_of(128) == 4 &&
              size_class_of(129) == 5 && size_class_of(kMaxBlockSize) == kSizeClassCount - 1);

}  // namespace coring::pool
