#include "coring/pool/slab_pool.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <set>
#include <vector>

namespace coring::pool {
namespace {

using ::testing::HasSubstr;

SlabPoolOptions options(size_t capacity = 8 << 20) {
  return SlabPoolOptions{"test.slab.v1", capacity, HugePagePolicy::kNever};
}

TEST(SlabPoolTest, BoundarySizes) {
  SlabPool pool(options());
  ASSERT_TRUE(pool.status().ok());
  for (size_t n : {size_t{0}, size_t{1}, size_t{64}, size_t{65}, size_t{65536}}) {
    absl::StatusOr<void*> p = pool.allocate(n);
    ASSERT_TRUE(p.ok()) << n << ": " << p.status();
    EXPECT_TRUE(is_slab_block(*p));
    EXPECT_TRUE(pool.owns(*p));
    EXPECT_GE(slab_block_size(*p), std::max<size_t>(n, 1));
    EXPECT_EQ(reinterpret_cast<uintptr_t>(*p) % 16, 0u);
    std::memset(*p, 0xab, n);
    deallocate(*p);
  }
  EXPECT_EQ(slab_block_size(*pool.allocate(0)), 64u);  // 0 bytes -> smallest class
}

TEST(SlabPoolTest, AboveSixtyFourKibIsRejected) {
  SlabPool pool(options());
  absl::StatusOr<void*> p = pool.allocate(65537);
  ASSERT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("65536"));
  EXPECT_THAT(std::string(p.status().message()), HasSubstr("test.slab.v1"));
  EXPECT_EQ(pool.try_allocate(65537), nullptr);
  EXPECT_EQ(pool.try_allocate(size_t{1} << 40), nullptr);
  EXPECT_EQ(pool.stats().allocs_total, 0u);
}

TEST(SlabPoolTest, EveryClassFillsItsPageWithDistinctAlignedBlocks) {
  SlabPool pool(options(16 << 20));
  for (uint32_t c = 0; c < kSizeClassCount; ++c) {
    const size_t size = size_class_bytes(c);
    const size_t per_page = kPageSize / size;
    std::vector<uint8_t*> blocks;
    // Two pages' worth plus one: exercises page switching for every class.
    for (size_t i = 0; i < 2 * per_page + 1; ++i) {
      auto* p = static_cast<uint8_t*>(pool.try_allocate(size));
      ASSERT_NE(p, nullptr) << "class " << c;
      ASSERT_EQ(slab_block_size(p), size);
      ASSERT_EQ(reinterpret_cast<uintptr_t>(p) % 16, 0u);
      std::memset(p, static_cast<int>(c), size);
      blocks.push_back(p);
    }
    std::vector<uint8_t*> sorted = blocks;
    std::sort(sorted.begin(), sorted.end());
    for (size_t i = 1; i < sorted.size(); ++i) {
      ASSERT_GE(sorted[i], sorted[i - 1] + size) << "overlap in class " << c;
    }
    for (uint8_t* p : blocks) {
      ASSERT_EQ(p[0], static_cast<uint8_t>(c));
      ASSERT_EQ(p[size - 1], static_cast<uint8_t>(c));
      deallocate(p);
    }
  }
  const PoolStats s = pool.stats();
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(s.allocs_total, s.frees_total);
}

TEST(SlabPoolTest, FreedBlockIsReusedAndCounted) {
  SlabPool pool(options());
  void* a = pool.try_allocate(100);
  deallocate(a);
  void* b = pool.try_allocate(100);
  EXPECT_EQ(a, b);
  const PoolStats s = pool.stats();
  EXPECT_EQ(s.allocs_total, 2u);
  EXPECT_EQ(s.frees_total, 1u);
  EXPECT_EQ(s.reuses_total, 1u);
  EXPECT_EQ(s.in_use, 1u);
  EXPECT_EQ(s.high_water, 1u);
  EXPECT_EQ(s.bytes_reserved, kChunkSize);
  EXPECT_EQ(s.huge_pages, HugePageMode::kNone);
  EXPECT_EQ(s.kind, "slab");
  deallocate(b);
}

TEST(SlabPoolTest, RandomisedStressKeepsLiveBlocksDisjoint) {
  SlabPool pool(options(32 << 20));
  std::mt19937_64 rng(42);
  struct Live {
    uint8_t* p;
    size_t n;
    uint8_t pattern;
  };
  std::vector<Live> live;
  uint64_t high_water = 0;
#ifdef CORING_SANITIZED
  constexpr int kSteps = 50000;  // TSan/ASan are 10-20x slower; keep the test in seconds
#else
  constexpr int kSteps = 200000;
#endif
  for (int step = 0; step < kSteps; ++step) {
    const bool do_alloc = live.empty() || (rng() % 100) < (live.size() < 2000 ? 60 : 40);
    if (do_alloc) {
      // Mostly small, sometimes up to 64 KiB.
      const size_t n = (rng() % 8 == 0) ? rng() % (kMaxBlockSize + 1) : rng() % 1025;
      auto* p = static_cast<uint8_t*>(pool.try_allocate(n));
      ASSERT_NE(p, nullptr) << "step " << step << " n " << n;
      const auto pattern = static_cast<uint8_t>(rng());
      std::memset(p, pattern, n);
      live.push_back({p, n, pattern});
      high_water = std::max<uint64_t>(high_water, live.size());
    } else {
      const size_t i = rng() % live.size();
      const Live block = live[i];
      for (size_t k = 0; k < block.n; ++k) {
        ASSERT_EQ(block.p[k], block.pattern) << "block corrupted at step " << step;
      }
      deallocate(block.p);
      live[i] = live.back();
      live.pop_back();
    }
  }
  // No two live blocks overlap.
  std::vector<Live> sorted = live;
  std::sort(sorted.begin(), sorted.end(), [](const Live& a, const Live& b) { return a.p < b.p; });
  for (size_t i = 1; i < sorted.size(); ++i) {
    ASSERT_LE(sorted[i - 1].p + slab_block_size(sorted[i - 1].p), sorted[i].p);
  }
  EXPECT_EQ(pool.stats().in_use, live.size());
  EXPECT_EQ(pool.stats().high_water, high_water);
  for (const Live& block : live) deallocate(block.p);
  EXPECT_EQ(pool.stats().in_use, 0u);
}

TEST(SlabPoolTest, ExhaustionThenRecovery) {
  SlabPool pool(options(4 * kPageSize));  // four pages
  std::vector<void*> blocks;
  while (true) {
    absl::StatusOr<void*> p = pool.allocate(1024);
    if (!p.ok()) {
      EXPECT_EQ(p.status().code(), absl::StatusCode::kResourceExhausted);
      EXPECT_THAT(std::string(p.status().message()), HasSubstr("test.slab.v1"));
      EXPECT_THAT(std::string(p.status().message()), HasSubstr("4 pages"));
      EXPECT_THAT(std::string(p.status().message()), HasSubstr("262144-byte capacity"));
      EXPECT_THAT(std::string(p.status().message()), HasSubstr("256 blocks live"));
      break;
    }
    blocks.push_back(*p);
    ASSERT_LE(blocks.size(), 1000u) << "capacity not enforced";
  }
  EXPECT_EQ(blocks.size(), 4u * 64u);
  // Other classes cannot grow either: every page is taken.
  EXPECT_EQ(pool.try_allocate(64), nullptr);
  EXPECT_EQ(pool.try_allocate(65536), nullptr);
  // One free makes room in its class...
  deallocate(blocks.back());
  blocks.pop_back();
  EXPECT_NE(pool.try_allocate(1000), nullptr);
  // ...and freeing whole pages lets another class use them.
  for (size_t i = 0; i < 128; ++i) deallocate(blocks[i]);
  void* big = pool.try_allocate(65536);
  EXPECT_NE(big, nullptr);
  void* small = pool.try_allocate(64);
  EXPECT_NE(small, nullptr);
  EXPECT_LE(pool.stats().bytes_reserved, kChunkSize);
}

TEST(SlabPoolTest, BadOptionsAreReportedNotFatal) {
  SlabPool bad_name({"NoVersion", 1 << 20, HugePagePolicy::kNever});
  EXPECT_EQ(bad_name.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad_name.allocate(10).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(bad_name.try_allocate(10), nullptr);

  SlabPool zero({"test.zero.v1", 0, HugePagePolicy::kNever});
  EXPECT_EQ(zero.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(zero.try_allocate(10), nullptr);
}

TEST(SlabPoolTest, CapacityRoundsUpToWholePages) {
  SlabPool pool(options(1));  // one byte -> one page
  EXPECT_EQ(pool.capacity_bytes(), kPageSize);
  EXPECT_NE(pool.try_allocate(65536), nullptr);
  EXPECT_EQ(pool.allocate(64).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(SlabPoolTest, HeapPointersAreNotSlabBlocks) {
  SlabPool pool(options());
  void* p = pool.try_allocate(64);
  std::vector<char> heap(100);
  int stack = 0;
  EXPECT_FALSE(is_slab_block(heap.data()));
  EXPECT_FALSE(is_slab_block(&stack));
  EXPECT_FALSE(is_slab_block(nullptr));
  EXPECT_FALSE(pool.owns(heap.data()));
  EXPECT_TRUE(is_slab_block(p));
  SlabPool other(options());
  EXPECT_FALSE(other.owns(p));
  deallocate(p);
  deallocate(nullptr);  // ignored
}

TEST(SlabPoolTest, UnmappedAfterDestructionWhenEverythingCameBack) {
  void* p = nullptr;
  {
    SlabPool pool(options());
    p = pool.try_allocate(64);
    deallocate(p);
    EXPECT_TRUE(is_slab_block(p));
  }
  EXPECT_FALSE(is_slab_block(p));
}

TEST(SlabPoolTest, DestroyedWithLiveBlocksKeepsThemValid) {
  std::vector<uint8_t*> blocks;
  {
    SlabPool pool(options());
    for (int i = 0; i < 10; ++i) blocks.push_back(static_cast<uint8_t*>(pool.try_allocate(200)));
    deallocate(blocks.back());
    blocks.pop_back();
    // The rule: the pool should outlive its blocks. Breaking it leaks the
    // chunk instead of crashing.
    testing::internal::CaptureStderr();
  }
  const std::string log = testing::internal::GetCapturedStderr();
  EXPECT_THAT(log, HasSubstr("destroyed with 9 blocks still allocated"));
  for (uint8_t* p : blocks) {
    EXPECT_TRUE(is_slab_block(p));
    std::memset(p, 1, 200);  // still mapped
    deallocate(p);           // safe: goes to a queue nobody drains
  }
}

TEST(SlabPoolTest, NothingIsMappedBeforeTheFirstAllocation) {
  // A pool that never allocated maps nothing.
  SlabPool pool(options());
  EXPECT_EQ(pool.stats().bytes_reserved, 0u);
  EXPECT_EQ(pool.stats().high_water, 0u);
  EXPECT_THAT(pool.stats().to_json(), HasSubstr("\"bytes_reserved\":0,"));
}

// Resident 4 KiB pages of [p, p + n), per mincore().
size_t resident_pages(const void* p, size_t n) {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  std::vector<unsigned char> vec((n + page - 1) / page);
  EXPECT_EQ(mincore(const_cast<void*>(p), n, vec.data()), 0);
  return static_cast<size_t>(
      std::count_if(vec.begin(), vec.end(), [](unsigned char v) { return v & 1; }));
}

TEST(SlabPoolTest, TrimGivesBackPagesThatStayedEmpty) {
  SlabPool pool(options());
  // Eight pages of 1 KiB blocks, touched, then all freed.
  std::vector<void*> blocks;
  for (size_t i = 0; i < 8 * kPageSize / 1024; ++i) {
    void* p = pool.try_allocate(1024);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0xAB, 1024);
    blocks.push_back(p);
  }
  uint8_t* first_page = static_cast<uint8_t*>(blocks[0]);  // blocks fill pages in address order
  ASSERT_EQ(reinterpret_cast<uintptr_t>(first_page) % kPageSize, 0u);
  EXPECT_EQ(resident_pages(first_page, kPageSize), kPageSize / 4096);
  for (void* p : blocks) deallocate(p);
  EXPECT_EQ(pool.stats().bytes_released, 0u);
  // Nothing has stayed unused for a whole period between two calls yet.
  EXPECT_EQ(pool.trim(), 0u);
  // Then every page goes: those freed before the first call at the second;
  // the rest (blocks parked in the per-class caches, the page each class
  // keeps) are let go by the second, quiet, call and given back by the third.
  size_t released = pool.trim();
  released += pool.trim();
  EXPECT_EQ(released, 8 * kPageSize);
  EXPECT_EQ(pool.stats().bytes_released, 8 * kPageSize);
  EXPECT_EQ(pool.stats().in_use, 0u);
  EXPECT_EQ(resident_pages(first_page, kPageSize), 0u);
  EXPECT_EQ(pool.trim(), 0u);  // nothing more to give
  // Released pages serve later allocations (faulted in again, zeroed).
  std::vector<void*> again;
  for (size_t i = 0; i < 2 * kPageSize / 4096; ++i) {
    void* p = pool.try_allocate(4096);
    ASSERT_NE(p, nullptr);
    std::memset(p, 0xCD, 4096);
    again.push_back(p);
  }
  EXPECT_EQ(pool.stats().bytes_reserved, 2u << 20);  // no new chunk
  EXPECT_LE(pool.stats().bytes_released, 6 * kPageSize);
  for (void* p : again) deallocate(p);
}

// trim() gives adjacent free pages back together: a page still in use
// between free ones must keep its memory, and the free ones on both sides
// of it must still go. Whole-page blocks, freed in a shuffled order (the
// free-page list is then out of address order).
TEST(SlabPoolTest, TrimGivesBackRunsAroundPagesInUse) {
  SlabPool pool(options());
  constexpr size_t kPages = 24;
  std::vector<uint8_t*> pages;
  for (size_t i = 0; i < kPages; ++i) {
    auto* p = static_cast<uint8_t*>(pool.try_allocate(kPageSize));
    ASSERT_NE(p, nullptr);
    std::memset(p, static_cast<int>(i + 1), kPageSize);
    pages.push_back(p);
  }
  std::sort(pages.begin(), pages.end());
  // Kept: the first, two adjacent ones in the middle, one alone, the last.
  const std::set<size_t> kept = {0, 7, 8, 15, kPages - 1};
  std::vector<size_t> order;
  for (size_t i = 0; i < kPages; ++i) {
    if (!kept.contains(i)) order.push_back(i);
  }
  std::shuffle(order.begin(), order.end(), std::mt19937(42));
  std::vector<uint8_t> before(kPages);
  for (size_t i = 0; i < kPages; ++i) before[i] = pages[i][0];
  for (size_t i : order) deallocate(pages[i]);
  size_t released = 0;
  for (int i = 0; i < 4; ++i) released += pool.trim();
  EXPECT_EQ(released, order.size() * kPageSize);
  EXPECT_EQ(pool.stats().bytes_released, order.size() * kPageSize);
  for (size_t i = 0; i < kPages; ++i) {
    if (kept.contains(i)) {
      EXPECT_EQ(resident_pages(pages[i], kPageSize), kPageSize / 4096) << "page " << i;
      EXPECT_TRUE(
          std::all_of(pages[i], pages[i] + kPageSize, [&](uint8_t b) { return b == before[i]; }))
          << "page " << i;
    } else {
      EXPECT_EQ(resident_pages(pages[i], kPageSize), 0u) << "page " << i;
    }
  }
  // The released pages serve allocations again, zeroed.
  for (size_t n = 0; n < order.size(); ++n) {
    auto* p = static_cast<uint8_t*>(pool.try_allocate(kPageSize));
    ASSERT_NE(p, nullptr);
    EXPECT_TRUE(std::all_of(p, p + kPageSize, [](uint8_t b) { return b == 0; }));
  }
  EXPECT_EQ(pool.stats().bytes_released, 0u);
  EXPECT_EQ(pool.stats().bytes_reserved, 2u << 20);  // no new chunk
}

TEST(SlabPoolTest, TrimKeepsPagesInUse) {
  SlabPool pool(options());
  void* kept = pool.try_allocate(100);
  ASSERT_NE(kept, nullptr);
  std::memset(kept, 0x5A, 100);
  for (int i = 0; i < 4; ++i) pool.trim();
  EXPECT_EQ(pool.stats().bytes_released, 0u);
  for (size_t i = 0; i < 100; ++i) EXPECT_EQ(static_cast<uint8_t*>(kept)[i], 0x5A);
  deallocate(kept);
}

#if !defined(NDEBUG) && !defined(__SANITIZE_THREAD__)
// Debug builds catch a double free on the spot, whether the block sits in the
// class cache or already went back to its page.
TEST(SlabPoolDeathTest, DoubleFreeIsFatalInDebugBuilds) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        SlabPool pool(options());
        void* p = pool.try_allocate(64);
        deallocate(p);
        deallocate(p);
      },
      "double free");
  EXPECT_DEATH(
      {
        SlabPool pool(options());
        auto* p = static_cast<char*>(pool.try_allocate(256));
        deallocate(p + 16);  // not a block start
      },
      "invalid pointer");
}
#endif

}  // namespace
}  // namespace coring::pool
