// Cross-thread frees: blocks allocated by one thread (the owner) and freed by
// others travel back through the owner's queue. Runs under ThreadSanitizer in
// the suite's TSan pass.
#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <mutex>
#include <set>
#include <thread>
#include <vector>

#include "coring/pool/slab_pool.h"

namespace coring::pool {
namespace {

SlabPoolOptions options(size_t capacity = 16 << 20) {
  return SlabPoolOptions{"test.threads.v1", capacity, HugePagePolicy::kNever};
}

TEST(SlabPoolThreadsTest, ForeignFreesComeBackThroughDrain) {
  SlabPool pool(options());
  constexpr int kThreads = 3;
  constexpr int kPerThread = 2000;
  std::vector<std::vector<void*>> batches(kThreads);
  for (auto& batch : batches) {
    for (int i = 0; i < kPerThread; ++i) {
      void* p = pool.try_allocate(96);
      ASSERT_NE(p, nullptr);
      std::memset(p, 0x5a, 96);
      batch.push_back(p);
    }
  }
  EXPECT_EQ(pool.stats().in_use, uint64_t{kThreads} * kPerThread);
  std::vector<std::thread> threads;
  for (auto& batch : batches) {
    threads.emplace_back([&batch] {
      for (void* p : batch) {
        EXPECT_EQ(static_cast<uint8_t*>(p)[95], 0x5a);
        deallocate(p);
      }
    });
  }
  for (auto& t : threads) t.join();

  PoolStats s = pool.stats();
  // Nothing is reclaimed or counted until the owner drains.
  EXPECT_EQ(s.in_use, uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(s.cross_thread_frees, 0u);
  pool.drain();
  s = pool.stats();
  EXPECT_EQ(s.cross_thread_frees, uint64_t{kThreads} * kPerThread);
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(s.frees_total, uint64_t{kThreads} * kPerThread);
  // Reclaimed blocks are reused by the owner: all but the never-used tail of
  // the last page and what the bin still held fresh.
  std::vector<void*> again;
  for (int i = 0; i < kThreads * kPerThread; ++i) again.push_back(pool.try_allocate(96));
  EXPECT_GE(pool.stats().reuses_total, uint64_t{kThreads} * kPerThread - kPageSize / 96 - 64);
  EXPECT_EQ(pool.stats().bytes_reserved, kChunkSize);  // no growth
  for (void* p : again) deallocate(p);
}

// Owner allocates and drains while two other threads free concurrently; no
// block is ever handed out twice.
TEST(SlabPoolThreadsTest, ConcurrentAllocateDrainAndRemoteFree) {
  SlabPool pool(options(4 << 20));
  constexpr int kRounds = 20000;
  struct Channel {
    std::mutex mu;
    std::vector<uint64_t*> blocks;
  };
  Channel channels[2];
  std::atomic<bool> done{false};
  std::atomic<uint64_t> freed{0};
  std::vector<std::thread> freers;
  for (Channel& ch : channels) {
    freers.emplace_back([&ch, &done, &freed] {
      std::vector<uint64_t*> mine;
      while (true) {
        {
          std::lock_guard<std::mutex> lock(ch.mu);
          mine.swap(ch.blocks);
        }
        if (mine.empty()) {
          if (done.load()) {
            std::lock_guard<std::mutex> lock(ch.mu);
            if (ch.blocks.empty()) return;
            continue;
          }
          std::this_thread::yield();
          continue;
        }
        for (uint64_t* p : mine) {
          // The owner stamped the block with its own address: a block handed
          // out twice would carry a foreign stamp.
          EXPECT_EQ(p[1], reinterpret_cast<uint64_t>(p));
          p[1] = 0;
          deallocate(p);
          freed.fetch_add(1, std::memory_order_relaxed);
        }
        mine.clear();
      }
    });
  }
  std::set<uint64_t*> live_check;
  for (int i = 0; i < kRounds; ++i) {
    auto* p = static_cast<uint64_t*>(pool.try_allocate(64 + (i % 4) * 64));
    ASSERT_NE(p, nullptr) << "round " << i;
    p[1] = reinterpret_cast<uint64_t>(p);
    Channel& ch = channels[i % 2];
    {
      std::lock_guard<std::mutex> lock(ch.mu);
      ch.blocks.push_back(p);
    }
    if (i % 64 == 0) pool.drain();
    if (i % 1000 == 999) {
      // Let the freers catch up now and then, so that blocks really do come
      // back while the owner keeps allocating.
      while (freed.load(std::memory_order_relaxed) + 500 < static_cast<uint64_t>(i)) {
        std::this_thread::yield();
      }
    }
  }
  done.store(true);
  for (auto& t : freers) t.join();
  EXPECT_EQ(freed.load(), uint64_t{kRounds});
  pool.drain();
  const PoolStats s = pool.stats();
  EXPECT_EQ(s.in_use, 0u);
  EXPECT_EQ(s.allocs_total, uint64_t{kRounds});
  EXPECT_EQ(s.frees_total, uint64_t{kRounds});
  EXPECT_EQ(s.cross_thread_frees, uint64_t{kRounds});
  EXPECT_GT(s.reuses_total, 0u);  // drained blocks were handed out again
}

// A pool that hits its capacity drains foreign frees itself before failing.
TEST(SlabPoolThreadsTest, ExhaustedPoolRecoversFromRemoteFrees) {
  SlabPool pool(options(kPageSize));  // one page: 16 blocks of 4 KiB
  std::vector<void*> blocks;
  while (void* p = pool.try_allocate(4096)) blocks.push_back(p);
  ASSERT_EQ(blocks.size(), 16u);
  EXPECT_EQ(pool.allocate(4096).status().code(), absl::StatusCode::kResourceExhausted);
  std::thread([&blocks] {
    for (void* p : blocks) deallocate(p);
  }).join();
  // No explicit drain(): the slow path does it.
  for (int i = 0; i < 16; ++i) EXPECT_NE(pool.try_allocate(4096), nullptr) << i;
  EXPECT_EQ(pool.stats().cross_thread_frees, 16u);
}

// The owner is the first thread that allocates, not the constructing one.
TEST(SlabPoolThreadsTest, OwnerIsTheFirstAllocatingThread) {
  SlabPool pool(options());
  std::atomic<void*> handed{nullptr};
  std::atomic<bool> freed{false};
  std::thread owner([&] {
    void* p = pool.try_allocate(64);
    deallocate(p);  // local on the owner: no cross-thread free
    EXPECT_EQ(pool.stats().cross_thread_frees, 0u);
    handed.store(pool.try_allocate(64));
    while (!freed.load()) std::this_thread::yield();
    pool.drain();
    EXPECT_EQ(pool.stats().in_use, 0u);
    EXPECT_EQ(pool.stats().frees_total, 2u);
  });
  void* p = nullptr;
  while ((p = handed.load()) == nullptr) std::this_thread::yield();
  deallocate(p);  // the constructing thread is foreign
  freed.store(true);
  owner.join();
  EXPECT_EQ(pool.stats().cross_thread_frees, 1u);
}

// Blocks freed by other threads after their pool died are safe (leaked).
TEST(SlabPoolThreadsTest, RemoteFreeAfterPoolDestroyedDoesNotCrash) {
  std::vector<void*> blocks;
  auto pool = std::make_unique<SlabPool>(options());
  for (int i = 0; i < 100; ++i) blocks.push_back(pool->try_allocate(128));
  testing::internal::CaptureStderr();
  pool.reset();
  EXPECT_NE(testing::internal::GetCapturedStderr().find("100 blocks still allocated"),
            std::string::npos);
  std::vector<std::thread> threads;
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&blocks, t] {
      for (size_t i = t; i < blocks.size(); i += 2) deallocate(blocks[i]);
    });
  }
  for (auto& th : threads) th.join();
  for (void* p : blocks) EXPECT_TRUE(is_slab_block(p));
}

}  // namespace
}  // namespace coring::pool
