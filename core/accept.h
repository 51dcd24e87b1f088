// AcceptStream: multishot accept straight into the ring's fixed-file table
// (io_uring_prep_multishot_accept_direct with IORING_FILE_INDEX_ALLOC), read
// as a stream of fixed-file slots.
//
//   AcceptStream accepts = coring::accept_multishot_direct(listen_fd);
//   for (;;) {
//     absl::StatusOr<uint32_t> slot = co_await accepts.next();
//     if (!slot.ok()) { ... }          // ResourceExhausted: fixed-file table full
//     spawn(loop, serve(FileRef::fixed_index(*slot)));
//   }
//
// One armed op accepts every connection until the kernel ends it; the stream
// re-arms on the next next(). Slots queued or accepted after the stream is
// destroyed are closed (close_direct), never leaked.
// accept() is the single-shot form returning a normal fd.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include "absl/status/statusor.h"
#include "coring/core/fixed_files.h"
#include "coring/core/multishot.h"
#include "coring/core/op_awaitable.h"

namespace coring {

class AcceptStream : private detail::MultishotStream {
 public:
  explicit AcceptStream(FileRef listener) noexcept
      : MultishotStream(&AcceptStream::reclaim, 0), listener_(listener) {}
  ~AcceptStream() {
    while (queued() > 0) {
      Item item = pop();
      if (item.res >= 0 && loop_ != nullptr) close_slot(*loop_, item.res);
    }
  }

  class Next : public NextAwaiter {
   public:
    explicit Next(AcceptStream* stream) noexcept : NextAwaiter(stream) {}
    absl::StatusOr<uint32_t> await_resume() noexcept {
      Item item = NextAwaiter::await_resume();
      if (item.res >= 0) return static_cast<uint32_t>(item.res);
      return fixed_slot_error(OpResult{item.res, item.flags, false}, "accept");
    }
  };

  // The fixed-file slot of the next accepted connection.
  Next next() noexcept { return Next(this); }

  using MultishotStream::armed;
  using MultishotStream::queued;

 private:
  void prepare(io_uring_sqe* sqe) noexcept override {
    // No SOCK_CLOEXEC: a direct descriptor has no fd to mark (the kernel says EINVAL).
    io_uring_prep_multishot_accept_direct(sqe, listener_.fd, nullptr, nullptr, 0);
    listener_.apply(sqe);
  }

  static void close_slot(EventLoop& loop, int32_t slot) noexcept {
    io_uring_sqe* sqe = loop.get_sqe();
    io_uring_prep_close_direct(sqe, static_cast<unsigned>(slot));
    sqe->user_data = kIgnoreUserData;
  }
  static void reclaim(EventLoop& loop, const OpSlot&, const OpResult& r) {
    if (r.res >= 0) close_slot(loop, r.res);
  }

  FileRef listener_;
};

inline AcceptStream accept_multishot_direct(FileRef listener) noexcept {
  return AcceptStream(listener);
}

// Single-shot accept of one connection as a normal fd.
class Accept : public OpAwaitable<Accept> {
 public:
  explicit Accept(FileRef listener) noexcept : listener_(listener) { borrowed_ = false; }
  void prepare(io_uring_sqe* sqe, OpSlot& slot) noexcept {
    io_uring_prep_accept(sqe, listener_.fd, nullptr, nullptr, SOCK_CLOEXEC);
    listener_.apply(sqe);
    // A connection accepted after the awaiting coroutine is gone is closed.
    slot.reclaim = [](EventLoop&, const OpSlot&, const OpResult& r) {
      if (r.res >= 0) ::close(r.res);
    };
  }
  absl::StatusOr<int> result(const OpResult& r) const {
    if (r.res >= 0) return r.res;
    return status_of(r, "accept");
  }

 private:
  FileRef listener_;
};

inline Accept accept(FileRef listener) noexcept { return Accept(listener); }

}  // namespace coring
