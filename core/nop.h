// nop(): an IORING_OP_NOP round trip through the ring (benchmarks, tests,
// and a cheap way to yield to the kernel).
//
//   absl::Status s = co_await coring::nop();
#pragma once

#include "coring/core/op_awaitable.h"

namespace coring {

class Nop : public OpAwaitable<Nop> {
 public:
  void prepare(io_uring_sqe* sqe, OpSlot&) noexcept { io_uring_prep_nop(sqe); }
  absl::Status result(const OpResult& r) const { return status_of(r, "nop"); }
};

inline Nop nop() noexcept { return Nop{}; }

}  // namespace coring
