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
//
// disarm() cancels the armed op without losing anything: connections the
// kernel accepted before the cancel took effect are queued and returned by
// next() as usual, and the cancel's own completion is not reported. The
// stream re-arms when next() finds nothing queued (a listener pauses this way
// while its fixed-file table is full).
// accept() is the single-shot form returning a normal fd.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "coring/core/errno_status.h"
#include "coring/core/fixed_files.h"
#include "coring/core/multishot.h"
#include "coring/core/op_awaitable.h"

namespace coring {

// Errors accept(2) passes on from the new connection, which its man page
// says to treat like EAGAIN (retry): the listener is fine.
inline bool accept_error_is_transient(int err) noexcept {
  switch (err) {
    case ENETDOWN:
    case EPROTO:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case EPERM:
    case ECONNABORTED:
    case EINTR:
    case EAGAIN:
      return true;
    default:
      return false;
  }
}

// The status of a failed accept: Unavailable for the transient errors above.
inline absl::Status accept_error(const OpResult& r, const char* what) {
  if (accept_error_is_transient(-r.res)) {
    return absl::UnavailableError(
        absl::StrCat(what, ": ", errno_to_status(-r.res).message(), " (transient)"));
  }
  return fixed_slot_error(r, what);
}

class AcceptStream final : private detail::MultishotStream {
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
      return accept_error(OpResult{item.res, item.flags, false}, "accept");
    }
  };

  // The fixed-file slot of the next accepted connection.
  Next next() noexcept { return Next(this); }

  // Stops accepting until the next next() that finds nothing queued; see
  // above. No-op when not armed. Owner thread.
  void disarm() noexcept {
    if (!armed_ || disarming_) return;
    disarming_ = true;
    loop_->cancel_op(user_data_);
  }
  // A disarm() is waiting for the kernel to end the op.
  bool disarming() const noexcept { return disarming_; }

  using MultishotStream::armed;
  using MultishotStream::queued;

 private:
  bool absorb_final(const OpResult& r) noexcept override {
    // The final CQE of a disarmed op: its cancel (or the op ended anyway).
    return std::exchange(disarming_, false) && r.res == -ECANCELED;
  }

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
  bool disarming_ = false;
  StopSlot stop_slot_;
  StopSlot& stop_slot() noexcept override { return stop_slot_; }
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
    return accept_error(r, "accept");
  }

 private:
  FileRef listener_;
};

inline Accept accept(FileRef listener) noexcept { return Accept(listener); }

}  // namespace coring
