#include "coring/pool/memlock.h"

#include <linux/capability.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace coring::pool {
namespace {

std::string human(uint64_t bytes) {
  if (bytes >= (uint64_t{1} << 30) && bytes % (uint64_t{1} << 30) == 0) {
    return absl::StrFormat("%d GiB", bytes >> 30);
  }
  if (bytes >= (uint64_t{1} << 20) && bytes % (uint64_t{1} << 20) == 0) {
    return absl::StrFormat("%d MiB", bytes >> 20);
  }
  if (bytes >= 1024 && bytes % 1024 == 0) return absl::StrFormat("%d KiB", bytes >> 10);
  return absl::StrFormat("%d bytes", bytes);
}

bool has_cap_ipc_lock() {
  // glibc has no capget wrapper; libcap is not a dependency, the syscall is.
  __user_cap_header_struct header{};
  header.version = _LINUX_CAPABILITY_VERSION_3;
  header.pid = 0;
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return false;
  return (data[CAP_IPC_LOCK / 32].effective >> (CAP_IPC_LOCK % 32)) & 1;
}

}  // namespace

absl::StatusOr<MemlockLimits> current_memlock_limits() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_MEMLOCK, &lim) != 0) {
    const int err = errno;
    return absl::InternalError(
        absl::StrFormat("getrlimit(RLIMIT_MEMLOCK) failed: %s", std::strerror(err)));
  }
  MemlockLimits limits;
  if (lim.rlim_cur != RLIM_INFINITY) limits.soft_limit_bytes = lim.rlim_cur;
  if (lim.rlim_max != RLIM_INFINITY) limits.hard_limit_bytes = lim.rlim_max;
  limits.has_cap_ipc_lock = has_cap_ipc_lock();
  return limits;
}

absl::Status check_memlock(size_t bytes, const MemlockLimits& limits) {
  if (limits.has_cap_ipc_lock || !limits.soft_limit_bytes.has_value() ||
      *limits.soft_limit_bytes >= bytes) {
    return absl::OkStatus();
  }
  const uint64_t kib = (bytes + 1023) / 1024;
  std::string hard = limits.hard_limit_bytes.has_value()
                         ? absl::StrFormat("hard limit %s", human(*limits.hard_limit_bytes))
                         : std::string("hard limit unlimited");
  const bool hard_too_low = limits.hard_limit_bytes.has_value() && *limits.hard_limit_bytes < bytes;
  return absl::ResourceExhaustedError(absl::StrFormat(
      "registering %s of I/O buffers needs RLIMIT_MEMLOCK >= %d bytes, but the limit is %s "
      "(%s) and the process lacks CAP_IPC_LOCK. Raise it: in the shell `ulimit -l %d` (KiB) or "
      "`ulimit -l unlimited`%s; for a user, a line '<user> - memlock %d' (or 'unlimited') in "
      "/etc/security/limits.conf, then log in again; for a systemd service, "
      "LimitMEMLOCK=%d (or infinity) in its unit; for a container, --ulimit memlock=-1; "
      "or grant CAP_IPC_LOCK; or configure fewer/smaller buffers",
      human(bytes), bytes, human(*limits.soft_limit_bytes), hard, kib,
      hard_too_low ? " (as root: the hard limit is lower too)" : "", kib, bytes));
}

absl::Status check_memlock(size_t bytes) {
  absl::StatusOr<MemlockLimits> limits = current_memlock_limits();
  if (!limits.ok()) return limits.status();
  return check_memlock(bytes, *limits);
}

}  // namespace coring::pool
