// PostQueue: the lock-free multi-producer, single-consumer FIFO that carries
// work to an EventLoop from other threads (Vyukov's intrusive queue).
//
// Nodes are intrusive: a switch_to() awaitable embeds its node in the
// coroutine frame; post(fn) allocates one node per message from the posting
// thread's frame allocator (its slab pool when it runs a loop) and the node
// frees itself after running on the target thread.
//
// push() may run on any thread; pop() only on the consumer's. pop() can return
// nullptr while a producer is half-way through push(); that producer then
// sends a wake-up of its own (see EventLoop::post_node), so nothing is lost.
#pragma once

#include <atomic>

namespace coring {

struct PostNode {
  std::atomic<PostNode*> next{nullptr};
  // Runs the node's work and releases the node. Never throws.
  void (*run)(PostNode* self) noexcept = nullptr;
};

class PostQueue {
 public:
  PostQueue() noexcept : head_(&stub_), tail_(&stub_) {}
  PostQueue(const PostQueue&) = delete;
  PostQueue& operator=(const PostQueue&) = delete;

  void push(PostNode* node) noexcept {
    node->next.store(nullptr, std::memory_order_relaxed);
    PostNode* prev = head_.exchange(node, std::memory_order_acq_rel);
    prev->next.store(node, std::memory_order_release);
  }

  // Consumer only.
  PostNode* pop() noexcept {
    PostNode* tail = tail_;
    PostNode* next = tail->next.load(std::memory_order_acquire);
    if (tail == &stub_) {
      if (next == nullptr) return nullptr;
      tail_ = next;
      tail = next;
      next = next->next.load(std::memory_order_acquire);
    }
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    if (tail != head_.load(std::memory_order_acquire)) return nullptr;  // a push in progress
    push(&stub_);
    next = tail->next.load(std::memory_order_acquire);
    if (next != nullptr) {
      tail_ = next;
      return tail;
    }
    return nullptr;
  }

  // Consumer only: true when nothing is queued (or a push is in progress).
  bool empty() const noexcept {
    return tail_ == &stub_ && stub_.next.load(std::memory_order_acquire) == nullptr;
  }

 private:
  alignas(64) std::atomic<PostNode*> head_;
  alignas(64) PostNode* tail_;
  PostNode stub_;
};

}  // namespace coring
