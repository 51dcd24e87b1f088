// FixedFiles: the ring's sparse registered file table, and the operations
// that put files into it.
//
// The loop registers a sparse table at start-up (LoopOptions::fixed_files,
// clamped to RLIMIT_NOFILE, which the kernel enforces). Slots are allocated
// by the kernel (IORING_FILE_INDEX_ALLOC): multishot accept-direct
// (accept.h), socket_direct() and install_file() below. Operations use a slot
// through FileRef::fixed_index(slot) (IOSQE_FIXED_FILE); close_direct()
// (close.h) frees it. A full table is ResourceExhausted naming its size, not
// a crash or a leak.
//
//   absl::StatusOr<uint32_t> slot = co_await coring::socket_direct(AF_INET, SOCK_STREAM, 0);
//   absl::Status s = co_await coring::connect(FileRef::fixed_index(*slot), addr, len);
//   absl::StatusOr<uint32_t> other = co_await coring::install_file(fd);  // fd stays open too
#pragma once

#include <cstdint>
#include <cstring>
#include <memory>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coring/core/op_awaitable.h"
#include "coring/core/ring.h"

namespace coring {

class FixedFiles {
 public:
  // Registers a sparse table of min(requested, RLIMIT_NOFILE) slots.
  static absl::StatusOr<std::unique_ptr<FixedFiles>> create(Ring& ring, uint32_t requested);
  ~FixedFiles() = default;

  uint32_t size() const noexcept { return size_; }
  uint32_t requested() const noexcept { return requested_; }

 private:
  FixedFiles(uint32_t size, uint32_t requested) : size_(size), requested_(requested) {}
  uint32_t size_;
  uint32_t requested_;
};

// The status of an op that allocates a table slot: ENFILE becomes a
// ResourceExhausted that says the table is full and how big it is.
absl::Status fixed_slot_error(const OpResult& r, std::string_view what);

class SocketDirect : public OpAwaitable<SocketDirect> {
 public:
  SocketDirect(int domain, int type, int protocol) noexcept
      : domain_(domain), type_(type), protocol_(protocol) {
    borrowed_ = false;
  }
  void prepare(io_uring_sqe* sqe, OpSlot& slot) noexcept {
    io_uring_prep_socket_direct_alloc(sqe, domain_, type_, protocol_, 0);
    // A slot allocated after the awaiting coroutine is gone is freed again.
    slot.reclaim = [](EventLoop& loop, const OpSlot&, const OpResult& r) {
      if (r.res < 0) return;
      io_uring_sqe* close_sqe = loop.get_sqe();
      io_uring_prep_close_direct(close_sqe, static_cast<unsigned>(r.res));
      close_sqe->user_data = kIgnoreUserData;
    };
  }
  absl::StatusOr<uint32_t> result(const OpResult& r) const {
    if (r.res >= 0) return static_cast<uint32_t>(r.res);
    return fixed_slot_error(r, "socket_direct");
  }

 private:
  int domain_, type_, protocol_;
};

// Installs a duplicate of `fd` into a free slot (IORING_OP_FILES_UPDATE);
// the caller still owns and must close `fd`. The fd array the kernel reads
// and writes the slot back into lives in the op slot, not in the awaiting
// frame: a coroutine destroyed before the completion leaves the slot to the
// reclaimer, which closes it (else the duplicate would hold the socket open).
class InstallFile : public OpAwaitable<InstallFile> {
 public:
  explicit InstallFile(int fd) noexcept : fd_(fd) { borrowed_ = false; }
  void prepare(io_uring_sqe* sqe, OpSlot& slot) noexcept {
    int* fds = slot.scratch_as<int>();
    fds[0] = fd_;
    io_uring_prep_files_update(sqe, fds, 1, static_cast<int>(IORING_FILE_INDEX_ALLOC));
    slot.reclaim = [](EventLoop& loop, const OpSlot& done, const OpResult& r) {
      if (r.res < 1) return;
      int index;
      std::memcpy(&index, done.scratch, sizeof(index));
      io_uring_sqe* close_sqe = loop.get_sqe();
      io_uring_prep_close_direct(close_sqe, static_cast<unsigned>(index));
      close_sqe->user_data = kIgnoreUserData;
    };
  }
  absl::StatusOr<uint32_t> result(const OpResult& r) const {
    if (r.res >= 1) return static_cast<uint32_t>(fd_);  // the slot, copied in on_complete
    if (r.res == 0) return fixed_slot_error(OpResult{-ENFILE, 0, false}, "install_file");
    return fixed_slot_error(r, "install_file");
  }

 protected:
  void on_complete(const OpResult& r) noexcept override {
    // The slot is released but untouched until this returns: take the
    // index the kernel wrote back.
    if (r.res >= 1) std::memcpy(&fd_, loop_->ops()[index_].scratch, sizeof(fd_));
    OpAwaitableBase::on_complete(r);
  }

 private:
  int fd_;  // the fd to install; the slot once installed
};

inline SocketDirect socket_direct(int domain, int type, int protocol = 0) noexcept {
  return SocketDirect(domain, type, protocol);
}
inline InstallFile install_file(int fd) noexcept { return InstallFile(fd); }

}  // namespace coring
