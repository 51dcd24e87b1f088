// recv() and recvmsg(): one IORING_OP_RECV / IORING_OP_RECVMSG into memory
// the caller owns.
//
//   std::array<uint8_t, 4096> buf;
//   absl::StatusOr<size_t> n = co_await coring::recv(fd, absl::MakeSpan(buf));
//   if (n.ok() && *n == 0) { /* EOF */ }
//   n = co_await coring::recvmsg(fd, &msg);   // msg, its iovecs and control outlive the op
//
// `fd` may be a FileRef::fixed_index(i). If the awaiting coroutine is
// destroyed while the recv is in flight, the loop cancels it synchronously
// first, so the kernel never writes into the freed buffer.
// For multishot receive on provided buffers see recv_stream.h.
#pragma once

#include <sys/socket.h>

#include <cstdint>

#include "absl/types/span.h"
#include "coring/core/op_awaitable.h"

namespace coring {

class Recv : public OpAwaitable<Recv> {
 public:
  Recv(FileRef file, absl::Span<uint8_t> buffer, int flags) noexcept
      : file_(file), buffer_(buffer), flags_(flags) {}

  void prepare(io_uring_sqe* sqe, OpSlot&) noexcept {
    io_uring_prep_recv(sqe, file_.fd, buffer_.data(), buffer_.size(), flags_);
    file_.apply(sqe);
  }
  absl::StatusOr<size_t> result(const OpResult& r) const { return size_of(r, "recv"); }

 private:
  FileRef file_;
  absl::Span<uint8_t> buffer_;
  int flags_;
};

class RecvMsg : public OpAwaitable<RecvMsg> {
 public:
  RecvMsg(FileRef file, msghdr* msg, int flags) noexcept : file_(file), msg_(msg), flags_(flags) {}

  void prepare(io_uring_sqe* sqe, OpSlot&) noexcept {
    io_uring_prep_recvmsg(sqe, file_.fd, msg_, static_cast<unsigned>(flags_));
    file_.apply(sqe);
  }
  absl::StatusOr<size_t> result(const OpResult& r) const { return size_of(r, "recvmsg"); }

 private:
  FileRef file_;
  msghdr* msg_;
  int flags_;
};

inline Recv recv(FileRef file, absl::Span<uint8_t> buffer, int flags = 0) noexcept {
  return Recv(file, buffer, flags);
}
inline RecvMsg recvmsg(FileRef file, msghdr* msg, int flags = 0) noexcept {
  return RecvMsg(file, msg, flags);
}

}  // namespace coring
