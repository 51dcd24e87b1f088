// WriteLock: a FIFO, single-thread async mutex over a TLS connection's
// outgoing records. Encrypting is synchronous, but handing the ciphertext to
// the socket may wait (backpressure, a large write sent without a copy); a
// second writer must not encrypt meanwhile, or its records would reach the
// kernel before the first one's (TLS sequence numbers forbid it). Waiters
// live in their awaiting coroutines' frames; no allocation.
#pragma once

#include <coroutine>
#include <utility>

#include "coring/core/event_loop.h"

namespace coring::tls::detail {

class WriteLock {
 public:
  class Acquire;

  bool held() const noexcept { return held_; }
  // Takes the lock if it is free.
  bool try_lock() noexcept { return !std::exchange(held_, true); }
  Acquire lock() noexcept;
  // Passes the lock to the first waiter (resumed from the loop), or frees it.
  void unlock() noexcept;

 private:
  friend class Acquire;
  Acquire* head_ = nullptr;
  Acquire* tail_ = nullptr;
  bool held_ = false;
};

class WriteLock::Acquire {
 public:
  explicit Acquire(WriteLock* lock) noexcept : lock_(lock) {}
  Acquire(const Acquire&) = delete;
  Acquire& operator=(const Acquire&) = delete;
  // A coroutine destroyed while it waits leaves the queue.
  ~Acquire() {
    if (!waiting_) return;
    Acquire** p = &lock_->head_;
    Acquire* prev = nullptr;
    while (*p != this) {
      prev = *p;
      p = &(*p)->next_;
    }
    *p = next_;
    if (lock_->tail_ == this) lock_->tail_ = prev;
  }

  bool await_ready() noexcept { return lock_->try_lock(); }
  void await_suspend(std::coroutine_handle<> h) noexcept {
    handle_ = h;
    waiting_ = true;
    if (lock_->tail_ != nullptr) {
      lock_->tail_->next_ = this;
    } else {
      lock_->head_ = this;
    }
    lock_->tail_ = this;
  }
  void await_resume() noexcept {}

 private:
  friend class WriteLock;
  WriteLock* lock_;
  Acquire* next_ = nullptr;
  std::coroutine_handle<> handle_;
  bool waiting_ = false;
};

inline WriteLock::Acquire WriteLock::lock() noexcept { return Acquire(this); }

// Unlocks when it goes: also when the coroutine holding the lock is
// destroyed while it waits for its send, so later writers are not stuck.
class WriteLockGuard {
 public:
  explicit WriteLockGuard(WriteLock& lock) noexcept : lock_(&lock) {}
  WriteLockGuard(const WriteLockGuard&) = delete;
  WriteLockGuard& operator=(const WriteLockGuard&) = delete;
  ~WriteLockGuard() { lock_->unlock(); }

 private:
  WriteLock* lock_;
};

inline void WriteLock::unlock() noexcept {
  Acquire* next = head_;
  if (next == nullptr) {
    held_ = false;
    return;
  }
  head_ = next->next_;
  if (head_ == nullptr) tail_ = nullptr;
  next->waiting_ = false;  // the lock is its now (held_ stays true)
  EventLoop::current()->schedule(next->handle_);
}

}  // namespace coring::tls::detail
