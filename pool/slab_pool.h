// SlabPool: a per-thread allocator for objects of 64 B to 64 KiB, with no
// lock and no atomic read-modify-write on its fast path.
//
// Each event-loop thread owns one pool. Requests are rounded up to one of 41
// size classes (size_classes.h) and served from 64 KiB pages (page.h) of
// 2 MiB chunks (page_arena.h). A block may be freed from any thread with
// pool::deallocate(p): on the owning thread it is a local free; on any other
// thread it is pushed onto the owner's lock-free queue and the owner takes it
// back in drain() (which the event loop calls every 64 iterations, and which
// the pool also calls itself before growing and in trim()). No block is ever
// reused by a thread other than its owner.
//
// In front of the page bitmaps sits a per-class cache ("bin", up to a page's
// worth of blocks, 4 to 1024): the owner's alloc pops from it and its free pushes onto it, so an
// alloc+free pair is a handful of plain loads and stores. Bins refill from and
// flush half back to the bitmaps in batches; at capacity the pool flushes
// every bin so that empty pages can move to another class. Double frees are
// detected when a block reaches its page's bitmap (always), and on the spot
// in debug builds (NDEBUG unset).
//
//   SlabPool pool({.name = "sbmp.echo.frames.v1", .capacity_bytes = 8 << 20});
//   absl::StatusOr<void*> p = pool.allocate(200);   // a 224-byte block
//   if (!p.ok()) return p.status();                  // ResourceExhausted, with figures
//   ...
//   pool::deallocate(*p);                            // from any thread
//
// Rules:
// * Limits. Requests above 64 KiB are not slab business: allocate() returns
//   InvalidArgument naming the 65536-byte limit and try_allocate() returns
//   nullptr; the caller uses the heap. A request of 0 bytes gets a 64-byte
//   block. The pool never holds more than capacity_bytes of pages;
//   past that, allocate() returns ResourceExhausted with the pool's name and
//   figures, and succeeds again once blocks come back.
// * Ownership. The first thread that allocates becomes the owner; allocate(),
//   drain() and stats() must be called on that thread only.
// * Lifetime. The pool should outlive its blocks. If it is destroyed while
//   blocks are still out (or in flight back to it), it does not crash and it
//   does not unmap anything: it logs an error, keeps its chunks mapped for the
//   rest of the process, and any later deallocate() of those blocks is safe
//   (the memory is simply never reused).
// * Memory given back. Pages whose blocks are all free are kept for reuse
//   (by any class). trim(), called now and then (the server's idle sweep
//   calls it every tick), gives the memory of pages that stayed unused
//   since the previous call back to the system (madvise(MADV_DONTNEED), one
//   call per run of adjacent pages; the address space stays reserved and is
//   faulted in again, zeroed, when a page is next used), so a thread's RSS
//   falls again after a burst of connections closes. Nothing on the
//   allocation or free path changes.
// * Options are validated on construction; if they are bad (pool name not
//   domain.resource.v<major>, zero capacity), status() says why and every
//   allocate() returns that error.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "coring/pool/mapped_region.h"
#include "coring/pool/page.h"
#include "coring/pool/page_arena.h"
#include "coring/pool/pool_stats.h"
#include "coring/pool/size_classes.h"

namespace coring::pool {

struct SlabPoolOptions {
  std::string name = "coring.slab.v1";  // domain.resource.v<major>
  size_t capacity_bytes = 64 << 20;     // page memory, rounded up to whole 64 KiB pages
  // Small pages by default: the slab holds per-connection state, and a
  // transparent huge page that one idle connection's block keeps in use
  // pins 2 MiB that trim() can only give back by splitting it (measured: ~1
  // KiB more RSS per idle connection at 10,000 connections).
  HugePagePolicy huge_pages = HugePagePolicy::kNever;
};

// A small integer naming the calling thread, unique for the process's life
// (never reused, never 0).
uint64_t assign_thread_id() noexcept;
inline constinit thread_local uint64_t t_current_thread_id = 0;
inline uint64_t current_thread_id() noexcept {
  const uint64_t id = t_current_thread_id;
  return id != 0 ? id : assign_thread_id();
}

class SlabPool {
 public:
  explicit SlabPool(SlabPoolOptions options = {});
  SlabPool(const SlabPool&) = delete;
  SlabPool& operator=(const SlabPool&) = delete;
  ~SlabPool();

  // OK, or why the options were rejected.
  const absl::Status& status() const { return status_; }
  const std::string& name() const { return name_; }
  size_t capacity_bytes() const { return size_t{capacity_pages_} * kPageSize; }

  // A block of at least `n` bytes, 16-byte aligned. Errors: InvalidArgument
  // (n > 64 KiB, or bad options), ResourceExhausted (capacity reached).
  absl::StatusOr<void*> allocate(size_t n);
  // As allocate(), nullptr instead of an error.
  void* try_allocate(size_t n) noexcept;

  // Takes back the blocks other threads freed. Cheap (one load) when none did.
  void drain() noexcept;

  // True if `p` is a block of this pool (live or not).
  bool owns(const void* p) const noexcept;

  // Owner thread only. Gives back to the system the memory of the pages
  // that were free at the previous call and still are (returns the bytes).
  // When fewer than kQuietAllocations blocks were allocated since the
  // previous call (the thread is nearly idle), it first returns the blocks
  // parked in the per-class caches to their pages and lets go of the empty
  // page each class keeps, so those pages go at the next call too. Cheap
  // when there is nothing to do; not for a hot path.
  size_t trim() noexcept;
  static constexpr uint64_t kQuietAllocations = 1024;

