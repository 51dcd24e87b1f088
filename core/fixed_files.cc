#include "coring/core/fixed_files.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_format.h"
#include "coring/core/errno_status.h"
#include "coring/core/event_loop.h"

namespace coring {

absl::StatusOr<std::unique_ptr<FixedFiles>> FixedFiles::create(Ring& ring, uint32_t requested) {
  uint32_t size = requested;
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
    size = static_cast<uint32_t>(std::min<rlim_t>(size, limit.rlim_cur));
  }
  if (size == 0) {
    return absl::InvalidArgumentError("fixed-file table: RLIMIT_NOFILE allows no slots");
  }
  const int ret = io_uring_register_files_sparse(ring.raw(), size);
  if (ret < 0) {
    return absl::Status(errno_to_status(-ret).code(),
                        absl::StrFormat("registering a sparse fixed-file table of %u slots: %s",
                                        size, errno_to_status(-ret).message()));
  }
  return std::unique_ptr<FixedFiles>(new FixedFiles(size, requested));
}

absl::Status fixed_slot_error(const OpResult& r, std::string_view what) {
  if (r.res == -ENFILE) {
    EventLoop* loop = EventLoop::current();
    const uint32_t size =
        (loop != nullptr && loop->fixed_files() != nullptr) ? loop->fixed_files()->size() : 0;
    return absl::ResourceExhaustedError(absl::StrFormat(
        "%s: fixed-file table full (%u slots; raise LoopOptions::fixed_files or RLIMIT_NOFILE, "
        "or close_direct() unused slots): ENFILE",
        what, size));
  }
  return status_of(r, what);
}

}  // namespace coring
