#include "coring/pool/mapped_region.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace coring::pool {
namespace {

constexpr size_t kSmallPage = 4096;

size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

// First line of a small /sys or /proc file, "" if unreadable.
std::string read_line(const char* path) {
  std::FILE* f = std::fopen(path, "re");
  if (f == nullptr) return {};
  char buf[256] = {};
  const bool ok = std::fgets(buf, sizeof buf, f) != nullptr;
  std::fclose(f);
  return ok ? std::string(buf) : std::string();
}

}  // namespace

std::string_view to_string(HugePageMode mode) {
  switch (mode) {
    case HugePageMode::kNone:
      return "none";
    case HugePageMode::kTransparent:
      return "transparent";
    case HugePageMode::kExplicit:
      return "explicit";
  }
  return "unknown";
}

HugePageSupport detect_huge_page_support() {
  HugePageSupport support;
  const std::string free_pages =
      read_line("/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages");
  support.free_explicit_pages = std::strtoull(free_pages.c_str(), nullptr, 10);
  // "always [madvise] never": the bracketed word is the active setting.
  const std::string thp = read_line("/sys/kernel/mm/transparent_hugepage/enabled");
  support.transparent =
      thp.find("[always]") != std::string::npos || thp.find("[madvise]") != std::string::npos;
  return support;
}

absl::StatusOr<MappedRegion> MappedRegion::map(size_t size, size_t alignment,
                                               HugePagePolicy policy) {
  if (size == 0) return absl::InvalidArgumentError("MappedRegion::map: size 0");
  if (alignment < kSmallPage || (alignment & (alignment - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "MappedRegion::map: alignment %d is not a power of two >= 4096", alignment));
  }
  const HugePageSupport support =
      policy == HugePagePolicy::kAuto ? detect_huge_page_support() : HugePageSupport{};

  // Explicit huge pages come 2 MiB aligned; only whole ones can be mapped.
  const size_t huge_size = round_up(size, kHugePageSize);
  if (support.free_explicit_pages >= huge_size / kHugePageSize && alignment <= kHugePageSize) {
    void* p = ::mmap(nullptr, huge_size, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | MAP_POPULATE, -1, 0);
    if (p != MAP_FAILED) {
      return MappedRegion(static_cast<uint8_t*>(p), huge_size, HugePageMode::kExplicit);
    }
    // The pool may have been drained by someone else meanwhile: fall through.
  }

  // Plain mapping, over-allocated so an aligned start can be cut out of it.
  const bool thp = support.transparent;
  const size_t length = thp ? huge_size : round_up(size, kSmallPage);
  const size_t align = thp && alignment < kHugePageSize ? kHugePageSize : alignment;
  const size_t span = length + align - kSmallPage;
  void* raw = ::mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) {
    const int err = errno;
    return absl::ResourceExhaustedError(
        absl::StrFormat("mmap of %d bytes failed: %s", span, std::strerror(err)));
  }
  const uintptr_t start = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t aligned = (start + align - 1) & ~(uintptr_t{align} - 1);
  if (aligned > start) ::munmap(raw, aligned - start);
  const uintptr_t end = start + span;
  if (end > aligned + length)
    ::munmap(reinterpret_cast<void*>(aligned + length), end - aligned - length);

  HugePageMode mode = HugePageMode::kNone;
  if (thp && ::madvise(reinterpret_cast<void*>(aligned), length, MADV_HUGEPAGE) == 0) {
    mode = HugePageMode::kTransparent;
  }
  return MappedRegion(reinterpret_cast<uint8_t*>(aligned), length, mode);
}

MappedRegion::MappedRegion(MappedRegion&& other) noexcept
    : data_(std::exchange(other.data_, nullptr)),
      size_(std::exchange(other.size_, 0)),
      mode_(other.mode_) {}

MappedRegion& MappedRegion::operator=(MappedRegion&& other) noexcept {
  if (this != &other) {
    reset();
    data_ = std::exchange(other.data_, nullptr);
    size_ = std::exchange(other.size_, 0);
    mode_ = other.mode_;
  }
  return *this;
}

MappedRegion::~MappedRegion() { reset(); }

void MappedRegion::reset() {
  if (data_ != nullptr) ::munmap(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace coring::pool
