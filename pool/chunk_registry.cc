#include "coring/pool/chunk_registry.h"

#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace coring::pool::chunk_registry {
namespace {

constexpr unsigned kChunkShift = 21;   // 2 MiB chunks
constexpr unsigned kAddressBits = 47;  // user space without 5-level paging hints
constexpr uint64_t kChunks = uint64_t{1} << (kAddressBits - kChunkShift);
constexpr uint64_t kWords = kChunks / 64;

// The bitmap, reserved once per process and never freed. MAP_NORESERVE: only
// the 4 KiB pages that hold a set bit ever cost memory.
std::atomic<uint64_t>* bitmap() {
  static std::atomic<uint64_t>* const words = [] {
    void* p = ::mmap(nullptr, kWords * sizeof(uint64_t), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    return p == MAP_FAILED ? nullptr : static_cast<std::atomic<uint64_t>*>(p);
  }();
  return words;
}

}  // namespace

bool add(const void* chunk) noexcept {
  const uint64_t n = reinterpret_cast<uintptr_t>(chunk) >> kChunkShift;
  std::atomic<uint64_t>* words = bitmap();
  if (words == nullptr || n >= kChunks) return false;
  words[n / 64].fetch_or(uint64_t{1} << (n % 64), std::memory_order_release);
  return true;
}

void remove(const void* chunk) noexcept {
  const uint64_t n = reinterpret_cast<uintptr_t>(chunk) >> kChunkShift;
  std::atomic<uint64_t>* words = bitmap();
  if (words == nullptr || n >= kChunks) return;
  words[n / 64].fetch_and(~(uint64_t{1} << (n % 64)), std::memory_order_release);
}

bool contains(const void* p) noexcept {
  const uint64_t n = reinterpret_cast<uintptr_t>(p) >> kChunkShift;
  std::atomic<uint64_t>* words = bitmap();
  if (words == nullptr || n >= kChunks) return false;
  return (words[n / 64].load(std::memory_order_acquire) >> (n % 64)) & 1;
}

}  // namespace coring::pool::chunk_registry
