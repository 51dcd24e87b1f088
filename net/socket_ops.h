// shutdown_socket(): IORING_OP_SHUTDOWN, which works on fixed files (there is
// no shutdown(2) for a slot of the ring's table). Internal helpers of net/.
//
//   absl::Status s = co_await shutdown_socket(stream.file(), SHUT_WR);
#pragma once

#include <sys/socket.h>

#include "coring/core/op_awaitable.h"

namespace coring::net {

class ShutdownSocket : public OpAwaitable<ShutdownSocket> {
 public:
  ShutdownSocket(FileRef file, int how) noexcept : file_(file), how_(how) { borrowed_ = false; }
  void prepare(io_uring_sqe* sqe, OpSlot&) noexcept {
    io_uring_prep_shutdown(sqe, file_.fd, how_);
    file_.apply(sqe);
  }
  absl::Status result(const OpResult& r) const {
    // ENOTCONN: the peer is gone already; the half-close has nothing to do.
    if (r.res == -ENOTCONN) return absl::OkStatus();
    return status_of(r, "shutdown");
  }

 private:
  FileRef file_;
  int how_;
};

inline ShutdownSocket shutdown_socket(FileRef file, int how) noexcept {
  return ShutdownSocket(file, how);
}

}  // namespace coring::net
