// BufferArena: the per-thread arena of fixed-size I/O buffers that core/
// registers with io_uring.
//
// The arena maps one contiguous, page-aligned region (2 MiB huge pages when
// the system offers them) and divides it into registered regions: one per
// buffer class ({size, count}, e.g. 4 KiB x 256 and 64 KiB x 32), then one
// "carve" region for provided-buffer rings. regions() is exactly the iovec
// array io_uring_register_buffers() takes, so region i is registered buffer
// index i and every lease knows its buf_index().
//
//   absl::StatusOr<BufferArena> arena = BufferArena::create({
//       .name = "sbmp.echo.io.v1",
//       .classes = {{4096, 256}, {65536, 32}},
//       .carve_bytes = 1 << 20});
//   if (!arena.ok()) return arena.status();
//   if (absl::Status s = arena->check_memlock(); !s.ok()) return s;   // before registering
//   io_uring_register_buffers(&ring, arena->regions().data(), arena->regions().size());
//   absl::StatusOr<BufferLease> buf = arena->acquire(1500);   // a 4 KiB buffer
//   absl::StatusOr<BufferBlock> ring_bufs = arena->carve(64, 4096);
//
// acquire(size) serves the smallest class whose buffers hold `size` bytes
// (0 gets the smallest class); it does not spill into larger classes, so a
// class running out shows as ResourceExhausted for that class rather than as
// silent waste. Sizes above the largest class are InvalidArgument.
// Owner thread only: the arena, its leases and its blocks are not
// thread-safe.
#pragma once

#include <sys/uio.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coring/pool/buffer_lease.h"
#include "coring/pool/mapped_region.h"
#include "coring/pool/pool_stats.h"

namespace coring::pool {

struct BufferClass {
  uint32_t buffer_size;  // bytes, a multiple of 64 (a cache line)
  uint32_t count;
};

struct BufferArenaOptions {
  std::string name = "coring.buffers.v1";  // domain.resource.v<major>
  // Distinct sizes (any order); the total is the arena's capacity.
  std::vector<BufferClass> classes = {{4096, 256}, {65536, 32}};
  // Room for carve() (provided-buffer rings); 0 = no carve region.
  size_t carve_bytes = 1 << 20;
  HugePagePolicy huge_pages = HugePagePolicy::kAuto;
};

// Where a byte of the arena lies in registered-buffer terms.
struct BufferAddress {
  uint16_t buf_index;
  size_t offset;  // from the start of region buf_index
};

class BufferArena {
 public:
  // Maps the memory. InvalidArgument for bad options (name, empty or
  // duplicate classes, zero sizes, a region above io_uring's 1 GiB limit),
  // ResourceExhausted if the kernel refuses the memory.
  static absl::StatusOr<BufferArena> create(BufferArenaOptions options);

  BufferArena(BufferArena&&) noexcept;
  BufferArena& operator=(BufferArena&&) noexcept;
  BufferArena(const BufferArena&) = delete;
  BufferArena& operator=(const BufferArena&) = delete;
  ~BufferArena();

  // For io_uring_register_buffers(): region i = registered buffer index i.
  absl::Span<const struct iovec> regions() const;
  // The region [p, p + n) lies wholly in (its registered buffer index), or
  // -1. For every send: the carve region (receive rings' buffers, an echo's
  // usual case) is looked at first, memory outside the arena costs one test.
  int32_t region_index(const void* p, size_t n) const noexcept;
  // Total bytes of regions() (what registration pins).
  size_t registered_bytes() const;
  // check_memlock(registered_bytes()) (memlock.h).
  absl::Status check_memlock() const;

  // One buffer of at least `size` bytes. ResourceExhausted (naming the arena,
  // the class and its figures) when that class has none free.
  absl::StatusOr<BufferLease> acquire(size_t size);
  // acquire() for a caller with a fallback (a hot path): nullopt where
  // acquire() fails, without building its message.
  std::optional<BufferLease> try_acquire(size_t size) noexcept;
  // `count` contiguous buffers of `buffer_size` bytes from the carve region
  // (start 4 KiB aligned). ResourceExhausted when no free run is long enough.
  absl::StatusOr<BufferBlock> carve(uint32_t count, uint32_t buffer_size);

  // (region, offset) of an address inside the arena; NotFound otherwise.
  absl::StatusOr<BufferAddress> locate(const void* p) const;

  const std::string& name() const;
  PoolStats stats() const;

 private:
  explicit BufferArena(std::unique_ptr<detail::ArenaState> state);
  // When leases outlive the arena, the state is handed to them (see buffer_lease.h).
  std::unique_ptr<detail::ArenaState> state_;
};

}  // namespace coring::pool
