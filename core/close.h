// close() and close_direct(): IORING_OP_CLOSE on a normal fd or on a slot of
// the ring's fixed-file table.
//
//   absl::Status s = co_await coring::close(fd);
//   s = co_await coring::close_direct(slot);   // slot from accept/socket_direct
#pragma once

#include <cstdint>

#include "coring/core/op_awaitable.h"

namespace coring {

class Close : public OpAwaitable<Close> {
 public:
  explicit Close(FileRef file) noexcept : file_(file) { borrowed_ = false; }

  void prepare(io_uring_sqe* sqe, OpSlot&) noexcept {
    if (file_.fixed) {
      io_uring_prep_close_direct(sqe, static_cast<unsigned>(file_.fd));
    } else {
      io_uring_prep_close(sqe, file_.fd);
    }
  }
  absl::Status result(const OpResult& r) const {
    return status_of(r, file_.fixed ? "close_direct" : "close");
  }

 private:
  FileRef file_;
};

inline Close close(FileRef file) noexcept { return Close(file); }
inline Close close_direct(uint32_t slot) noexcept { return Close(FileRef::fixed_index(slot)); }

}  // namespace coring
