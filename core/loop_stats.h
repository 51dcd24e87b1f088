// LoopStats: counters of one EventLoop, read on its thread with loop.stats().
#pragma once

#include <cstdint>
#include <string>

namespace coring {

struct LoopStats {
  uint64_t iterations = 0;
  uint64_t sqes_submitted = 0;
  uint64_t submit_calls = 0;
  uint64_t cqes = 0;
  uint64_t sq_full = 0;       // the SQ was full and a submit made room
  uint64_t cq_overflows = 0;  // the kernel held CQEs back (IORING_SQ_CQ_OVERFLOW); all delivered
  uint64_t cq_dropped = 0;    // CQEs the kernel lost (cq.koverflow); 0 with IORING_FEAT_NODROP
  uint64_t enobufs = 0;       // multishot recvs stopped by an empty provided-buffer ring
  uint64_t recv_pauses = 0;   // multishot recvs paused: the stream held its share of the ring
  uint64_t recv_spills = 0;   // chunks a paused stream moved out of the ring (copied)
  uint64_t recv_spilled_bytes = 0;
  uint64_t recv_dry_waits = 0;     // a reader found the provided-buffer ring empty and waited
  uint64_t recv_handoffs = 0;      // buffers handed to a stream in line that lost races for one
  uint64_t recv_ring_grows = 0;    // blocks an elastic receive ring added (core/buffer_ring.h)
  uint64_t recv_ring_shrinks = 0;  // blocks it retired after a quiet period
  uint64_t recv_direct = 0;  // recvs straight into a reader's memory (RecvStream::receive_into)
  uint64_t recv_direct_bytes = 0;
  uint64_t ops_in_flight = 0;      // operation slots waiting for their final CQE
  uint64_t msg_ring_sent = 0;      // wake-ups this loop sent with IORING_OP_MSG_RING
  uint64_t msg_ring_received = 0;  // wake-ups received through MSG_RING
  uint64_t foreign_wakes = 0;      // wake-ups other threads sent synchronously (SEND_MSG_RING)
  uint64_t eventfd_wakes = 0;      // wake-ups received through the eventfd fallback
  uint64_t posts_run = 0;          // posted functions and switch_to() resumptions run here
  uint64_t stale_cqes = 0;         // CQEs naming a released slot (must stay 0)
  uint64_t task_failures = 0;      // spawned tasks that ended with an exception
  uint64_t enter_errors = 0;       // io_uring_enter calls that failed (other than EAGAIN/EBUSY)
  uint64_t silent_sends = 0;       // sends that sent every byte and posted no CQE (expect_silent)

  // One line, "iterations=… sqes_submitted=… …".
  std::string to_string() const;
};

}  // namespace coring
