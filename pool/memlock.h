// check_memlock: can this process pin `bytes` of registered buffers?
//
// io_uring charges registered buffers to RLIMIT_MEMLOCK unless the process
// has CAP_IPC_LOCK. A limit that is too low makes io_uring_register_buffers()
// fail with a bare ENOMEM; checking first turns that into an error that names
// the limit and says how to raise it.
//
//   if (absl::Status s = check_memlock(arena.registered_bytes()); !s.ok()) {
//     std::cerr << s << "\n";   // "...RLIMIT_MEMLOCK is 8 MiB...; raise it with `ulimit -l`..."
//   }
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace coring::pool {

struct MemlockLimits {
  std::optional<uint64_t> soft_limit_bytes;  // nullopt = unlimited
  std::optional<uint64_t> hard_limit_bytes;  // nullopt = unlimited
  bool has_cap_ipc_lock = false;
};

// This process's limits (getrlimit + capget). Internal on failure.
absl::StatusOr<MemlockLimits> current_memlock_limits();

// OK when `bytes` can be pinned under `limits`; otherwise ResourceExhausted
// naming the requested size, the limit and the ways to raise it (ulimit -l,
// /etc/security/limits.conf, systemd LimitMEMLOCK=, CAP_IPC_LOCK).
absl::Status check_memlock(size_t bytes, const MemlockLimits& limits);
// The same against this process's current limits.
absl::Status check_memlock(size_t bytes);

}  // namespace coring::pool
