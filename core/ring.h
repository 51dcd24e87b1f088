// Ring: owns one io_uring instance, set up with the best flags the kernel
// accepts, and the submission side of the event loop.
//
//   absl::StatusOr<std::unique_ptr<Ring>> ring = Ring::create({.sq_entries = 256});
//   io_uring_sqe* sqe = (*ring)->get_sqe();        // submits to make room when full
//   io_uring_prep_nop(sqe);
//   (*ring)->submit_and_wait(1);
//
// Set-up tries, in order: SINGLE_ISSUER|DEFER_TASKRUN, COOP_TASKRUN|TASKRUN_FLAG,
// then neither — each with SUBMIT_ALL, CQSIZE (>= 4x SQ) and CLAMP, dropping
// SUBMIT_ALL too if refused — and records what took (mode(), setup_flags()).
// RingOptions can forbid tiers, which is how the fallback is tested. Features
// come from params.features and the opcode probe, never the kernel version.
//
// A ring set up with SINGLE_ISSUER must only be submitted to from the thread
// that created it: create the Ring (and its EventLoop) on the thread that runs it.
// Under DEFER_TASKRUN completions are only produced while entering the kernel
// with GETEVENTS, so every submit here does that.
#pragma once

#include <liburing.h>

#include <bitset>
#include <cerrno>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace coring {

struct RingOptions {
  uint32_t sq_entries = 256;
  // 0: 4 x sq_entries. Rounded up to a power of two by the kernel.
  uint32_t cq_entries = 0;
  // Tiers may be forbidden (tests of the fallback; debugging).
  bool allow_defer_taskrun = true;
  bool allow_coop_taskrun = true;
  bool allow_submit_all = true;
  bool register_ring_fd = true;
  // Cap multishot recvs in bytes where the kernel takes it (probed; see
  // Ring::recv_limit()). False: never (tests of the fallback).
  bool allow_recv_limit = true;
  // Send silently where the kernel can (probed; see Ring::silent_send()).
  // False: never (tests of the fallback).
  bool allow_silent_send = true;
};

enum class RingMode { kDeferTaskrun, kCoopTaskrun, kPlain };
const char* ring_mode_name(RingMode mode) noexcept;

// Submission-side counters (the loop adds its own, see LoopStats).
struct RingCounters {
  uint64_t sqes_submitted = 0;
  uint64_t submit_calls = 0;
  uint64_t sq_full = 0;       // get_sqe() found the SQ full and submitted to make room
  uint64_t cq_overflows = 0;  // times the kernel reported IORING_SQ_CQ_OVERFLOW
  uint64_t cq_dropped = 0;    // CQEs the kernel could not keep (cq.koverflow); 0 with NODROP
};

class Ring {
 public:
  static absl::StatusOr<std::unique_ptr<Ring>> create(const RingOptions& options);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  io_uring* raw() noexcept { return &ring_; }
  int fd() const noexcept { return ring_.ring_fd; }
  RingMode mode() const noexcept { return mode_; }
  uint32_t setup_flags() const noexcept { return setup_flags_; }
  uint32_t features() const noexcept { return features_; }
  bool has_feature(uint32_t feature) const noexcept { return (features_ & feature) != 0; }
  bool supports(int opcode) const noexcept {
    return opcode >= 0 && opcode < kMaxOps && ops_.test(static_cast<size_t>(opcode));
  }
  bool ring_fd_registered() const noexcept { return ring_fd_registered_; }
  // A multishot recv takes a limit on the bytes it receives before it ends
  // (sqe->optlen; older kernels refuse it with EINVAL): asked of the kernel
  // once, at set-up, as the opcodes are.
  bool recv_limit() const noexcept { return recv_limit_; }
  // A send can be made silent (EventLoop::expect_silent()): marked
  // IOSQE_CQE_SKIP_SUCCESS and MSG_DONTWAIT | MSG_WAITALL, it completes
  // within the submit that takes it, and posts a CQE only when it did not
  // send every byte (the count it did send, or -EAGAIN for none). Probed
  // once, at set-up.
  bool silent_send() const noexcept { return silent_send_; }
  uint32_t sq_entries() const noexcept { return ring_.sq.ring_entries; }
  uint32_t cq_entries() const noexcept { return ring_.cq.ring_entries; }
  // "DEFER_TASKRUN|SINGLE_ISSUER|SUBMIT_ALL|CQSIZE|CLAMP (sq 256, cq 1024)".
  std::string describe() const;

  // A free SQE. When the SQ is full, submits what is queued and tries again;
  // nullptr only if the kernel refuses to take SQEs (the caller reaps and retries).
  io_uring_sqe* get_sqe() noexcept {
    if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_); sqe != nullptr) return sqe;
    return get_sqe_when_full();
  }
  // True when `n` SQEs can be taken without a submit in between (linked
  // pairs); submits first if needed.
  bool reserve(unsigned n) noexcept;
  unsigned sq_ready() noexcept { return io_uring_sq_ready(&ring_); }

  // Submits queued SQEs (and, under DEFER_TASKRUN, runs task work so CQEs
  // are posted). Returns the number submitted or a negative errno.
  int submit() noexcept;
  // Submits and blocks until at least `wait_nr` CQEs are ready.
  int submit_and_wait(unsigned wait_nr) noexcept {
    int ret = io_uring_submit_and_wait(&ring_, wait_nr);
    // A signal interrupting the wait is not an error: the caller loops anyway.
    if (ret == -EINTR) ret = 0;
    account(ret);
    return ret;
  }

  // True when the kernel holds completions that did not fit in the CQ; they
  // are flushed by the next submit()/submit_and_wait(). Counted.
  bool check_cq_overflow() noexcept;
  // Cheap test, once per reap: true when check_cq_overflow() has something
  // to count or report (the overflow flag is up, or the kernel dropped CQEs).
  bool cq_needs_check() const noexcept {
    return overflow_pending() || IO_URING_READ_ONCE(*ring_.cq.koverflow) != last_koverflow_;
  }

  const RingCounters& counters() const noexcept { return counters_; }

 private:
  static constexpr int kMaxOps = 128;
  Ring() = default;
  void account(int submitted) noexcept {
    ++counters_.submit_calls;
    if (submitted > 0) counters_.sqes_submitted += static_cast<uint64_t>(submitted);
  }
  io_uring_sqe* get_sqe_when_full() noexcept;
  bool overflow_pending() const noexcept {
    return (IO_URING_READ_ONCE(*ring_.sq.kflags) & IORING_SQ_CQ_OVERFLOW) != 0;
  }

  io_uring ring_{};
  RingMode mode_ = RingMode::kPlain;
  uint32_t setup_flags_ = 0;
  uint32_t features_ = 0;
  std::bitset<kMaxOps> ops_;
  bool ring_fd_registered_ = false;
  bool recv_limit_ = false;
  bool silent_send_ = false;
  bool initialized_ = false;
  unsigned last_koverflow_ = 0;
  RingCounters counters_;
};

}  // namespace coring
