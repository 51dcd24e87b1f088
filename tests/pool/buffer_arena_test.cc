#include "coring/pool/buffer_arena.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <set>
#include <vector>

namespace coring::pool {
namespace {

using ::testing::HasSubstr;

BufferArenaOptions options() {
  BufferArenaOptions o;
  o.name = "test.io.v1";
  o.classes = {{65536, 4}, {4096, 8}};  // unsorted on purpose
  o.carve_bytes = 64 * 1024;
  o.huge_pages = HugePagePolicy::kNever;
  return o;
}

TEST(BufferArenaTest, RegionsAreOnePerClassThenCarve) {
  absl::StatusOr<BufferArena> arena = BufferArena::create(options());
  ASSERT_TRUE(arena.ok()) << arena.status();
  absl::Span<const struct iovec> regions = arena->regions();
  ASSERT_EQ(regions.size(), 3u);
  EXPECT_EQ(regions[0].iov_len, 4096u * 8);
  EXPECT_EQ(regions[1].iov_len, 65536u * 4);
  EXPECT_EQ(regions[2].iov_len, 65536u);
  for (const struct iovec& r : regions) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(r.iov_base) % 4096, 0u);
  }
  // One contiguous mapping, in order.
  EXPECT_EQ(static_cast<uint8_t*>(regions[1].iov_base),
            static_cast<uint8_t*>(regions[0].iov_base) + regions[0].iov_len);
  EXPECT_EQ(arena->registered_bytes(), 4096u * 8 + 65536u * 4 + 65536u);
}

TEST(BufferArenaTest, LeasePicksSmallestFittingClassAndKnowsItsRegion) {
  absl::StatusOr<BufferArena> arena = BufferArena::create(options());
  ASSERT_TRUE(arena.ok());
  absl::StatusOr<BufferLease> small = arena->acquire(1500);
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->size(), 4096u);
  EXPECT_EQ(small->buf_index(), 0);
  EXPECT_EQ(small->span().size(), 4096u);
  absl::StatusOr<BufferLease> zero = arena->acquire(0);
  ASSERT_TRUE(zero.ok());
  EXPECT_EQ(zero->size(), 4096u);
  absl::StatusOr<BufferLease> big = arena->acquire(4097);
  ASSERT_TRUE(big.ok());
  EXPECT_EQ(big->size(), 65536u);
  EXPECT_EQ(big->buf_index(), 1);
  // The lease's address is inside its registered region at region_offset().
  const struct iovec& r = arena->regions()[big->buf_index()];
  EXPECT_EQ(big->data(), static_cast<uint8_t*>(r.iov_base) + big->region_offset());
  absl::StatusOr<BufferAddress> where = arena->locate(big->data() + 10);
  ASSERT_TRUE(where.ok());
  EXPECT_EQ(where->buf_index, 1);
  EXPECT_EQ(where->offset, big->region_offset() + 10);
  int outside = 0;
  EXPECT_EQ(arena->locate(&outside).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(arena->acquire(65537).status().code(), absl::StatusCode::kInvalidArgument);
}

// What a send asks of every buffer it writes from: the registered region
// that holds all of it, or -1 (not registered: sent without a fixed buffer).
TEST(BufferArenaTest, RegionIndexIsTheRegionHoldingAllOfTheBytes) {
  absl::StatusOr<BufferArena> arena = BufferArena::create(options());
  ASSERT_TRUE(arena.ok());
  const absl::Span<const struct iovec> regions = arena->regions();
  ASSERT_EQ(regions.size(), 3u);  // two classes, then the carve region
  for (size_t i = 0; i < regions.size(); ++i) {
    const auto* base = static_cast<const uint8_t*>(regions[i].iov_base);
    const size_t len = regions[i].iov_len;
    EXPECT_EQ(arena->region_index(base, len), static_cast<int32_t>(i)) << "region " << i;
    EXPECT_EQ(arena->region_index(base + len - 1, 1), static_cast<int32_t>(i)) << "region " << i;
    EXPECT_EQ(arena->region_index(base + len / 2, 0), static_cast<int32_t>(i)) << "region " << i;
    if (i + 1 < regions.size()) {
      // Adjacent regions: bytes across the boundary are in neither.
      EXPECT_EQ(arena->region_index(base + len - 1, 2), -1) << "across region " << i;
    }
  }
  const auto* first = static_cast<const uint8_t*>(regions.front().iov_base);
  const auto* end = static_cast<const uint8_t*>(regions.back().iov_base) + regions.back().iov_len;
  EXPECT_EQ(arena->region_index(first - 1, 1), -1);
  EXPECT_EQ(arena->region_index(end - 1, 2), -1);  // runs past the arena
  EXPECT_EQ(arena->region_index(end, 1), -1);
  int outside = 0;
  EXPECT_EQ(arena->region_index(&outside, sizeof outside), -1);
  absl::StatusOr<BufferBlock> carved = arena->carve(2, 4096);
  ASSERT_TRUE(carved.ok()) << carved.status();
  EXPECT_EQ(arena->region_index(carved->buffer(1), 4096), 2);
}

