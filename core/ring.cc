#include "coring/core/ring.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "coring/core/errno_status.h"
#include "coring/core/operation.h"

namespace coring {

const char* ring_mode_name(RingMode mode) noexcept {
  switch (mode) {
    case RingMode::kDeferTaskrun:
      return "defer-taskrun";
    case RingMode::kCoopTaskrun:
      return "coop-taskrun";
    case RingMode::kPlain:
      return "plain";
  }
  return "?";
}

namespace {

// Does this kernel take a byte limit on a multishot recv? Asked on the
// fresh ring, before anything else is in flight: a recv from a buffer group
// nobody registered, on a socket with a byte to read, completes at once -
// ENOBUFS where the limit is taken, EINVAL where it is not (or anything
// else, or nothing within a second: no limit then either; a completion
// that comes later carries kIgnoreUserData, which the loop drops).
bool probe_recv_limit(io_uring* ring) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) return false;
  bool taken = false;
  const uint8_t byte = 0;
  // The byte first: an SQE taken from the ring must be filled and submitted.
  io_uring_sqe* sqe = write(sv[1], &byte, 1) == 1 ? io_uring_get_sqe(ring) : nullptr;
  if (sqe != nullptr) {
    io_uring_prep_recv_multishot(sqe, sv[0], nullptr, 0, 0);
    sqe->flags |= IOSQE_BUFFER_SELECT;
    sqe->buf_group = UINT16_MAX;
    sqe->file_index = 1;  // optlen: one byte
    io_uring_sqe_set_data64(sqe, kIgnoreUserData);
    io_uring_cqe* cqe = nullptr;
    __kernel_timespec timeout{.tv_sec = 1, .tv_nsec = 0};
    if (io_uring_submit(ring) == 1 && io_uring_wait_cqe_timeout(ring, &cqe, &timeout) == 0) {
      taken = cqe->res == -ENOBUFS;
      io_uring_cqe_seen(ring, cqe);
    }
  }
  close(sv[0]);
  close(sv[1]);
  return taken;
}

// Does this kernel send silently (Ring::silent_send())? Asked on the fresh
// ring, over a Unix socket pair whose send buffer is small, with sends
// marked as the loop's silent ones are (IOSQE_CQE_SKIP_SUCCESS, MSG_DONTWAIT
// | MSG_WAITALL), each checked right after its submit:
//  * a small one, with room: no CQE, and its bytes arrived;
//  * a large one, with room for part of it: a CQE at once, whose result is
//    what arrived (a kernel that reported -EAGAIN for a partial send would
//    have the loop send those bytes twice);
//  * one more, with no room: a CQE of -EAGAIN at once (a kernel that parks
//    it in a poll instead would complete it later, silently, after the loop
//    took it for done).
// And a synchronous cancel must answer (EventLoop::abandon_op() relies on
// it for a silent send: its completion is never seen). Anything else: no.
// A parked send completes once the pair is closed, with kIgnoreUserData.
bool probe_silent_send(io_uring* ring) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) return false;
  const int sndbuf = 4096;  // the kernel doubles it, to about 8 KiB of skbs
  bool ok = setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf)) == 0;
  std::vector<uint8_t> bytes(64 * 1024, 0x5a);
  std::vector<uint8_t> sink(bytes.size());
  // Submits one silent send of n bytes; the CQE it posted at once, if any.
  auto send = [&](size_t n, io_uring_cqe* out) {
    io_uring_sqe* sqe = io_uring_get_sqe(ring);
    if (sqe == nullptr) return -1;
    io_uring_prep_send(sqe, sv[0], bytes.data(), n, MSG_NOSIGNAL | MSG_DONTWAIT | MSG_WAITALL);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, kIgnoreUserData);
    if (io_uring_submit_and_get_events(ring) != 1) return -1;
    io_uring_cqe* cqe = nullptr;
    if (io_uring_peek_cqe(ring, &cqe) != 0) return 0;
    *out = *cqe;
    io_uring_cqe_seen(ring, cqe);
    return 1;
  };
  auto received = [&] {
    const ssize_t n = recv(sv[1], sink.data(), sink.size(), MSG_DONTWAIT);
    return n < 0 ? 0 : static_cast<size_t>(n);
  };
  io_uring_cqe cqe{};
  ok = ok && send(8, &cqe) == 0 && received() == 8;
  ok = ok && send(bytes.size(), &cqe) == 1 && cqe.res > 0 &&
       static_cast<size_t>(cqe.res) < bytes.size();
  size_t arrived = 0;
  for (size_t n; ok && (n = received()) > 0;) arrived += n;
  ok = ok && arrived == static_cast<size_t>(cqe.res);
  // Fill it up (what was read above made room), then one more.
  while (ok && ::send(sv[0], bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
  }
  ok = ok && send(bytes.size(), &cqe) == 1 && cqe.res == -EAGAIN;
  if (ok) {
    io_uring_sync_cancel_reg reg;
    std::memset(&reg, 0, sizeof(reg));
    reg.addr = kIgnoreUserData;  // nothing of that name is in flight
    reg.fd = -1;
    reg.timeout.tv_sec = -1;
    reg.timeout.tv_nsec = -1;
    ok = io_uring_register_sync_cancel(ring, &reg) == -ENOENT;
  }
  close(sv[0]);
  close(sv[1]);
  return ok;
}

struct Candidate {
  uint32_t flags;
  RingMode mode;
};

