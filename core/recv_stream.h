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
#pragma once

#include <cerrno>

#include "absl/status/statusor.h"
#include "coring/core/buffer_ring.h"
#include "coring/core/errno_status.h"
#include "coring/core/multishot.h"

namespace coring {

class RecvStream : private detail::MultishotStream, private BufferWaiter {
 public:
  RecvStream(FileRef file, BufferRing& ring) noexcept
      : MultishotStream(&RecvStream::reclaim, ring.group()), file_(file), ring_(ring) {}
  ~RecvStream() {
    ring_.cancel_wait(this);
    while (queued() > 0) {
      Item item = pop();
      if (item.flags & IORING_CQE_F_BUFFER) {
        ring_.give_back(static_cast<uint16_t>(item.flags >> IORING_CQE_BUFFER_SHIFT));
      }
    }
  }

  class Next : public NextAwaiter {
   public:
    Next(RecvStream* stream) noexcept : NextAwaiter(stream), stream_(stream) {}
    absl::StatusOr<RecvBuffer> await_resume() noexcept {
      Item item = NextAwaiter::await_resume();
      return stream_->to_buffer(item);
    }

   private:
    RecvStream* stream_;
  };

  // The next chunk received (empty at EOF).
  Next next() noexcept { return Next(this); }

  using MultishotStream::armed;
  using MultishotStream::queued;

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
};

inline RecvStream recv_multishot(FileRef file, BufferRing& ring) noexcept {
  return RecvStream(file, ring);
}

}  // namespace coring
