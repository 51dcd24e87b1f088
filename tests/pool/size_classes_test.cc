#include "coring/pool/size_classes.h"

#include <gtest/gtest.h>

namespace coring::pool {
namespace {

TEST(SizeClassesTest, ClassesAscendAndAreSixteenByteMultiples) {
  for (uint32_t c = 0; c < kSizeClassCount; ++c) {
    EXPECT_EQ(size_class_bytes(c) % 16, 0u) << c;
    if (c > 0) {
      EXPECT_GT(size_class_bytes(c), size_class_bytes(c - 1)) << c;
    }
  }
  EXPECT_EQ(size_class_bytes(0), kMinBlockSize);
  EXPECT_EQ(size_class_bytes(kSizeClassCount - 1), kMaxBlockSize);
}

TEST(SizeClassesTest, EveryRequestGetsTheSmallestClassThatFits) {
  for (size_t n = 0; n <= kMaxBlockSize; ++n) {
    const uint32_t c = size_class_of(n);
    ASSERT_LT(c, kSizeClassCount) << n;
    ASSERT_GE(size_class_bytes(c), n) << n;
    if (c > 0) {
      ASSERT_LT(size_class_bytes(c - 1), n) << n;
    }
  }
}

TEST(SizeClassesTest, InternalWasteAtMostTwentyFivePercentFromSixtyFourBytes) {
  for (size_t n = kMinBlockSize; n <= kMaxBlockSize; ++n) {
    const size_t block = size_class_bytes(size_class_of(n));
    ASSERT_LE((block - n) * 4, block) << n;  // waste / block <= 25%
  }
}

TEST(SizeClassesTest, Boundaries) {
  EXPECT_EQ(size_class_bytes(size_class_of(0)), 64u);
  EXPECT_EQ(size_class_bytes(size_class_of(1)), 64u);
  EXPECT_EQ(size_class_bytes(size_class_of(64)), 64u);
  EXPECT_EQ(size_class_bytes(size_class_of(65)), 80u);
  EXPECT_EQ(size_class_bytes(size_class_of(65536)), 65536u);
}

}  // namespace
}  // namespace coring::pool
