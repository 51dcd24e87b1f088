#include "coring/pool/mapped_region.h"

#include <gtest/gtest.h>

#include <cstring>
#include <utility>

namespace coring::pool {
namespace {

TEST(MappedRegionTest, PlainMappingIsAlignedAndWritable) {
  absl::StatusOr<MappedRegion> r = MappedRegion::map(100000, 1 << 21, HugePagePolicy::kNever);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(reinterpret_cast<uintptr_t>(r->data()) % (1 << 21), 0u);
  EXPECT_EQ(r->size(), 102400u);  // rounded to 4 KiB
  EXPECT_EQ(r->huge_pages(), HugePageMode::kNone);
  std::memset(r->data(), 0xff, r->size());
  MappedRegion moved = *std::move(r);
  EXPECT_EQ(moved.data()[0], 0xff);
  EXPECT_EQ(moved.size(), 102400u);
}

TEST(MappedRegionTest, BadArgumentsAreRejected) {
  EXPECT_EQ(MappedRegion::map(0, 4096, HugePagePolicy::kNever).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MappedRegion::map(4096, 3000, HugePagePolicy::kNever).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(MappedRegionTest, AutoUsesWhatTheSystemOffers) {
  absl::StatusOr<MappedRegion> r = MappedRegion::map(4 << 20, 1 << 21, HugePagePolicy::kAuto);
  ASSERT_TRUE(r.ok()) << r.status();
  const HugePageSupport s = detect_huge_page_support();
  if (s.free_explicit_pages >= 2) {
    EXPECT_EQ(r->huge_pages(), HugePageMode::kExplicit);
  } else if (s.transparent) {
    EXPECT_EQ(r->huge_pages(), HugePageMode::kTransparent);
  } else {
    EXPECT_EQ(r->huge_pages(), HugePageMode::kNone);
  }
  if (r->huge_pages() != HugePageMode::kNone) {
    EXPECT_EQ(r->size() % kHugePageSize, 0u);
  }
  EXPECT_EQ(to_string(HugePageMode::kTransparent), "transparent");
}

}  // namespace
}  // namespace coring::pool
