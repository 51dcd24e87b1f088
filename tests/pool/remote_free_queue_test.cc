#include "coring/pool/remote_free_queue.h"

#include <gtest/gtest.h>

#include <set>
#include <thread>
#include <vector>

namespace coring::pool {
namespace {

TEST(RemoteFreeQueueTest, TakeAllReturnsEverythingNewestFirst) {
  RemoteFreeQueue q;
  EXPECT_TRUE(q.empty());
  EXPECT_EQ(q.take_all(), nullptr);
  alignas(8) char blocks[3][64];
  for (auto& b : blocks) q.push(b);
  EXPECT_FALSE(q.empty());
  RemoteFreeQueue::Node* n = q.take_all();
  EXPECT_EQ(static_cast<void*>(n), blocks[2]);
  EXPECT_EQ(static_cast<void*>(n->next), blocks[1]);
  EXPECT_EQ(static_cast<void*>(n->next->next), blocks[0]);
  EXPECT_EQ(n->next->next->next, nullptr);
  EXPECT_TRUE(q.empty());
}

TEST(RemoteFreeQueueTest, ConcurrentProducersLoseNothing) {
  RemoteFreeQueue q;
  constexpr int kProducers = 3;
  constexpr int kEach = 20000;
  std::vector<std::vector<RemoteFreeQueue::Node>> nodes(kProducers,
                                                        std::vector<RemoteFreeQueue::Node>(kEach));
  std::vector<std::thread> producers;
  for (auto& mine : nodes) {
    producers.emplace_back([&mine, &q] {
      for (auto& node : mine) q.push(&node);
    });
  }
  std::set<RemoteFreeQueue::Node*> seen;
  auto consume = [&] {
    for (RemoteFreeQueue::Node* n = q.take_all(); n != nullptr; n = n->next) {
      EXPECT_TRUE(seen.insert(n).second) << "node delivered twice";
    }
  };
  while (seen.size() < size_t{kProducers} * kEach) {
    consume();
    if (seen.size() < size_t{kProducers} * kEach) std::this_thread::yield();
  }
  for (auto& t : producers) t.join();
  consume();
  EXPECT_EQ(seen.size(), size_t{kProducers} * kEach);
}

}  // namespace
}  // namespace coring::pool
