// connect(): IORING_OP_CONNECT. The address is copied into the op slot, so
// the caller's sockaddr need not outlive the call.
//
//   sockaddr_in addr = ...;
//   absl::Status s = co_await coring::connect(fd, reinterpret_cast<sockaddr*>(&addr),
//   sizeof(addr));
#pragma once

#include <sys/socket.h>

#include <cstring>

#include "coring/core/op_awaitable.h"

namespace coring {

class Connect : public OpAwaitable<Connect> {
 public:
  Connect(FileRef file, const sockaddr* addr, socklen_t len) noexcept : file_(file), len_(len) {
    if (len_ > sizeof(sockaddr_storage)) len_ = 0;  // rejected by the kernel: EINVAL
    std::memcpy(&addr_, addr, len_);
    borrowed_ = false;
  }

  void prepare(io_uring_sqe* sqe, OpSlot& slot) noexcept {
    auto* stored = slot.scratch_as<sockaddr_storage>();
    std::memcpy(stored, &addr_, len_);
    io_uring_prep_connect(sqe, file_.fd, reinterpret_cast<sockaddr*>(stored), len_);
    file_.apply(sqe);
  }
  absl::Status result(const OpResult& r) const { return status_of(r, "connect"); }

 private:
  FileRef file_;
  sockaddr_storage addr_{};
  socklen_t len_;
};

inline Connect connect(FileRef file, const sockaddr* addr, socklen_t len) noexcept {
  return Connect(file, addr, len);
}

}  // namespace coring
