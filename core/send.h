// send(), sendmsg() and send_fixed(): writing to a socket.
//
//   absl::StatusOr<size_t> n = co_await coring::send(fd, bytes);          // may be short
//   n = co_await coring::sendmsg(fd, &msg);                               // msg outlives the
//   co_await n = co_await coring::send_fixed(fd, lease.span().first(len), lease.buf_index());
//
// send() passes MSG_NOSIGNAL so a closed peer is EPIPE, not SIGPIPE.
// send_fixed() sends from a registered buffer (the loop's BufferArena) with
// IORING_OP_WRITE_FIXED. On a socket that is a write(2): no MSG_NOSIGNAL (a
// reset peer raises SIGPIPE unless the thread blocks or ignores it), and on
// kernel 6.18 it was 5-8% slower per op than send() at every size
// (bench/net/send_bench.cc), since a copying send pins no pages anyway.
// net/'s streams use send().
#pragma once

#include <sys/socket.h>

#include <cstdint>

#include "absl/types/span.h"
#include "coring/core/op_awaitable.h"

namespace coring {

class Send : public OpAwaitable<Send> {
 public:
  Send(FileRef file, absl::Span<const uint8_t> data, int flags) noexcept
      : file_(file), data_(data), flags_(flags) {}

  void prepare(io_uring_sqe* sqe, OpSlot&) noexcept {
    io_uring_prep_send(sqe, file_.fd, data_.data(), data_.size(), flags_);
    file_.apply(sqe);
  }
  absl::StatusOr<size_t> result(const OpResult& r) const { return size_of(r, "send"); }

 private:
  FileRef file_;
  absl::Span<const uint8_t> data_;
  int flags_;
};

class SendMsg : public OpAwaitable<SendMsg> {
 public:
  SendMsg(FileRef file, const msghdr* msg, int flags) noexcept
      : file_(file), msg_(msg), flags_(flags) {}

  void prepare(io_uring_sqe* sqe, OpSlot&) noexcept {
    io_uring_prep_sendmsg(sqe, file_.fd, msg_, static_cast<unsigned>(flags_));
    file_.apply(sqe);
  }
  absl::StatusOr<size_t> result(const OpResult& r) const { return size_of(r, "sendmsg"); }

 private:
  FileRef file_;
  const msghdr* msg_;
  int flags_;
};

class SendFixed : public OpAwaitable<SendFixed> {
 public:
  SendFixed(FileRef file, absl::Span<const uint8_t> data, uint16_t buf_index) noexcept
      : file_(file), data_(data), buf_index_(buf_index) {}

  void prepare(io_uring_sqe* sqe, OpSlot&) noexcept {
    io_uring_prep_write_fixed(sqe, file_.fd, data_.data(), static_cast<unsigned>(data_.size()), 0,
                              buf_index_);
    file_.apply(sqe);
  }
  absl::StatusOr<size_t> result(const OpResult& r) const { return size_of(r, "send_fixed"); }

 private:
  FileRef file_;
  absl::Span<const uint8_t> data_;
  uint16_t buf_index_;
};

inline Send send(FileRef file, absl::Span<const uint8_t> data, int flags = MSG_NOSIGNAL) noexcept {
  return Send(file, data, flags);
}
inline SendMsg sendmsg(FileRef file, const msghdr* msg, int flags = MSG_NOSIGNAL) noexcept {
  return SendMsg(file, msg, flags);
}
inline SendFixed send_fixed(FileRef file, absl::Span<const uint8_t> data,
                            uint16_t buf_index) noexcept {
  return SendFixed(file, data, buf_index);
}

}  // namespace coring
