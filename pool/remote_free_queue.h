// RemoteFreeQueue: how blocks freed on a foreign thread travel back to the
// thread that owns them.
//
// A lock-free multi-producer, single-consumer Treiber stack, intrusive: the
// freed block's first 8 bytes hold the link, so pushing allocates nothing.
// Producers push one block with a CAS; the owner takes the whole stack at
// once with an exchange (take_all), which is what makes it ABA-free: nodes
// are never popped one by one while producers race. empty() is a plain load,
// so an owner that drains every loop iteration pays no atomic
// read-modify-write when nothing arrived.
#pragma once

#include <atomic>

namespace coring::pool {

class RemoteFreeQueue {
 public:
  struct Node {
    Node* next;
  };

  RemoteFreeQueue() = default;
  RemoteFreeQueue(const RemoteFreeQueue&) = delete;
  RemoteFreeQueue& operator=(const RemoteFreeQueue&) = delete;

  // Any thread. `block` must be at least 8 bytes and 8-byte aligned; it
  // belongs to the queue's consumer from the moment push returns.
  void push(void* block) noexcept {
    Node* node = static_cast<Node*>(block);
    Node* head = head_.load(std::memory_order_relaxed);
    do {
      node->next = head;
    } while (!head_.compare_exchange_weak(head, node, std::memory_order_release,
                                          std::memory_order_relaxed));
  }

  // Consumer only: every pushed block, newest first (nullptr if none).
  Node* take_all() noexcept {
    if (empty()) return nullptr;
    return head_.exchange(nullptr, std::memory_order_acquire);
  }

  bool empty() const noexcept { return head_.load(std::memory_order_relaxed) == nullptr; }

 private:
  std::atomic<Node*> head_{nullptr};
};

}  // namespace coring::pool
