#include "coring/pool/system_heap.h"

#if defined(__GLIBC__)
#include <malloc.h>
#endif

#include "absl/strings/str_format.h"

namespace coring::pool {
namespace {

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
constexpr bool kSanitizerAllocator = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(memory_sanitizer)
constexpr bool kSanitizerAllocator = true;
#else
constexpr bool kSanitizerAllocator = false;
#endif
#else
constexpr bool kSanitizerAllocator = false;
#endif

constexpr size_t kMinBlock = 4 << 10;
constexpr size_t kMaxBlock = 32 << 20;  // glibc: HEAP_MAX_SIZE / 2 on 64-bit

}  // namespace

absl::Status pin_heap_mmap_threshold(size_t min_block) {
  if (min_block < kMinBlock || min_block > kMaxBlock) {
    return absl::InvalidArgumentError(
        absl::StrFormat("heap mmap threshold %d bytes: must be from %d (4 KiB) to %d (32 MiB)",
                        min_block, kMinBlock, kMaxBlock));
  }
  if constexpr (kSanitizerAllocator) {
    return absl::UnimplementedError("heap mmap threshold: a sanitizer's allocator is in use");
  }
#if defined(__GLIBC__)
  // Setting it also stops glibc adapting this and the trim threshold.
  if (mallopt(M_MMAP_THRESHOLD, static_cast<int>(min_block)) != 1) {
    return absl::InternalError(
        absl::StrFormat("mallopt(M_MMAP_THRESHOLD, %d) was refused", min_block));
  }
  return absl::OkStatus();
#else
  return absl::UnimplementedError("heap mmap threshold: not glibc's malloc");
#endif
}

}  // namespace coring::pool
