// close() and close_direct(): IORING_OP_CLOSE on a normal fd or on a slot of
// the ring's fixed-file table.
//
//   absl::Status s = co_await coring::close(fd);
//   s = co_await coring::close_direct(slot);   // slot from accept/socket_direct
//
// A close runs whatever the awaiting coroutine's stop token says: it is
// cleanup, and the coroutines that clean up are often the ones told to stop
// (a connection handler during server shutdown). Skipping it would leak the
// file and, for a fixed file, its table slot. prep_close() fills the same SQE
// for code that closes without waiting (fire and forget).
#pragma once

#include <coroutine>
#include <cstdint>
#include <stop_token>

#include "coring/core/op_awaitable.h"

namespace coring {

inline void prep_close(io_uring_sqe* sqe, FileRef file) noexcept {
  if (file.fixed) {
    io_uring_prep_close_direct(sqe, static_cast<unsigned>(file.fd));
  } else {
    io_uring_prep_close(sqe, file.fd);
  }
}

class Close : public OpAwaitable<Close> {
 public:
  explicit Close(FileRef file) noexcept : file_(file) { borrowed_ = false; }

  // Hides OpAwaitable::await_suspend: never under the caller's stop token.
  template <class Promise>
  bool await_suspend(std::coroutine_handle<Promise> h) {
    return start(h, std::stop_token{},
                 [this](io_uring_sqe* sqe, OpSlot& slot) { prepare(sqe, slot); });
  }

  void prepare(io_uring_sqe* sqe, OpSlot&) noexcept { prep_close(sqe, file_); }
  absl::Status result(const OpResult& r) const {
    return status_of(r, file_.fixed ? "close_direct" : "close");
  }

 private:
  FileRef file_;
};

inline Close close(FileRef file) noexcept { return Close(file); }
inline Close close_direct(uint32_t slot) noexcept { return Close(FileRef::fixed_index(slot)); }

}  // namespace coring
