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
// gets -ECANCELED. A stop requested on another thread touches only two
// atomics (foreign_stop_, armed_user_data_) and posts to the loop: the
// cancel of the armed op (its user_data names a slot generation, so a stale
// one is harmless), or, when the reader waits with nothing armed (recv: the
// ring ran dry), a wake-up the derived class routes (wake_foreign()). The
// loop thread turns the flag into -ECANCELED at the next arm or final CQE.
#pragma once

#include <atomic>
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

  // Awaits the next result. Only what a resumption reads is here (it is
  // part of the reader's coroutine frame, out of the cache when a
  // connection's next message comes, with thousands of them): the stop
  // callback, registered only for a reader that can be stopped, lives in
  // the stream (one reader waits at a time; stop_slot()).
  class NextAwaiter {
   public:
    explicit NextAwaiter(MultishotStream* stream) noexcept : stream_(stream) {}
    NextAwaiter(const NextAwaiter&) = delete;
    NextAwaiter& operator=(const NextAwaiter&) = delete;
    // The waiting coroutine destroyed while suspended here: the stream must
    // not resume it later.
    ~NextAwaiter() {
      if (!handle_) return;
      if (stop_registered_) stream_->stop_slot().reset();
      if (stream_->waiter_ == handle_) stream_->waiter_ = {};
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
      // A flag a foreign stop of an earlier wait left behind is not ours (that
      // wait's stop callback is gone, so none can be running now).
      stream_->foreign_stop_.store(false, std::memory_order_relaxed);
      stream_->waiter_ = h;
      handle_ = h;
      if (!stream_->armed_) stream_->arm_or_wait();
      // The result arrives through on_complete() (or request_stop()), which
      // resumes the waiter; nothing completes synchronously here.
      if (token.stop_possible()) {
        stream_->stop_slot().emplace(std::move(token), OnStop{stream_});
        stop_registered_ = true;
      }
      return true;
    }
    Item await_resume() noexcept {
      handle_ = {};
      if (std::exchange(stop_registered_, false)) stream_->stop_slot().reset();
      if (stream_->handed_off_) {
        stream_->handed_off_ = false;
        return stream_->handoff_;
      }
      if (cancelled_ || stream_->count_ == 0) return Item{-ECANCELED, 0};
      return stream_->pop();
    }

   protected:
    MultishotStream* stream_;
    std::coroutine_handle<> handle_;
    bool cancelled_ = false;
    bool stop_registered_ = false;  // stream_->stop_slot() is this wait's
  };

  // The waiting reader's stop callback, when its stop token can be stopped.
  struct OnStop {
    MultishotStream* stream;
    void operator()() const noexcept { stream->request_stop(); }
  };
  using StopSlot = std::optional<std::stop_callback<OnStop>>;
  // Where it lives: in the derived class, past the fields a message touches
  // (here, they would push the derived class's own hot fields a cache line
  // further). Called only for readers that can be stopped.
  virtual StopSlot& stop_slot() noexcept = 0;

  MultishotStream(Reclaimer reclaim, uint64_t context) noexcept
      : reclaim_(reclaim), context_(context) {}
  ~MultishotStream() { abandon(/*borrowed_memory=*/false); }

  // Orphans the armed op (see the top of this file). With borrowed_memory
  // (the op reads or writes memory the derived class owns), it is
  // cancelled synchronously: the kernel is done with that memory on return.
  void abandon(bool borrowed_memory) noexcept {
    if (!armed_) return;
    OpSlot& slot = loop_->ops()[index_];
    slot.reclaim = reclaim_;
    slot.context = context_;
    loop_->abandon_op(index_, borrowed_memory);
    mark_disarmed();
  }

  virtual void prepare(io_uring_sqe* sqe) noexcept = 0;
  // May the op be armed now (recv: are there buffers)? If not, the derived
  // class calls arm_or_wait() again when it may.
  virtual bool ready_to_arm() noexcept { return true; }
  // A stop requested on another thread found nothing armed while a reader
  // may be waiting for arm_or_wait() to be called again (recv: buffers):
  // post a wake-up that reaches this stream only if it still waits.
  virtual void wake_foreign() noexcept {}
  // A final CQE that is part of normal flow (recv: ENOBUFS): true to
  // swallow it and re-arm when possible instead of handing it to the reader.
  virtual bool absorb_final(const OpResult&) noexcept { return false; }
  // Every CQE, before anything else (recv: account the buffer it carries).
  virtual void on_cqe(const OpResult&) noexcept {}

  void arm_or_wait() noexcept {
    if (armed_) return;
    if (waiter_ && take_foreign_stop()) {
      // Stopped from another thread while nothing was armed.
      push(Item{-ECANCELED, 0});
      loop_->schedule(std::exchange(waiter_, {}));  // we may be inside await_suspend
      return;
    }
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
    // seq_cst, paired with request_stop_foreign(): either the foreign thread
    // sees this op and cancels it, or take_foreign_stop() above saw its flag.
    armed_user_data_.store(user_data_ | kArmedBit);
  }

  // The op ended (its final CQE, or a derived class's own bookkeeping).
  void mark_disarmed() noexcept {
    armed_ = false;
    armed_user_data_.store(0);
  }

  bool take_foreign_stop() noexcept {
    return foreign_stop_.load() && foreign_stop_.exchange(false);
  }
  // The reader wants to stop waiting (its stop callback: any thread).
  void request_stop() noexcept {
    if (!loop_->is_owner_thread()) {
      request_stop_foreign();
      return;
    }
    if (armed_) {
      stopping_ = true;
      loop_->cancel_op(user_data_);
    } else if (waiter_) {
      push(Item{-ECANCELED, 0});
      loop_->schedule(std::exchange(waiter_, {}));
    }
  }

  // The stream is alive here (the stop callback's owner waits for us) but
  // the loop thread runs on: only the atomics are touched.
  void request_stop_foreign() noexcept {
    foreign_stop_.store(true);
    if (const uint64_t ud = armed_user_data_.load(); ud != 0) {
      loop_->cancel_op(ud & ~kArmedBit);
    } else {
      wake_foreign();
    }
  }

  void on_complete(const OpResult& r) noexcept override {
    on_cqe(r);
    if (!r.more()) {
      mark_disarmed();
      if (take_foreign_stop()) stopping_ = true;
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
    if (waiter_ && count_ == 0) {
      // The reader waits for this very result: it is handed over beside
      // waiter_, not through the queue's storage, a cache line of its own,
      // cold when a connection's next message finds its state out of the
      // cache. (The queue is still made at the first result, as push()
      // would make it: no allocation later, mid-stream.)
      if (queue_.empty()) [[unlikely]] {
        grow();
      }
      handoff_ = Item{r.res, r.flags};
      handed_off_ = true;                   // taken by the awaiter as it resumes
      std::exchange(waiter_, {}).resume();  // last: the reader may destroy us
      return;
    }
    push(Item{r.res, r.flags});
    if (waiter_) std::exchange(waiter_, {}).resume();  // last: the reader may destroy us
  }
  // A result is being handed to the waiter that resumes now (see above).
  bool handed_off() const noexcept { return handed_off_; }

  // The room the queue makes at its first result: what the stream is
  // expected to queue at most, so that it allocates once, at its first
  // result, and not at whichever later burst first queues one more than
  // ever before (mid-stream; a benchmark counting allocations per message
  // saw that happen after its warm-up). Past it, the queue doubles.
  virtual size_t first_capacity() const noexcept { return 4; }

  void push(Item item) {
    if (count_ == queue_.size()) [[unlikely]] {
      grow();
    }
    queue_[(head_ + count_) % queue_.size()] = item;
    ++count_;
  }
  void grow() {
    const size_t size = queue_.empty() ? first_capacity() : queue_.size() * 2;
    std::vector<Item> bigger(size);
    for (size_t i = 0; i < count_; ++i) bigger[i] = queue_[(head_ + i) % queue_.size()];
    queue_.swap(bigger);
    head_ = 0;
  }
  Item pop() noexcept {
    Item item = queue_[head_];
    head_ = (head_ + 1) % queue_.size();
    --count_;
    return item;
  }

  // First what a message touches, then what arming and cancelling do: with
  // thousands of connections a message finds its stream out of the cache,
  // and each line it touches is a miss (the derived class's own fields
  // follow these).
  EventLoop* loop_ = nullptr;
  std::coroutine_handle<> waiter_;
  Item handoff_{0, 0};  // what on_complete() hands the waiter, if handed_off_
  size_t count_ = 0;
  size_t head_ = 0;
  std::vector<Item> queue_;
  bool armed_ = false;
  // The reader's stop token cancelled the armed op: its final CQE goes to
  // the reader even if the derived class would otherwise absorb it.
  bool stopping_ = false;
  bool handed_off_ = false;
  // Set by a stop on another thread; taken by the loop thread.
  std::atomic<bool> foreign_stop_{false};
  uint32_t index_ = 0;
  Reclaimer reclaim_;
  uint64_t context_;
  uint64_t user_data_ = 0;
  // user_data_ | kArmedBit while armed, else 0: what a foreign stop cancels
  // (a user_data may itself be 0).
  static constexpr uint64_t kArmedBit = uint64_t{1} << 63;
  std::atomic<uint64_t> armed_user_data_{0};
};

}  // namespace coring::detail
