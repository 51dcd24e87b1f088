// RecvStream: multishot IORING_OP_RECV on a provided-buffer ring, read as a
// stream of RecvBuffers.
//
//   RecvStream stream = coring::recv_multishot(fd, buffer_ring);
//   for (;;) {
//     absl::StatusOr<RecvBuffer> buf = co_await stream.next();
//     if (!buf.ok()) break;            // error (Cancelled when the stop token fired)
//     if (buf->empty()) break;         // EOF
//     consume(buf->span());            // the buffer goes back to the ring here
//   }
//
// One armed op serves every read until the kernel ends it; ENOBUFS (every
// buffer held by the application) is swallowed, counted in LoopStats::enobufs,
// and the stream re-arms once buffers come back. Destroying the stream
// cancels the op and returns every buffer it still carries.
//
// interrupt(why) wakes the reader (idle timeout, shutdown) without losing
// data: the armed op is cancelled (bytes not yet received stay in the
// socket), chunks that already arrived are still returned first, then one
// next() returns `why` (Next::interrupted() tells it apart). The read after
// that re-arms and reads on.
#pragma once

#include <cerrno>
#include <climits>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coring/core/buffer_ring.h"
#include "coring/core/errno_status.h"
#include "coring/core/multishot.h"

namespace coring {

class RecvStream final : private detail::MultishotStream, private BufferWaiter {
 public:
  RecvStream(FileRef file, BufferRing& ring) noexcept
      : MultishotStream(&RecvStream::reclaim, ring.group()), file_(file), ring_(ring) {}
  ~RecvStream() {
    ring_.cancel_wait(this);
    while (queued() > 0) {
      Item item = pop();
      if (item.res >= 0 && (item.flags & IORING_CQE_F_BUFFER)) {
        ring_.give_back(static_cast<uint16_t>(item.flags >> IORING_CQE_BUFFER_SHIFT));
      }
    }
  }

  class Next : public NextAwaiter {
   public:
    Next(RecvStream* stream) noexcept : NextAwaiter(stream), stream_(stream) {}
    bool await_ready() const noexcept {
      return stream_->queued() > 0 || stream_->interrupt_pending_;
    }
    absl::StatusOr<RecvBuffer> await_resume() noexcept {
      const bool empty = stream_->queued() == 0;
      Item item = NextAwaiter::await_resume();
      if (item.res == kInterrupted || (empty && stream_->interrupt_pending_)) {
        interrupted_ = true;
        stream_->interrupt_pending_ = false;
        return std::exchange(stream_->interrupt_status_, absl::OkStatus());
      }
      return stream_->to_buffer(item);
    }
    // True when this read returned the interrupt() status.
    bool interrupted() const noexcept { return interrupted_; }

   private:
    RecvStream* stream_;
    bool interrupted_ = false;
  };

  // The next chunk received (empty at EOF).
  Next next() noexcept { return Next(this); }

  // Wakes the reader with `why` (Cancelled when OK) once the chunks already
  // received are read; see the top of this file. Owner thread. A second
  // interrupt before the first is delivered replaces its status.
  void interrupt(absl::Status why) noexcept {
    if (why.ok()) why = absl::CancelledError("recv interrupted");
    interrupt_status_ = std::move(why);
    interrupt_pending_ = true;
    if (armed_) {
      if (!cancel_outstanding_) {
        cancel_outstanding_ = true;
        loop_->cancel_op(user_data_);
      }
    } else if (waiter_ && loop_ != nullptr) {
      // Waiting for buffers to come back: nothing to cancel.
      ring_.cancel_wait(this);
      push(Item{kInterrupted, 0});
      loop_->schedule(std::exchange(waiter_, {}));
    }
  }
  bool interrupt_pending() const noexcept { return interrupt_pending_; }

  using MultishotStream::armed;
  using MultishotStream::queued;

 private:
  static constexpr int32_t kInterrupted = INT32_MIN;

  void on_complete(const OpResult& r) noexcept override {
    if (cancel_outstanding_ && !r.more()) {
      cancel_outstanding_ = false;
      // The end of the op interrupt() cancelled (or ENOBUFS got there first).
      if (!stopping_ && (r.res == -ECANCELED || r.res == -ENOBUFS)) {
        if (r.res == -ENOBUFS) loop_->count_enobufs();
        armed_ = false;
        if (!waiter_) return;  // the next next() returns the interrupt or re-arms
        if (interrupt_pending_) {
          push(Item{kInterrupted, 0});
          std::exchange(waiter_, {}).resume();
        } else {
          arm_or_wait();  // the interrupt was taken already: read on
        }
        return;
      }
    }
    MultishotStream::on_complete(r);
  }

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
  void on_cqe(const OpResult& r) noexcept override {
    if (r.has_buffer()) ring_.mark_taken();
  }
  void on_buffers_available() noexcept override {
    if (waiter_) arm_or_wait();
  }

  absl::StatusOr<RecvBuffer> to_buffer(const Item& item) noexcept {
    if (item.res < 0) return errno_to_status(-item.res, "recv_multishot");
    if (!(item.flags & IORING_CQE_F_BUFFER)) return RecvBuffer();  // EOF (res == 0)
    RecvBuffer buf = ring_.take(static_cast<uint16_t>(item.flags >> IORING_CQE_BUFFER_SHIFT),
                                static_cast<size_t>(item.res));
    if (item.res == 0) return RecvBuffer();  // EOF with a buffer: give it back
    return buf;
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
  absl::Status interrupt_status_;
  bool interrupt_pending_ = false;
  bool cancel_outstanding_ = false;  // interrupt()'s cancel of the armed op
};

inline RecvStream recv_multishot(FileRef file, BufferRing& ring) noexcept {
  return RecvStream(file, ring);
}

}  // namespace coring
