// MultishotStream: the common half of multishot operations (accept, recv),
// presented to a coroutine as an async stream of CQE results.
//
// The op is armed lazily by the first next() and stays armed across many
// CQEs (IORING_CQE_F_MORE). Results that arrive while nobody waits are
// queued (the queue grows to its high-water mark, then allocates no more).
// When the kernel ends the op (a CQE without F_MORE), the next next() that
// finds the queue empty arms it again. The slot is held until the final CQE;
// if the stream is destroyed first, the op is cancelled and its remaining
// CQEs go to the derived class's reclaimer (closing accepted fixed files,
// returning provided buffers), so nothing leaks.
//
// The waiting coroutine's stop token cancels the armed op; the waiter then
// gets -ECANCELED.
#pragma once

#include <cassert>
#include <cerrno>
#include <coroutine>
#include <cstdint>
#include <optional>
#include <stop_token>
#include <utility>
#include <vector>

#include "coring/core/event_loop.h"
#include "coring/core/operation.h"

namespace coring::detail {

class MultishotStream : protected OpTarget {
 public:
  MultishotStream(const MultishotStream&) = delete;
  MultishotStream& operator=(const MultishotStream&) = delete;

  bool armed() const noexcept { return armed_; }
  size_t queued() const noexcept { return count_; }

 protected:
  struct Item {
    int32_t res;
    uint32_t flags;
    uint8_t* copy = nullptr;  // recv: the bytes, moved out of their ring buffer
  };

  // Awaits the next result.
  class NextAwaiter {
   public:
    explicit NextAwaiter(MultishotStream* stream) noexcept : stream_(stream) {}
    NextAwaiter(const NextAwaiter&) = delete;
    NextAwaiter& operator=(const NextAwaiter&) = delete;
    // The waiting coroutine destroyed while suspended here: the stream must
    // not resume it later.
    ~NextAwaiter() {
      if (handle_ && stream_->waiter_ == handle_) stream_->waiter_ = {};
    }
    bool await_ready() const noexcept { return stream_->count_ > 0; }
    template <class Promise>
    bool await_suspend(std::coroutine_handle<Promise> h) {
      std::stop_token token;
      if constexpr (requires { h.promise().stop_token(); }) token = h.promise().stop_token();
      if (token.stop_requested()) {
        cancelled_ = true;
        return false;
      }
      if (stream_->loop_ == nullptr) stream_->loop_ = EventLoop::current();
      stream_->waiter_ = h;
      handle_ = h;
      if (!stream_->armed_) stream_->arm_or_wait();
      // The result arrives through on_complete() (or request_stop()), which
      // resumes the waiter; nothing completes synchronously here.
      if (token.stop_possible()) stop_callback_.emplace(token, OnStop{stream_});
      return true;
    }
    Item await_resume() noexcept {
      handle_ = {};
      stop_callback_.reset();
      if (cancelled_ || stream_->count_ == 0) return Item{-ECANCELED, 0};
      return stream_->pop();
    }

   private:
    struct OnStop {
      MultishotStream* stream;
      void operator()() const noexcept { stream->request_stop(); }
    };
    MultishotStream* stream_;
    std::coroutine_handle<> handle_;
    std::optional<std::stop_callback<OnStop>> stop_callback_;
    bool cancelled_ = false;
  };

  MultishotStream(Reclaimer reclaim, uint64_t context) noexcept
      : reclaim_(reclaim), context_(context) {}
  ~MultishotStream() {
    if (armed_) {
      OpSlot& slot = loop_->ops()[index_];
      slot.reclaim = reclaim_;
      slot.context = context_;
      loop_->abandon_op(index_, /*borrowed_memory=*/false);
    }
  }

  virtual void prepare(io_uring_sqe* sqe) noexcept = 0;
  // May the op be armed now (recv: are there buffers)? If not, the derived
  // class calls arm_or_wait() again when it may.
  virtual bool ready_to_arm() noexcept { return true; }
  // A final CQE that is part of normal flow (recv: ENOBUFS): true to
  // swallow it and re-arm when possible instead of handing it to the reader.
  virtual bool absorb_final(const OpResult&) noexcept { return false; }
  // Every CQE, before anything else (recv: account the buffer it carries).
  virtual void on_cqe(const OpResult&) noexcept {}

  void arm_or_wait() noexcept {
    if (armed_) return;
    if (!ready_to_arm()) return;
    if (loop_ == nullptr) loop_ = EventLoop::current();
    assert(loop_ != nullptr && "multishot stream used outside a running EventLoop");
    OpTable& ops = loop_->ops();
    index_ = ops.acquire(this);
    OpSlot& slot = ops[index_];
    slot.pending = 1;
    slot.context = context_;
    io_uring_sqe* sqe = loop_->get_sqe();
    prepare(sqe);
    user_data_ = ops.user_data(index_);
    sqe->user_data = user_data_;
    armed_ = true;
  }

  // The reader wants to stop waiting.
  void request_stop() noexcept {
    if (armed_) {
      stopping_ = true;
      loop_->cancel_op(user_data_);
    } else if (waiter_ && loop_ != nullptr && loop_->is_owner_thread()) {
      push(Item{-ECANCELED, 0});
      loop_->schedule(std::exchange(waiter_, {}));
    }
  }

  void on_complete(const OpResult& r) noexcept override {
    on_cqe(r);
    if (!r.more()) {
      armed_ = false;
      const bool absorbed = absorb_final(r);
      if (std::exchange(stopping_, false)) {
        // The reader asked to stop: whatever ended the op, it gets Cancelled.
        if (absorbed) {
          push(Item{-ECANCELED, 0});
          if (waiter_) std::exchange(waiter_, {}).resume();
          return;
        }
      } else if (absorbed) {
        if (waiter_) arm_or_wait();
        return;
      }
    }
    push(Item{r.res, r.flags});
    if (waiter_) std::exchange(waiter_, {}).resume();  // last: the reader may destroy us
  }

  void push(Item item) {
    if (count_ == queue_.size()) {
      // Starts small: every connection has one, and most never queue more
      // than a few completions (a stream pauses at its share of the ring).
      std::vector<Item> bigger(queue_.empty() ? 4 : queue_.size() * 2);
      for (size_t i = 0; i < count_; ++i) bigger[i] = queue_[(head_ + i) % queue_.size()];
      queue_.swap(bigger);
      head_ = 0;
    }
    queue_[(head_ + count_) % queue_.size()] = item;
    ++count_;
  }
  Item pop() noexcept {
    Item item = queue_[head_];
    head_ = (head_ + 1) % queue_.size();
    --count_;
    return item;
  }

  EventLoop* loop_ = nullptr;
  std::coroutine_handle<> waiter_;
  Reclaimer reclaim_;
  uint64_t context_;
  uint64_t user_data_ = 0;
  uint32_t index_ = 0;
  bool armed_ = false;
  // The reader's stop token cancelled the armed op: its final CQE goes to
  // the reader even if the derived class would otherwise absorb it.
  bool stopping_ = false;
  std::vector<Item> queue_;
  size_t head_ = 0;
  size_t count_ = 0;
};

}  // namespace coring::detail