std::string flag_names(uint32_t flags) {
  struct Name {
    uint32_t flag;
    const char* name;
  };
  static constexpr Name kNames[] = {
      {IORING_SETUP_DEFER_TASKRUN, "DEFER_TASKRUN"},
      {IORING_SETUP_SINGLE_ISSUER, "SINGLE_ISSUER"},
      {IORING_SETUP_COOP_TASKRUN, "COOP_TASKRUN"},
      {IORING_SETUP_TASKRUN_FLAG, "TASKRUN_FLAG"},
      {IORING_SETUP_SUBMIT_ALL, "SUBMIT_ALL"},
      {IORING_SETUP_CQSIZE, "CQSIZE"},
      {IORING_SETUP_CLAMP, "CLAMP"},
  };
  std::string out;
  for (const Name& n : kNames) {
    if (flags & n.flag) absl::StrAppend(&out, out.empty() ? "" : "|", n.name);
  }
  return out.empty() ? "none" : out;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Ring>> Ring::create(const RingOptions& options) {
  if (options.sq_entries == 0) return absl::InvalidArgumentError("Ring: sq_entries must be > 0");
  const uint32_t cq_entries = options.cq_entries != 0 ? options.cq_entries : options.sq_entries * 4;
  if (cq_entries < options.sq_entries) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "Ring: cq_entries (%u) must be >= sq_entries (%u)", cq_entries, options.sq_entries));
  }

  const uint32_t base = IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
  const uint32_t submit_all = options.allow_submit_all ? IORING_SETUP_SUBMIT_ALL : 0;
  std::vector<Candidate> ladder;
  if (options.allow_defer_taskrun) {
    const uint32_t f = base | IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN;
    if (submit_all) ladder.push_back({f | submit_all, RingMode::kDeferTaskrun});
    ladder.push_back({f, RingMode::kDeferTaskrun});
  }
  if (options.allow_coop_taskrun) {
    const uint32_t f = base | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG;
    if (submit_all) ladder.push_back({f | submit_all, RingMode::kCoopTaskrun});
    ladder.push_back({f, RingMode::kCoopTaskrun});
  }
  if (submit_all) ladder.push_back({base | submit_all, RingMode::kPlain});
  ladder.push_back({base, RingMode::kPlain});
  ladder.push_back({0, RingMode::kPlain});

  std::unique_ptr<Ring> ring(new Ring());
  int last_error = 0;
  for (const Candidate& c : ladder) {
    io_uring_params params;
    std::memset(&params, 0, sizeof(params));
    params.flags = c.flags;
    params.cq_entries = cq_entries;
    const int ret = io_uring_queue_init_params(options.sq_entries, &ring->ring_, &params);
    if (ret == 0) {
      ring->initialized_ = true;
      ring->mode_ = c.mode;
      ring->setup_flags_ = c.flags;
      ring->features_ = params.features;
      break;
    }
    last_error = -ret;
    // EINVAL: a flag this kernel does not know; anything else will not get
    // better with fewer flags.
    if (ret != -EINVAL) break;
  }
  if (!ring->initialized_) {
    return errno_to_status(last_error, "io_uring_setup");
  }

  if (io_uring_probe* probe = io_uring_get_probe_ring(&ring->ring_); probe != nullptr) {
    for (int op = 0; op < kMaxOps && op <= probe->last_op; ++op) {
      if (io_uring_opcode_supported(probe, op)) ring->ops_.set(static_cast<size_t>(op));
    }
    io_uring_free_probe(probe);
  }
  if (options.allow_recv_limit) ring->recv_limit_ = probe_recv_limit(&ring->ring_);
  if (options.allow_silent_send) ring->silent_send_ = probe_silent_send(&ring->ring_);
  if (options.register_ring_fd) {
    ring->ring_fd_registered_ = io_uring_register_ring_fd(&ring->ring_) == 1;
  }
  ring->last_koverflow_ = *ring->ring_.cq.koverflow;
  return ring;
}

Ring::~Ring() {
  if (initialized_) io_uring_queue_exit(&ring_);
}

std::string Ring::describe() const {
  return absl::StrFormat("%s [%s] (sq %u, cq %u%s%s%s)", ring_mode_name(mode_),
                         flag_names(setup_flags_), ring_.sq.ring_entries, ring_.cq.ring_entries,
                         ring_fd_registered_ ? ", ring fd registered" : "",
                         recv_limit_ ? ", multishot recv limit" : "",
                         silent_send_ ? ", silent sends" : "");
}

io_uring_sqe* Ring::get_sqe_when_full() noexcept {
  ++counters_.sq_full;
  // SQ full: hand what is queued to the kernel, which frees the slots.
  submit();
  return io_uring_get_sqe(&ring_);
}

bool Ring::reserve(unsigned n) noexcept {
  if (io_uring_sq_space_left(&ring_) >= n) return true;
  ++counters_.sq_full;
  submit();
  return io_uring_sq_space_left(&ring_) >= n;
}

int Ring::submit() noexcept {
  int ret;
  do {
    // DEFER_TASKRUN: completions (and the overflow flush) need GETEVENTS.
    ret = (mode_ == RingMode::kDeferTaskrun || overflow_pending())
              ? io_uring_submit_and_get_events(&ring_)
              : io_uring_submit(&ring_);
  } while (ret == -EINTR);
  account(ret);
  return ret;
}

bool Ring::check_cq_overflow() noexcept {
  const unsigned dropped = IO_URING_READ_ONCE(*ring_.cq.koverflow);
  if (dropped != last_koverflow_) {
    counters_.cq_dropped += dropped - last_koverflow_;
    last_koverflow_ = dropped;
  }
  if (overflow_pending()) {
    ++counters_.cq_overflows;
    return true;
  }
  return false;
}

}  // namespace coring
