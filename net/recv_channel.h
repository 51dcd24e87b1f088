// RecvChannel: multishot recv on the loop's provided-buffer ring (as core's
// RecvStream) that can also be interrupted: interrupt() wakes a reader that
// is waiting for data, without losing data that already arrived. Stream uses
// it for idle timeouts and graceful shutdown, which must wake a connection
// blocked in read() and let it say goodbye before closing.
//
// Internal to net/ (Stream is the public face).
#pragma once

#include <cerrno>
#include <climits>

#include "absl/status/statusor.h"
#include "coring/core/buffer_ring.h"
#include "coring/core/errno_status.h"
#include "coring/core/multishot.h"

namespace coring::net::detail {

class RecvChannel : private coring::detail::MultishotStream, private BufferWaiter {
 public:
  // The item a reader gets when woken by interrupt().
  static constexpr int32_t kInterrupted = INT32_MIN;

  RecvChannel(FileRef file, BufferRing& ring) noexcept
      : MultishotStream(&RecvChannel::reclaim, ring.group()), file_(file), ring_(ring) {}
  ~RecvChannel() {
    ring_.cancel_wait(this);
    while (queued() > 0) {
      Item item = pop();
      if (item.res >= 0 && (item.flags & IORING_CQE_F_BUFFER)) {
        ring_.give_back(static_cast<uint16_t>(item.flags >> IORING_CQE_BUFFER_SHIFT));
      }
    }
  }

  using MultishotStream::Item;
  using MultishotStream::queued;

  class Next : public NextAwaiter {
   public:
    explicit Next(RecvChannel* channel) noexcept : NextAwaiter(channel) {}
    using NextAwaiter::await_resume;
    using NextAwaiter::await_suspend;
  };
  Next next() noexcept { return Next(this); }

  // Wakes a waiting reader with a kInterrupted item; with no reader waiting
  // the caller's own flag does the job (Stream checks it before waiting).
  void interrupt() noexcept {
    wanted_ = true;
    if (armed_) {
      if (!outstanding_) {
        outstanding_ = true;
        loop_->cancel_op(user_data_);
      }
    } else if (waiter_ && loop_ != nullptr) {
      push(Item{kInterrupted, 0});
      loop_->schedule(std::exchange(waiter_, {}));
    }
  }
  // The interrupt was delivered (or is no longer wanted).
  void clear_interrupt() noexcept { wanted_ = false; }

  // The buffer (or EOF, or error) an item stands for; the buffer is owned by
  // the result from here on.
  absl::StatusOr<RecvBuffer> to_buffer(const Item& item) noexcept {
    if (item.res < 0) return errno_to_status(-item.res, "recv");
    if (!(item.flags & IORING_CQE_F_BUFFER)) return RecvBuffer();  // EOF
    RecvBuffer buf = ring_.take(static_cast<uint16_t>(item.flags >> IORING_CQE_BUFFER_SHIFT),
                                static_cast<size_t>(item.res));
    if (item.res == 0) return RecvBuffer();  // EOF with a buffer: give it back
    return buf;
  }

 private:
  void prepare(io_uring_sqe* sqe) noexcept override {
    io_uring_prep_recv_multishot(sqe, file_.fd, nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = ring_.group();
    file_.apply(sqe);
  }
  bool ready_to_arm() noexcept override {
    if (ring_.available() > 0) return true;
    ring_.wait_for_buffers(this);
    return false;
  }
  bool absorb_final(const OpResult& r) noexcept override {
    if (r.res != -ENOBUFS) return false;
    loop_->count_enobufs();
    return true;
  }
  void on_buffers_available() noexcept override {
    if (waiter_) arm_or_wait();
  }

  void on_complete(const OpResult& r) noexcept override {
    if (outstanding_ && !r.more() && r.res == -ECANCELED) {
      // The end of the op our interrupt() cancelled.
      outstanding_ = false;
      armed_ = false;
      if (!waiter_) return;  // the next read re-arms
      if (wanted_) {
        push(Item{kInterrupted, 0});
        std::exchange(waiter_, {}).resume();
      } else {
        arm_or_wait();  // the interrupt was taken another way; keep reading
      }
      return;
    }
    if (!r.more()) outstanding_ = false;
    MultishotStream::on_complete(r);
  }

  // Every buffer a CQE carries is counted as held from its arrival until it
  // is given back (BufferRing::mark_taken).
  void on_cqe(const OpResult& r) noexcept override {
    if (r.has_buffer()) ring_.mark_taken();
  }

  static void reclaim(EventLoop& loop, const OpSlot& slot, const OpResult& r) {
    if (!r.has_buffer()) return;
    if (BufferRing* ring = loop.buffer_ring(static_cast<uint16_t>(slot.context))) {
      ring->mark_taken();
      ring->give_back(r.buffer_id());
    }
  }

  FileRef file_;
  BufferRing& ring_;
  bool wanted_ = false;       // an interrupt waits to be delivered
  bool outstanding_ = false;  // our cancel of the armed op is in flight
};

}  // namespace coring::net::detail
