#include "coring/pool/system_heap.h"

#include <gtest/gtest.h>
#include <malloc.h>

#include <cstdlib>

namespace coring::pool {
namespace {

TEST(SystemHeapTest, OutOfRangeThresholdsAreRefused) {
  for (size_t bad : {size_t{0}, size_t{4095}, (size_t{32} << 20) + 1}) {
    const absl::Status s = pin_heap_mmap_threshold(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(s.message().find("4 KiB"), absl::string_view::npos) << s;
  }
}

// The blocks glibc maps on their own, counted by mallinfo2().hblks.
size_t mapped_blocks() { return mallinfo2().hblks; }

// Without the pin, freeing a mapped 4 MiB block raises glibc's threshold
// past 1 MiB, and the next 1 MiB block comes from the heap (where, freed,
// it stays). With it, that block is mapped too.
TEST(SystemHeapTest, ALargeBlockIsMappedEvenAfterALargerOneWasFreed) {
  const absl::Status s = pin_heap_mmap_threshold(128 << 10);
  if (absl::IsUnimplemented(s)) GTEST_SKIP() << s;
  ASSERT_TRUE(s.ok()) << s;
  void* big = std::malloc(4 << 20);
  ASSERT_NE(big, nullptr);
  std::free(big);
  const size_t before = mapped_blocks();
  void* next = std::malloc(1 << 20);
  ASSERT_NE(next, nullptr);
  EXPECT_EQ(mapped_blocks(), before + 1);
  std::free(next);
  EXPECT_EQ(mapped_blocks(), before);
}

}  // namespace
}  // namespace coring::pool