  // Owner thread only.
  PoolStats stats() const;

 private:
  friend void deallocate(void* p) noexcept;

  // Per class: recently freed or pre-taken blocks; slots[count-1] goes out next.
  // A page's worth of blocks, between 4 and 1024: a burst of up to a page
  // of allocations and frees stays out of the bitmaps entirely.
  static constexpr uint32_t kMaxBinSlots = 1024;
  static constexpr uint32_t kMinBinSlots = 4;
  // Blocks moved from the bitmaps per refill: enough to amortise, few enough
  // that the slow path's scratch arrays stay small.
  static constexpr uint32_t kRefillBatch = 64;
  struct Bin {
    uint32_t count = 0;
    uint32_t capacity = 0;
    uint32_t fresh = 0;      // slots[0, min(fresh, count)) were never handed out before
    void** slots = nullptr;  // capacity entries in bin_storage_
  };

  void* allocate_slow(uint32_t size_class) noexcept;
  absl::Status allocation_error(size_t n) const;
  void free_local(ChunkHeader* chunk, void* p) noexcept;
  void flush_half(Bin& bin) noexcept;
  void flush_all_bins() noexcept;
  bool refill(uint32_t size_class) noexcept;
  PageHeader* obtain_page() noexcept;
  void return_to_page(void* p) noexcept;
  void check_not_cached(const void* p) const noexcept;
  [[noreturn]] void on_bad_free(const void* p) const noexcept;
  void on_page_not_full(PageHeader* page) noexcept;
  void on_page_empty(PageHeader* page) noexcept;
  void push_free_page(PageHeader* page) noexcept;
  PageHeader* pop_free_page() noexcept;
  void unlink(PageHeader* page) noexcept;
  void push_front(PageHeader* page) noexcept;
  absl::StatusOr<PageHeader*> fresh_page();
  PageHeader* steal_empty_page() noexcept;

  // Per class: pages with at least one free block; the head serves requests.
  PageHeader* partial_[kSizeClassCount] = {};
  uint64_t allocs_ = 0;
  uint64_t frees_ = 0;
  uint64_t high_water_ = 0;
  uint64_t cross_thread_frees_ = 0;  // counted as drained
  uint64_t fresh_taken_ = 0;         // blocks taken into bins that had never been handed out
  Bin bins_[kSizeClassCount];
  std::vector<void*> bin_storage_;  // every bin's slots, allocated once
  PoolShared* shared_ = nullptr;    // in the first chunk; nullptr until the first allocation
  uint64_t owner_thread_ = 0;       // bound by the first allocation
  PageHeader* free_pages_ = nullptr;
  // Free pages whose memory trim() gave back (used after free_pages_).
  PageHeader* released_pages_ = nullptr;
  uint64_t released_bytes_ = 0;
  uint32_t trim_epoch_ = 0;      // trim() calls so far
  uint64_t allocs_at_trim_ = 0;  // allocs_ at the last trim()
  uint32_t pages_in_use_ = 0;
  uint32_t capacity_pages_ = 0;
  PageArena arena_;
  std::string name_;
  absl::Status status_;
  absl::Status last_map_error_;  // why the last slow path could not map memory
};

// True if `p` points into memory of some SlabPool (safe on any pointer).
bool is_slab_block(const void* p) noexcept;

// The usable size of slab block `p` (its class size).
size_t slab_block_size(const void* p) noexcept;

// Frees a block of any SlabPool, from any thread. nullptr is ignored.
void deallocate(void* p) noexcept;

// Out-of-line half of deallocate(): `p` belongs to a pool this thread does not own.
void deallocate_remote(PoolShared* shared, void* p) noexcept;

// ---------------------------------------------------------------------------
// Fast paths.

inline void* SlabPool::try_allocate(size_t n) noexcept {
  if (n > kMaxBlockSize) [[unlikely]]
    return nullptr;
  Bin& bin = bins_[size_class_of(n)];
  if (bin.count == 0) [[unlikely]]
    return allocate_slow(size_class_of(n));
  void* p = bin.slots[--bin.count];
  const uint64_t live = ++allocs_ - frees_;
  if (live > high_water_) high_water_ = live;
  return p;
}

inline void SlabPool::free_local(ChunkHeader* chunk, void* p) noexcept {
  PageHeader* page = page_of(chunk, p);
#ifndef NDEBUG
  const uint32_t index = page->index_of(p);
  if (!page->is_block_start(p, index) || page->is_free(index)) on_bad_free(p);
  check_not_cached(p);
#endif
  Bin& bin = bins_[page->size_class];
  if (bin.count == bin.capacity) [[unlikely]]
    flush_half(bin);
  if (bin.count < bin.fresh) bin.fresh = bin.count;  // the fresh ones below were handed out
  bin.slots[bin.count++] = p;
  ++frees_;
}

inline void deallocate(void* p) noexcept {
  if (p == nullptr) return;
  ChunkHeader* chunk = chunk_of(p);
  if (chunk->owner_thread.load(std::memory_order_relaxed) == current_thread_id()) [[likely]] {
    chunk->pool->free_local(chunk, p);
  } else {
    deallocate_remote(chunk->shared, p);
  }
}

}  // namespace coring::pool