TEST(BufferArenaTest, ExhaustionNamesTheClassAndRecovers) {
  absl::StatusOr<BufferArena> arena = BufferArena::create(options());
  ASSERT_TRUE(arena.ok());
  std::vector<BufferLease> leases;
  std::set<uint8_t*> distinct;
  for (int i = 0; i < 8; ++i) {
    absl::StatusOr<BufferLease> l = arena->acquire(4096);
    ASSERT_TRUE(l.ok()) << i;
    std::memset(l->data(), i, l->size());
    distinct.insert(l->data());
    leases.push_back(*std::move(l));
  }
  EXPECT_EQ(distinct.size(), 8u);
  absl::StatusOr<BufferLease> none = arena->acquire(100);
  ASSERT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("test.io.v1"));
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("all 8 buffers of 4096 bytes"));
  for (int i = 0; i < 8; ++i) EXPECT_EQ(leases[i].data()[4095], i);
  uint8_t* returned = leases[3].data();
  leases[3].reset();
  absl::StatusOr<BufferLease> again = arena->acquire(100);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->data(), returned);
  const PoolStats s = arena->stats();
  EXPECT_EQ(s.allocs_total, 9u);
  EXPECT_EQ(s.frees_total, 1u);
  EXPECT_EQ(s.reuses_total, 1u);
  EXPECT_EQ(s.in_use, 8u);
  EXPECT_EQ(s.high_water, 8u);
  EXPECT_EQ(s.kind, "buffer_arena");
  EXPECT_EQ(s.huge_pages, HugePageMode::kNone);
  EXPECT_GE(s.bytes_reserved, arena->registered_bytes());
}

TEST(BufferArenaTest, LeasesAreMoveOnlyAndReturnOnDestruction) {
  static_assert(!std::is_copy_constructible_v<BufferLease>);
  static_assert(std::is_nothrow_move_constructible_v<BufferLease>);
  absl::StatusOr<BufferArena> arena = BufferArena::create(options());
  ASSERT_TRUE(arena.ok());
  {
    BufferLease a = *arena->acquire(10);
    BufferLease b = std::move(a);
    EXPECT_FALSE(a.valid());
    EXPECT_TRUE(b.valid());
    EXPECT_EQ(arena->stats().in_use, 1u);
    BufferLease c = *arena->acquire(10);
    c = std::move(b);  // c's old buffer goes back
    EXPECT_EQ(arena->stats().in_use, 1u);
  }
  EXPECT_EQ(arena->stats().in_use, 0u);
  EXPECT_EQ(arena->stats().frees_total, 2u);
}

