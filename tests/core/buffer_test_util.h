// Helpers for the tests of receive buffers (buffers_test.cc,
// recv_limit_test.cc, foreign_stop_test.cc, interrupt_disarm_test.cc): a
// small registered arena for a BufferRing to carve
// its buffers from, and a recognisable byte pattern to send through it.
#pragma once

#include <gtest/gtest.h>

#include <string>
#include <utility>

#include "coring/pool/buffer_arena.h"

namespace coring::testing {

inline pool::BufferArena make_arena() {
  auto arena = pool::BufferArena::create({.name = "coring.test_buffers.v1",
                                          .classes = {{4096, 16}},
                                          .carve_bytes = 1 << 20,
                                          .huge_pages = pool::HugePagePolicy::kNever});
  EXPECT_TRUE(arena.ok()) << arena.status();
  return std::move(*arena);
}

// "abc...zabc..." for `n` bytes: a misplaced or lost chunk shows.
inline std::string pattern(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>('a' + i % 26);
  return s;
}

}  // namespace coring::testing
