// Tests of core/operation.*: slot allocation, generations, reuse.
#include "coring/core/operation.h"

#include <gtest/gtest.h>

#include <set>

namespace coring {
namespace {

struct NullTarget : OpTarget {
  void on_complete(const OpResult&) noexcept override {}
};

TEST(OpTableTest, StaleUserDataIsRejectedAfterReuse) {
  OpTable table;
  NullTarget target;
  const uint32_t a = table.acquire(&target);
  const uint64_t old_ud = table.user_data(a);
  EXPECT_EQ(table.lookup(old_ud), &table[a]);
  table.release(a);
  EXPECT_EQ(table.lookup(old_ud), nullptr);
  const uint32_t b = table.acquire(&target);
  EXPECT_EQ(a, b);  // LIFO reuse
  EXPECT_NE(table.user_data(b), old_ud);
  EXPECT_EQ(table.lookup(old_ud), nullptr);
  EXPECT_EQ(table.lookup(table.user_data(b)), &table[b]);
  EXPECT_EQ(table.in_use(), 1u);
}

TEST(OpTableTest, GrowsInChunksWithStableAddresses) {
  OpTable table;
  NullTarget target;
  std::set<uint32_t> seen;
  const uint32_t first = table.acquire(&target);
  OpSlot* first_addr = &table[first];
  for (int i = 0; i < 1000; ++i) seen.insert(table.acquire(&target));
  EXPECT_EQ(seen.size(), 1000u);
  EXPECT_EQ(&table[first], first_addr);
  EXPECT_GE(table.capacity(), 1001u);
  EXPECT_EQ(table.in_use(), 1001u);
  const size_t capacity = table.capacity();
  for (uint32_t i : seen) table.release(i);
  for (int i = 0; i < 1000; ++i) table.acquire(&target);
  EXPECT_EQ(table.capacity(), capacity);  // steady state: no growth
}

TEST(OpTableTest, UnknownIndexIsNotFound) {
  OpTable table;
  EXPECT_EQ(table.lookup(12345), nullptr);
  EXPECT_EQ(table.lookup(kInternalBit | 7), nullptr);
}

}  // namespace
}  // namespace coring