TEST(BufferArenaTest, CarveGivesContiguousBuffersAndCoalesces) {
  absl::StatusOr<BufferArena> arena = BufferArena::create(options());
  ASSERT_TRUE(arena.ok());
  absl::StatusOr<BufferBlock> a = arena->carve(8, 2048);  // 16 KiB
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->count(), 8u);
  EXPECT_EQ(a->buffer_size(), 2048u);
  EXPECT_EQ(a->buf_index(), 2);
  EXPECT_EQ(a->buffer(1), a->buffer(0) + 2048);
  EXPECT_EQ(a->buffer(7) + 2048, a->data() + a->size_bytes());
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a->data()) % 4096, 0u);
  const struct iovec& r = arena->regions()[a->buf_index()];
  EXPECT_EQ(a->data(), static_cast<uint8_t*>(r.iov_base) + a->region_offset());
  std::memset(a->data(), 1, a->size_bytes());

  absl::StatusOr<BufferBlock> b = arena->carve(3, 5000);  // 15000 -> 16 KiB
  ASSERT_TRUE(b.ok());
  absl::StatusOr<BufferBlock> c = arena->carve(1, 32 * 1024);
  ASSERT_TRUE(c.ok());
  // 64 KiB region: 16 + 16 + 32 used.
  absl::StatusOr<BufferBlock> none = arena->carve(1, 1);
  ASSERT_EQ(none.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(none.status().message()), HasSubstr("largest free run 0 bytes"));
  // Free a and b: adjacent runs merge into 32 KiB.
  *a = BufferBlock();
  b->reset();
  absl::StatusOr<BufferBlock> merged = arena->carve(2, 16 * 1024);
  ASSERT_TRUE(merged.ok()) << merged.status();
  EXPECT_EQ(merged->region_offset(), 0u);
  EXPECT_EQ(arena->stats().reuses_total, 1u);

  EXPECT_EQ(arena->carve(0, 4096).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(arena->carve(4, 0).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(arena->carve(40000, 64).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(BufferArenaTest, BadOptionsAreInvalidArgument) {
  auto with = [](auto edit) {
    BufferArenaOptions o = options();
    edit(o);
    return BufferArena::create(std::move(o)).status();
  };
  EXPECT_EQ(with([](BufferArenaOptions& o) { o.name = "bad"; }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](BufferArenaOptions& o) { o.classes.clear(); }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](BufferArenaOptions& o) {
              o.classes = {{0, 4}};
            }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](BufferArenaOptions& o) {
              o.classes = {{100, 4}};
            }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](BufferArenaOptions& o) {
              o.classes = {{4096, 0}};
            }).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(with([](BufferArenaOptions& o) {
              o.classes = {{4096, 2}, {4096, 3}};
            }).code(),
            absl::StatusCode::kInvalidArgument);
  const absl::Status huge = with([](BufferArenaOptions& o) { o.classes = {{1 << 20, 2048}}; });
  EXPECT_EQ(huge.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(huge.message()), HasSubstr("1 GiB"));
  // No carve region is allowed; carve() then reports exhaustion.
  BufferArenaOptions no_carve = options();
  no_carve.carve_bytes = 0;
  absl::StatusOr<BufferArena> arena = BufferArena::create(std::move(no_carve));
  ASSERT_TRUE(arena.ok());
  EXPECT_EQ(arena->regions().size(), 2u);
  EXPECT_EQ(arena->carve(1, 64).status().code(), absl::StatusCode::kResourceExhausted);
}

TEST(BufferArenaTest, LeasesMayOutliveTheArena) {
  std::optional<BufferLease> lease;
  std::optional<BufferBlock> block;
  {
    absl::StatusOr<BufferArena> arena = BufferArena::create(options());
    ASSERT_TRUE(arena.ok());
    lease.emplace(*arena->acquire(4096));
    block.emplace(*arena->carve(2, 4096));
  }
  // Memory is still mapped until the last lease goes (ASan would catch a
  // use-after-free of the arena's bookkeeping).
  std::memset(lease->data(), 7, lease->size());
  std::memset(block->data(), 7, block->size_bytes());
  lease.reset();
  block.reset();
}

TEST(BufferArenaTest, MovedArenaKeepsWorking) {
  absl::StatusOr<BufferArena> arena = BufferArena::create(options());
  ASSERT_TRUE(arena.ok());
  BufferLease lease = *arena->acquire(10);
  BufferArena moved = *std::move(arena);
  lease.reset();
  EXPECT_EQ(moved.stats().frees_total, 1u);
  EXPECT_EQ(moved.name(), "test.io.v1");
}

TEST(BufferArenaTest, HugePagesAutoReportsWhatItGot) {
  BufferArenaOptions o = options();
  o.huge_pages = HugePagePolicy::kAuto;
  absl::StatusOr<BufferArena> arena = BufferArena::create(std::move(o));
  ASSERT_TRUE(arena.ok());
  const HugePageSupport support = detect_huge_page_support();
  const HugePageMode mode = arena->stats().huge_pages;
  if (support.free_explicit_pages == 0 && !support.transparent) {
    EXPECT_EQ(mode, HugePageMode::kNone);
  } else {
    EXPECT_NE(mode, HugePageMode::kNone);
  }
  if (mode != HugePageMode::kNone) {
    EXPECT_EQ(reinterpret_cast<uintptr_t>(arena->regions()[0].iov_base) % kHugePageSize, 0u);
  }
}

}  // namespace
}  // namespace coring::pool
