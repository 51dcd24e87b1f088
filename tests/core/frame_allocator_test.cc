#include "coring/core/frame_allocator.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <thread>
#include <vector>

#include "coring/core/task.h"
#include "coring/pool/slab_pool.h"
#include "task_test_support.h"

namespace coring {
namespace {

using testing::run_sync;

pool::SlabPool make_pool(size_t capacity = 8 << 20) {
  return pool::SlabPool({.name = "coring.test_frames.v1", .capacity_bytes = capacity});
}

Task<int> add(int a, int b) { co_return a + b; }

TEST(FrameAllocatorTest, UsesTheHeapWithoutAScope) {
  EXPECT_EQ(current_frame_pool(), nullptr);
  void* p = frame_allocate(200);
  EXPECT_FALSE(pool::is_slab_block(p));
  std::memset(p, 0xab, 200);
  frame_deallocate(p, 200);

  Task<int> t = add(1, 2);
  EXPECT_FALSE(pool::is_slab_block(t.handle().address()));
  EXPECT_EQ(run_sync(std::move(t)), 3);
}

TEST(FrameAllocatorTest, UsesTheInstalledPool) {
  pool::SlabPool slab = make_pool();
  FrameAllocatorScope scope(&slab);
  EXPECT_EQ(current_frame_pool(), &slab);
  void* p = frame_allocate(200);
  EXPECT_TRUE(slab.owns(p));
  std::memset(p, 0xab, 200);
  frame_deallocate(p, 200);

  Task<int> t = add(2, 3);
  EXPECT_TRUE(slab.owns(t.handle().address()));
  EXPECT_EQ(run_sync(std::move(t)), 5);
  EXPECT_EQ(slab.stats().in_use, 0u);  // every frame went back
}

// A frame starts where its slab block does (its origin word lies past it),
// so one whose block class is a multiple of 64 bytes starts on a cache line:
// connection state and handler frames are laid out for that.
TEST(FrameAllocatorTest, FramesOfLargeClassesStartOnACacheLine) {
  pool::SlabPool slab = make_pool();
  FrameAllocatorScope scope(&slab);
  for (size_t size : {248u, 300u, 700u, 1200u, 4000u}) {
    std::vector<void*> frames;
    for (int i = 0; i < 5; ++i) {
      void* p = frame_allocate(size);
      ASSERT_TRUE(slab.owns(p)) << size;
      EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 64, 0u) << size << " bytes, frame " << i;
      std::memset(p, 0xab, size);  // all of it is the frame's (ASan checks)
      frames.push_back(p);
    }
    for (void* p : frames) frame_deallocate(p, size);
  }
  EXPECT_EQ(slab.stats().in_use, 0u);
}

TEST(FrameAllocatorTest, ScopesNestAndRestore) {
  pool::SlabPool outer = make_pool();
  pool::SlabPool inner = make_pool();
  {
    FrameAllocatorScope a(&outer);
    {
      FrameAllocatorScope b(&inner);
      EXPECT_EQ(current_frame_pool(), &inner);
      {
        FrameAllocatorScope heap(nullptr);
        EXPECT_EQ(current_frame_pool(), nullptr);
        void* p = frame_allocate(100);
        EXPECT_FALSE(pool::is_slab_block(p));
        frame_deallocate(p, 100);
      }
      EXPECT_EQ(current_frame_pool(), &inner);
    }
    EXPECT_EQ(current_frame_pool(), &outer);
  }
  EXPECT_EQ(current_frame_pool(), nullptr);
}

TEST(FrameAllocatorTest, FallsBackToTheHeapForLargeFrames) {
  pool::SlabPool slab = make_pool();
  FrameAllocatorScope scope(&slab);
  void* big = frame_allocate(64 * 1024);  // with the header, above the slab limit
  EXPECT_FALSE(pool::is_slab_block(big));
  std::memset(big, 1, 64 * 1024);
  frame_deallocate(big, 64 * 1024);

  // A frame holding a large local.
  auto large = []() -> Task<int> {
    char buffer[100 * 1024];
    std::memset(buffer, 7, sizeof(buffer));
    co_await testing::CurrentStopToken{};  // keeps `buffer` in the frame
    co_return buffer[12345];
  };
  Task<int> t = large();
  EXPECT_FALSE(pool::is_slab_block(t.handle().address()));
  EXPECT_EQ(run_sync(std::move(t)), 7);
}

TEST(FrameAllocatorTest, FallsBackToTheHeapWhenThePoolIsExhausted) {
  pool::SlabPool slab = make_pool(64 * 1024);  // a single page
  FrameAllocatorScope scope(&slab);
  std::vector<void*> blocks;
  bool saw_heap = false;
  for (int i = 0; i < 200 && !saw_heap; ++i) {
    void* p = frame_allocate(1000);
    std::memset(p, i, 1000);
    blocks.push_back(p);
    saw_heap = !slab.owns(p);
  }
  EXPECT_TRUE(saw_heap);
  EXPECT_TRUE(slab.owns(blocks.front()));
  for (void* p : blocks) frame_deallocate(p, 1000);  // each goes back where it came from
  EXPECT_EQ(slab.stats().in_use, 0u);
  void* again = frame_allocate(1000);
  EXPECT_TRUE(slab.owns(again));
  frame_deallocate(again, 1000);
}

TEST(FrameAllocatorTest, AFrameCanBeFreedOnAnotherThread) {
  pool::SlabPool slab = make_pool();
  FrameAllocatorScope scope(&slab);
  constexpr int kTasks = 1000;
  std::vector<Task<int>> tasks;
  for (int i = 0; i < kTasks; ++i) tasks.push_back(add(i, 1));
  for (const Task<int>& t : tasks) ASSERT_TRUE(slab.owns(t.handle().address()));
  EXPECT_EQ(slab.stats().in_use, static_cast<uint64_t>(kTasks));

  // Another thread runs half of them and destroys all (no scope there).
  long sum = 0;
  std::thread other([&] {
    EXPECT_EQ(current_frame_pool(), nullptr);
    for (int i = 0; i < kTasks / 2; ++i) sum += run_sync(std::move(tasks[i]));
    tasks.clear();
  });
  other.join();
  EXPECT_EQ(sum, static_cast<long>((kTasks / 2) * (kTasks / 2 - 1) / 2 + kTasks / 2));

  slab.drain();  // takes the foreign frees back
  EXPECT_EQ(slab.stats().in_use, 0u);
  EXPECT_GE(slab.stats().cross_thread_frees, static_cast<uint64_t>(kTasks));
  Task<int> reused = add(1, 1);
  EXPECT_TRUE(slab.owns(reused.handle().address()));
}

}  // namespace
}  // namespace coring
