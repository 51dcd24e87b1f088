#include "coring/net/stream.h"

#include <sys/socket.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coring/core/close.h"
#include "coring/core/connect.h"
#include "coring/core/errno_status.h"
#include "coring/core/fixed_files.h"
#include "coring/core/setsockopt.h"
#include "coring/net/socket_ops.h"

namespace coring::net {

Stream Stream::adopt(NetContext& ctx, FileRef file) {
  return Stream(new detail::StreamState(ctx, file));
}

Task<absl::StatusOr<Stream>> Stream::connect(NetContext& ctx, SocketAddress address,
                                             ConnectOptions options) {
  UniqueFd fd(::socket(address.domain(), SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) co_return errno_to_status(errno, "socket for " + address.to_string());
  if (absl::Status s = apply_socket_options(fd.get(), address.family(), options.socket); !s.ok()) {
    co_return s;
  }
  FileRef file(fd.get());
  if (ctx.fixed_files()) {
    absl::StatusOr<uint32_t> slot = co_await install_file(fd.get());
    if (!slot.ok()) co_return slot.status();
    fd.reset();
    file = FileRef::fixed_index(*slot);
  }
  absl::Status s =
      co_await coring::connect(file, address.data(), address.size()).timeout(options.timeout);
  if (!s.ok()) {
    // Also when the stop token cancelled the connect: a close always runs.
    if (file.fixed) (void)co_await coring::close(file);
    co_return absl::Status(s.code(),
                           absl::StrFormat("connect %s: %s", address.to_string(), s.message()));
  }
  fd.release();  // owned by the stream now (a plain fd when there is no table)
  co_return adopt(ctx, file);
}

Task<absl::Status> Stream::shutdown_write() {
  detail::StreamState* s = state_;
  if (s == nullptr) co_return absl::FailedPreconditionError("shutdown_write: no stream");
  absl::Status flushed = co_await flush();
  s->close_for_writing();
  if (!flushed.ok()) co_return flushed;
  if (s->file_closed()) co_return absl::FailedPreconditionError("shutdown_write: closed");
  co_return co_await shutdown_socket(s->file(), SHUT_WR);
}

Task<absl::Status> Stream::close() {
  detail::StreamState* s = state_;
  if (s == nullptr || s->file_closed()) co_return absl::OkStatus();
  s->arm_deadline(s->context().options().linger);
  absl::Status flushed = co_await flush();
  s->cancel_deadline();
  s->close_for_writing();
  // Closed meanwhile (a second close(), or the deadline): closing the slot
  // again could close another connection's file that reuses it.
  if (s->file_closed()) co_return flushed;
  s->mark_closed();
  // Runs under a stopped token too (close.h): a handler told to stop still
  // lets go of its socket and fixed-file slot.
  absl::Status closed = co_await coring::close(s->file());
  if (!flushed.ok()) co_return flushed;
  co_return closed;
}

Task<absl::Status> Stream::reserve_receive_buffer(int bytes) {
  detail::StreamState* s = state_;
  if (s == nullptr || s->file_closed()) {
    co_return absl::FailedPreconditionError("reserve_receive_buffer: no open stream");
  }
  if (bytes <= 0) {
    co_return absl::InvalidArgumentError(
        absl::StrFormat("reserve_receive_buffer: %d bytes (must be positive)", bytes));
  }
  ++s->context().stats().receive_buffers_reserved;
  co_return co_await detail::raise_receive_buffer(s->file(), bytes);
}

namespace detail {

Task<absl::Status> raise_receive_buffer(FileRef file, int bytes) {
  static constexpr int kOne = 1;
  if (!file.fixed) {
    if (::setsockopt(file.fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof bytes) != 0) {
      co_return errno_to_status(errno, "setsockopt(SO_RCVLOWAT)");
    }
    if (::setsockopt(file.fd, SOL_SOCKET, SO_RCVLOWAT, &kOne, sizeof kOne) != 0) {
      co_return errno_to_status(errno, "setsockopt(SO_RCVLOWAT) back to 1: left raised");
    }
    co_return absl::OkStatus();
  }
  if (absl::Status raised =
          co_await coring::setsockopt(file, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof bytes);
      !raised.ok()) {
    co_return raised;  // nothing changed
  }
  // (Setting 1 on the socket just raised cannot fail: Linux's SO_RCVLOWAT
  // takes any value. Should the file have been closed meanwhile and its
  // slot reused, the new socket gets 1, its default.)
  absl::Status lowered =
      co_await coring::setsockopt(file, SOL_SOCKET, SO_RCVLOWAT, &kOne, sizeof kOne);
  if (!lowered.ok()) {
    co_return absl::Status(
        lowered.code(), absl::StrCat(lowered.message(), " (SO_RCVLOWAT back to 1: left raised)"));
  }
  co_return absl::OkStatus();
}

Task<> raise_receive_buffer_detached(FileRef file, int bytes) {
  (void)co_await raise_receive_buffer(file, bytes);
}

}  // namespace detail

bool is_end_of_stream(const absl::Status& status) {
  return absl::IsOutOfRange(status) && status.message() == "end of stream";
}

absl::Status end_of_stream_error() { return absl::OutOfRangeError("end of stream"); }

}  // namespace coring::net
