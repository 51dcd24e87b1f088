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
  return absl::StrFormat("%s [%s] (sq %u, cq %u%s%s)", ring_mode_name(mode_),
                         flag_names(setup_flags_), ring_.sq.ring_entries, ring_.cq.ring_entries,
                         ring_fd_registered_ ? ", ring fd registered" : "",
                         recv_limit_ ? ", multishot recv limit" : "");
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
