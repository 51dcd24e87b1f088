// MappedRegion: an RAII anonymous mmap, aligned as asked, backed by 2 MiB
// huge pages when the system offers them.
//
// The huge-page strategy, in order: explicit huge pages (MAP_HUGETLB) when
// the kernel has enough free 2 MiB pages reserved (vm.nr_hugepages); else
// transparent huge pages (madvise(MADV_HUGEPAGE)) when THP is 'always' or
// 'madvise'; else plain 4 KiB pages. The mode that was actually used is
// recorded (huge_pages()) and shows up in the pool stats.
//
//   absl::StatusOr<MappedRegion> r = MappedRegion::map(8 << 20, 2 << 20, HugePagePolicy::kAuto);
//   if (!r.ok()) return r.status();
//   std::memset(r->data(), 0, r->size());
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "absl/status/statusor.h"

namespace coring::pool {

inline constexpr size_t kHugePageSize = 2 * 1024 * 1024;

// How a region is backed.
enum class HugePageMode : uint8_t {
  kNone,         // plain 4 KiB pages
  kTransparent,  // THP requested with madvise(MADV_HUGEPAGE) (or THP 'always')
  kExplicit,     // MAP_HUGETLB from the reserved hugetlbfs pool
};
// "none", "transparent", "explicit".
std::string_view to_string(HugePageMode mode);

// What a pool asks for.
enum class HugePagePolicy : uint8_t {
  kAuto,   // the best the system offers (see above)
  kNever,  // plain pages only (tests, or memory-tight deployments)
};

// What this machine offers right now (reads /sys and /proc; cheap, uncached).
struct HugePageSupport {
  uint64_t free_explicit_pages = 0;  // free 2 MiB hugetlbfs pages
  bool transparent = false;          // THP is 'always' or 'madvise'
};
HugePageSupport detect_huge_page_support();

class MappedRegion {
 public:
  // Maps `size` bytes (rounded up to 4 KiB, or to 2 MiB for huge pages)
  // whose start is a multiple of `alignment` (a power of two >= 4 KiB).
  // Fails with ResourceExhausted when the kernel refuses the memory.
  static absl::StatusOr<MappedRegion> map(size_t size, size_t alignment, HugePagePolicy policy);

  MappedRegion() = default;
  MappedRegion(MappedRegion&& other) noexcept;
  MappedRegion& operator=(MappedRegion&& other) noexcept;
  MappedRegion(const MappedRegion&) = delete;
  MappedRegion& operator=(const MappedRegion&) = delete;
  ~MappedRegion();

  uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  HugePageMode huge_pages() const { return mode_; }
  bool empty() const { return data_ == nullptr; }

  // Gives up ownership without unmapping (memory deliberately kept mapped
  // forever, e.g. a slab pool destroyed while other threads hold its blocks).
  void leak() {
    data_ = nullptr;
    size_ = 0;
  }

 private:
  MappedRegion(uint8_t* data, size_t size, HugePageMode mode)
      : data_(data), size_(size), mode_(mode) {}
  void reset();

  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  HugePageMode mode_ = HugePageMode::kNone;
};

}  // namespace coring::pool
