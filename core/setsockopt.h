// setsockopt(): a socket option set through the ring (IORING_OP_URING_CMD
// with SOCKET_URING_OP_SETSOCKOPT, Linux 6.7), for the sockets that have no
// fd in this process: io_uring fixed files. It works on a plain fd too.
//
//   const int one = 1;
//   absl::Status s = co_await coring::setsockopt(FileRef::fixed_index(slot), IPPROTO_TCP,
//                                                TCP_NODELAY, &one, sizeof(one));
//
// The option's value is copied into the op's slot when the op is submitted
// (at co_await), so it stays readable until the kernel's completion even if
// the awaiting coroutine is destroyed first; values larger than the slot's
// scratch (192 bytes, far above any kernel-TLS crypto_info) are read from
// the caller's memory instead, and abandoning such an op cancels it
// synchronously (op_awaitable.h).
//
// A kernel older than 6.7 answers EOPNOTSUPP (sockets without uring_cmd)
// or, before 5.19 (no IORING_OP_URING_CMD at all), EINVAL; the status then
// says that io_uring setsockopt needs Linux 6.7. A plain fd can still use
// ::setsockopt() on such kernels.
#pragma once

#include <sys/socket.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "coring/core/op_awaitable.h"

namespace coring {

namespace detail {
// From linux/io_uring.h of Linux 6.7 (neither liburing 2.3 nor Debian 12's
// kernel headers have them): the socket commands of IORING_OP_URING_CMD.
inline constexpr uint32_t kSocketUringOpSetsockopt = 3;  // SOCKET_URING_OP_SETSOCKOPT
// Linux 6.7's io_uring_sqe names fields liburing 2.3's does not have; they
// sit in the same unions, at these offsets:
//   cmd_op (u32)           at `off`          (8, the low half; the high half must be 0)
//   level, optname (u32s)  at `addr`         (16, 20)
//   optlen (u32)           at `file_index`   (44)
//   optval (u64)           at `addr3`        (48)
static_assert(offsetof(io_uring_sqe, cmd_op) == 8 && offsetof(io_uring_sqe, off) == 8);
static_assert(offsetof(io_uring_sqe, addr) == 16);
static_assert(offsetof(io_uring_sqe, file_index) == 44);
static_assert(offsetof(io_uring_sqe, addr3) == 48);
}  // namespace detail

class SetSockOpt : public OpAwaitable<SetSockOpt> {
 public:
  SetSockOpt(FileRef file, int level, int optname, const void* optval, socklen_t optlen) noexcept
      : file_(file), optval_(optval), level_(level), optname_(optname), optlen_(optlen) {
    // Copied into the slot at prepare(): nothing of the caller's is read late.
    borrowed_ = optlen_ > OpSlot::kScratchSize;
  }

  void prepare(io_uring_sqe* sqe, OpSlot& slot) noexcept {
    const void* value = optval_;
    if (!borrowed_ && optlen_ > 0) {
      std::memcpy(slot.scratch, optval_, optlen_);
      value = slot.scratch;
    }
    // Zeroes every field the command does not use (rw_flags is
    // uring_cmd_flags, __pad1 must be 0) and sets opcode and fd.
    io_uring_prep_rw(IORING_OP_URING_CMD, sqe, file_.fd, nullptr, 0, 0);
    sqe->cmd_op = detail::kSocketUringOpSetsockopt;
    const uint32_t level_and_name[2] = {static_cast<uint32_t>(level_),
                                        static_cast<uint32_t>(optname_)};
    std::memcpy(&sqe->addr, level_and_name, sizeof(level_and_name));
    sqe->file_index = optlen_;                        // optlen
    sqe->addr3 = reinterpret_cast<uintptr_t>(value);  // optval
    file_.apply(sqe);
  }

  absl::Status result(const OpResult& r) const {
    if (r.res >= 0) [[likely]]
      return absl::OkStatus();
    absl::Status s = detail::failed_status_of(r, "setsockopt");
    if (r.res == -EOPNOTSUPP || r.res == -EINVAL) {
      // EINVAL may also be the option refusing its value: say both.
      return absl::Status(s.code(), absl::StrCat(s.message(),
                                                 " (io_uring setsockopt needs Linux 6.7 or "
                                                 "later, or the option refused its value)"));
    }
    return s;
  }

  // After the co_await: the errno the kernel answered (0 on success), for
  // callers that word their own message.
  int error() const noexcept { return result_.res < 0 ? -result_.res : 0; }

 private:
  FileRef file_;
  const void* optval_;
  int level_;
  int optname_;
  socklen_t optlen_;
};

inline SetSockOpt setsockopt(FileRef file, int level, int optname, const void* optval,
                             socklen_t optlen) noexcept {
  return SetSockOpt(file, level, optname, optval, optlen);
}

}  // namespace coring
