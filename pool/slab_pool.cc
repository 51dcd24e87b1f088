#include "coring/pool/slab_pool.h"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <utility>

#include "absl/base/internal/raw_logging.h"
#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "coring/pool/chunk_registry.h"

namespace coring::pool {
namespace {

std::atomic<uint64_t> g_next_thread_id{1};

// Sorts a list of pages (linked by `next`) by address: a merge sort, which
// needs no memory (trim() runs on a loop that must not allocate).
PageHeader* sort_by_address(PageHeader* list) noexcept {
  if (list == nullptr || list->next == nullptr) return list;
  PageHeader* slow = list;
  for (PageHeader* fast = list->next; fast != nullptr && fast->next != nullptr;
       fast = fast->next->next) {
    slow = slow->next;
  }
  PageHeader* second = slow->next;
  slow->next = nullptr;
  PageHeader* a = sort_by_address(list);
  PageHeader* b = sort_by_address(second);
  PageHeader* head = nullptr;
  PageHeader** tail = &head;
  while (a != nullptr && b != nullptr) {
    PageHeader*& lower =
        reinterpret_cast<uintptr_t>(a->base) < reinterpret_cast<uintptr_t>(b->base) ? a : b;
    *tail = lower;
    tail = &lower->next;
    lower = lower->next;
  }
  *tail = a != nullptr ? a : b;
  return head;
}

// OK, or the reason the options are rejected.
absl::Status check_options(const std::string& name, size_t capacity_bytes) {
  if (absl::Status s = validate_pool_name(name); !s.ok()) return s;
  if (capacity_bytes == 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("slab pool '%s': capacity_bytes must be > 0", name));
  }
  if (capacity_bytes / kPageSize >= (uint64_t{1} << 31)) {
    return absl::InvalidArgumentError(
        absl::StrFormat("slab pool '%s': capacity_bytes %d is too large", name, capacity_bytes));
  }
  return absl::OkStatus();
}

}  // namespace

uint64_t assign_thread_id() noexcept {
  t_current_thread_id = g_next_thread_id.fetch_add(1, std::memory_order_relaxed);
  return t_current_thread_id;
}

SlabPool::SlabPool(SlabPoolOptions options)
    : arena_(options.huge_pages), name_(std::move(options.name)) {
  status_ = check_options(name_, options.capacity_bytes);
  if (status_.ok()) {
    capacity_pages_ = static_cast<uint32_t>((options.capacity_bytes + kPageSize - 1) / kPageSize);
  }
  size_t slots = 0;
  for (uint32_t c = 0; c < kSizeClassCount; ++c) {
    bins_[c].capacity = std::clamp<uint32_t>(static_cast<uint32_t>(kPageSize / size_class_bytes(c)),
                                             kMinBinSlots, kMaxBinSlots);
    slots += bins_[c].capacity;
  }
  bin_storage_.resize(slots);
  slots = 0;
  for (Bin& bin : bins_) {
    bin.slots = bin_storage_.data() + slots;
    slots += bin.capacity;
  }
}

SlabPool::~SlabPool() {
  if (shared_ == nullptr) return;
  drain();
  if (allocs_ == frees_) {
    // Nothing is out and nothing is in flight (a remote free counts as in
    // flight until drained), so no other thread can touch the chunks now.
    std::destroy_at(shared_);
    return;  // arena_ unmaps
  }
  // Blocks are still out: keep every byte mapped so their holders can free
  // them safely; with owner 0 those frees land in a queue nobody drains.
  for (ChunkHeader* chunk = arena_.first_chunk(); chunk != nullptr; chunk = chunk->next) {
    chunk->owner_thread.store(0, std::memory_order_relaxed);
  }
  ABSL_RAW_LOG(ERROR,
               "coring::pool::SlabPool '%s' destroyed with %llu blocks still allocated; "
               "keeping its %zu bytes mapped for the rest of the process",
               name_.c_str(), static_cast<unsigned long long>(allocs_ - frees_),
               arena_.bytes_reserved());
  arena_.leak();
}

absl::StatusOr<void*> SlabPool::allocate(size_t n) {
  if (void* p = try_allocate(n)) return p;
  return allocation_error(n);
}

absl::Status SlabPool::allocation_error(size_t n) const {
  if (!status_.ok()) return status_;
  if (n > kMaxBlockSize) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "slab pool '%s': a %d-byte request exceeds the largest size class (%d bytes); "
        "allocate it from the heap",
        name_, n, kMaxBlockSize));
  }
  if (last_map_error_.ok()) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "slab pool '%s' exhausted: a %d-byte request (class %d B) needs a new %d KiB page but "
        "all %d pages of its %d-byte capacity are in use (%d blocks live, %d bytes reserved)",
        name_, n, size_class_bytes(size_class_of(n)), kPageSize / 1024, capacity_pages_,
        capacity_bytes(), allocs_ - frees_, arena_.bytes_reserved()));
  }
  return absl::ResourceExhaustedError(
      absl::StrFormat("slab pool '%s': could not map memory for a %d-byte request: %s", name_, n,
                      last_map_error_.message()));
}

void* SlabPool::allocate_slow(uint32_t c) noexcept {
  if (!status_.ok()) return nullptr;
  if (shared_ != nullptr &&
      arena_.first_chunk()->owner_thread.load(std::memory_order_relaxed) != current_thread_id()) {
    ABSL_RAW_LOG(FATAL, "coring::pool::SlabPool '%s': allocate() called off its owner thread",
                 name_.c_str());
  }
  // Blocks other threads gave back may refill this class or free a page:
  // reuse them before growing.
  drain();
  // drain() puts blocks into their bins: this class may have some now.
  if (bins_[c].count > 0) return try_allocate(size_class_bytes(c));
  last_map_error_ = absl::OkStatus();
  if (!refill(c)) return nullptr;  // allocation_error() says why
  return try_allocate(size_class_bytes(c));
}

bool SlabPool::refill(uint32_t c) noexcept {
  Bin& bin = bins_[c];
  const uint32_t target = std::min(bin.capacity / 2, kRefillBatch);
  // Take the blocks first, then order the bin: never-used blocks at the
  // bottom (they go out last), so that `fresh` stays a prefix count.
  void* fresh[kRefillBatch];
  uint32_t fresh_count = 0;
  uint32_t count = 0;
  while (count < target) {
    PageHeader* page = partial_[c];
    if (page == nullptr) {
      page = obtain_page();
      if (page == nullptr) break;
      page->format(c);
      push_front(page);
    }
    uint32_t indices[kRefillBatch];
    const uint32_t n = page->take_some(target - count, indices);
    if (page->free_count == 0) unlink(page);
    for (uint32_t i = 0; i < n; ++i) {
      void* p = page->base + size_t{indices[i]} * page->block_size;
      if (indices[i] >= page->touched) {
        fresh[fresh_count++] = p;
      } else {
        bin.slots[count - fresh_count] = p;  // reused blocks, packed from 0 for now
      }
      ++count;
    }
    // Indices ascend and blocks at or above `touched` were never used.
    page->touched = std::max<uint16_t>(page->touched, static_cast<uint16_t>(indices[n - 1] + 1));
  }
  if (count == 0) return false;
  // Shift the reused ones up and put the fresh ones below them, lowest
  // address on top so pages fill in address order.
  const uint32_t reused = count - fresh_count;
  for (uint32_t i = reused; i > 0; --i) bin.slots[fresh_count + i - 1] = bin.slots[i - 1];
  for (uint32_t i = 0; i < fresh_count; ++i) bin.slots[i] = fresh[fresh_count - 1 - i];
  bin.count = count;
  bin.fresh = fresh_count;
  fresh_taken_ += fresh_count;
  return true;
}

PageHeader* SlabPool::pop_free_page() noexcept {
  // Pages still in memory first; a released one is faulted in again (zeroed)
  // as its blocks are touched.
  PageHeader* page = free_pages_;
  if (page != nullptr) {
    free_pages_ = page->next;
  } else if ((page = released_pages_) != nullptr) {
    released_pages_ = page->next;
    released_bytes_ -= kPageSize;
  }
  return page;
}

void SlabPool::push_free_page(PageHeader* page) noexcept {
  page->next = free_pages_;
  page->freed_at = trim_epoch_;
  free_pages_ = page;
  --pages_in_use_;
}

size_t SlabPool::trim() noexcept {
  if (shared_ == nullptr) return 0;
  drain();
  if (allocs_ - allocs_at_trim_ < kQuietAllocations) {
    // Nearly idle: what the caches hold is not needed soon, and blocks
    // parked there may be all that keeps a page busy.
    flush_all_bins();
    for (PageHeader* page : partial_) {
      if (page != nullptr && page->next == nullptr && page->free_count == page->capacity) {
        unlink(page);
        push_free_page(page);
      }
    }
  }
  allocs_at_trim_ = allocs_;
  ++trim_epoch_;
  // Explicit huge pages cannot be given back 64 KiB at a time.
  if (arena_.huge_pages() == HugePageMode::kExplicit) return 0;
  PageHeader* going = nullptr;
  for (PageHeader** link = &free_pages_; *link != nullptr;) {
    PageHeader* page = *link;
    // Freed since the previous call: it may well be used again soon.
    if (trim_epoch_ - page->freed_at < 2) {
      link = &page->next;
      continue;
    }
    *link = page->next;
    page->next = going;
    going = page;
  }
  // In address order, each run of adjacent pages goes back in one call:
  // every madvise() flushes the TLB of each CPU the process ran on (in a
  // VM, an exit each). One call per page took 2.4% of sbmp_echo_server's
  // CPU under 1000 connections x 64 KiB frames pipelined, as the pages of
  // the connections' first burst (about 930) went back in one tick.
  going = sort_by_address(going);
  size_t released = 0;
  while (going != nullptr) {
    PageHeader* last = going;
    size_t pages = 1;
    while (last->next != nullptr && reinterpret_cast<uintptr_t>(last->next->base) ==
                                        reinterpret_cast<uintptr_t>(last->base) + kPageSize) {
      last = last->next;
      ++pages;
    }
    if (madvise(going->base, pages * kPageSize, MADV_DONTNEED) != 0) {
      // Keep these and the rest; try next time.
      while (going != nullptr) {
        PageHeader* page = going;
        going = page->next;
        page->next = free_pages_;
        free_pages_ = page;
      }
      break;
    }
    PageHeader* rest = last->next;
    last->next = released_pages_;
    released_pages_ = going;
    released += pages * kPageSize;
    going = rest;
  }
  released_bytes_ += released;
  return released;
}

PageHeader* SlabPool::obtain_page() noexcept {
  PageHeader* page = pop_free_page();
  if (page == nullptr && pages_in_use_ < capacity_pages_) {
    absl::StatusOr<PageHeader*> fresh = fresh_page();
    if (!fresh.ok()) {
      last_map_error_ = fresh.status();
      return nullptr;
    }
    page = *fresh;
  } else if (page == nullptr) {
    // At capacity: blocks parked in bins may be all that keeps a page busy.
    flush_all_bins();
    page = pop_free_page();
    if (page == nullptr) page = steal_empty_page();
    if (page == nullptr) return nullptr;
  }
  ++pages_in_use_;
  return page;
}

void SlabPool::flush_half(Bin& bin) noexcept {
  // The bottom half is the coldest: give it back to the pages.
  const uint32_t n = bin.count / 2;
  for (uint32_t i = 0; i < n; ++i) return_to_page(bin.slots[i]);
  for (uint32_t i = n; i < bin.count; ++i) bin.slots[i - n] = bin.slots[i];
  bin.count -= n;
  // Never-used blocks going back stay never-used for the stats' purposes
  // only approximately: their page now counts them as touched.
  const uint32_t fresh_flushed = std::min(bin.fresh, n);
  bin.fresh -= fresh_flushed;
  fresh_taken_ -= fresh_flushed;
}

void SlabPool::flush_all_bins() noexcept {
  for (Bin& bin : bins_) {
    for (uint32_t i = 0; i < bin.count; ++i) return_to_page(bin.slots[i]);
    fresh_taken_ -= std::min(bin.fresh, bin.count);
    bin.count = 0;
    bin.fresh = 0;
  }
}

void SlabPool::return_to_page(void* p) noexcept {
  ChunkHeader* chunk = chunk_of(p);
  PageHeader* page = page_of(chunk, p);
  const uint32_t index = page->index_of(p);
  // A pointer into the middle of a block is caught in debug builds; a double
  // free always (the block is free already).
#ifndef NDEBUG
  if (!page->is_block_start(p, index)) on_bad_free(p);
#endif
  if (page->is_free(index)) [[unlikely]]
    on_bad_free(p);
  const bool was_full = page->free_count == 0;
  page->give_back(index);
  if (was_full) {
    on_page_not_full(page);
  } else if (page->free_count == page->capacity) {
    on_page_empty(page);
  }
}

void SlabPool::check_not_cached(const void* p) const noexcept {
  const Bin& bin = bins_[page_of(chunk_of(p), p)->size_class];
  for (uint32_t i = 0; i < bin.count; ++i) {
    if (bin.slots[i] == p) on_bad_free(p);
  }
}

absl::StatusOr<PageHeader*> SlabPool::fresh_page() {
  // The first page maps the first chunk, which holds the shared block; the
  // calling thread becomes the owner.
  absl::StatusOr<PageHeader*> page = arena_.fresh_page(shared_);
  if (!page.ok()) return page.status();
  if (shared_ == nullptr) {
    shared_ = std::construct_at(static_cast<PoolShared*>(arena_.shared_slot()));
    owner_thread_ = current_thread_id();
  }
  ChunkHeader* chunk = chunk_of((*page)->base);
  if (chunk->pool == nullptr) {  // a new chunk
    chunk->shared = shared_;
    chunk->pool = this;
    chunk->owner_thread.store(owner_thread_, std::memory_order_release);
  }
  return page;
}

PageHeader* SlabPool::steal_empty_page() noexcept {
  // Each class keeps one empty page cached (on_page_empty); at capacity,
  // those are the only pages left to give.
  for (PageHeader* head : partial_) {
    for (PageHeader* page = head; page != nullptr; page = page->next) {
      if (page->free_count == page->capacity) {
        unlink(page);
        --pages_in_use_;
        return page;
      }
    }
  }
  return nullptr;
}

void SlabPool::push_front(PageHeader* page) noexcept {
  PageHeader*& head = partial_[page->size_class];
  page->prev = nullptr;
  page->next = head;
  if (head != nullptr) head->prev = page;
  head = page;
  page->listed = true;
}

void SlabPool::unlink(PageHeader* page) noexcept {
  if (page->prev != nullptr) {
    page->prev->next = page->next;
  } else {
    partial_[page->size_class] = page->next;
  }
  if (page->next != nullptr) page->next->prev = page->prev;
  page->next = page->prev = nullptr;
  page->listed = false;
}

void SlabPool::on_page_not_full(PageHeader* page) noexcept {
  // A full page regains a block: make it the class's allocation target
  // (recently freed memory is the warmest in cache). A one-block page is
  // full and empty at once: hand it straight back.
  push_front(page);
  if (page->free_count == page->capacity) on_page_empty(page);
}

void SlabPool::on_page_empty(PageHeader* page) noexcept {
  // Keep the class's last page, so an alloc/free ping-pong does not
  // reformat a page every time; any other empty page goes back to the
  // pool for any class to use.
  if (partial_[page->size_class] == page && page->next == nullptr) return;
  unlink(page);
  push_free_page(page);
}

void SlabPool::drain() noexcept {
  if (shared_ == nullptr) return;
  RemoteFreeQueue::Node* node = shared_->remote.take_all();
  while (node != nullptr) {
    RemoteFreeQueue::Node* next = node->next;
    // Into the class's bin like a local free (the next allocations take
    // them back without touching a bitmap); a full bin flushes half.
    free_local(chunk_of(node), node);
    ++cross_thread_frees_;
    node = next;
  }
}

bool SlabPool::owns(const void* p) const noexcept {
  return shared_ != nullptr && is_slab_block(p) && chunk_of(p)->shared == shared_;
}

void SlabPool::on_bad_free(const void* p) const noexcept {
  ABSL_RAW_LOG(FATAL, "coring::pool::SlabPool '%s': double free or invalid pointer %p",
               name_.c_str(), p);
  __builtin_unreachable();
}

PoolStats SlabPool::stats() const {
  PoolStats s;
  s.name = name_;
  s.kind = "slab";
  s.allocs_total = allocs_;
  s.frees_total = frees_;
  // Fresh blocks still parked in bins were never handed out.
  uint64_t fresh_out = fresh_taken_;
  for (const Bin& bin : bins_) fresh_out -= std::min(bin.fresh, bin.count);
  s.reuses_total = allocs_ - fresh_out;
  s.in_use = allocs_ - frees_;
  s.high_water = high_water_;
  s.bytes_reserved = arena_.bytes_reserved();
  s.bytes_released = released_bytes_;
  s.capacity_bytes = capacity_bytes();
  s.cross_thread_frees = cross_thread_frees_;
  s.huge_pages = arena_.huge_pages();
  return s;
}

bool is_slab_block(const void* p) noexcept { return p != nullptr && chunk_registry::contains(p); }

size_t slab_block_size(const void* p) noexcept {
  ChunkHeader* chunk = chunk_of(p);
  return page_of(chunk, p)->block_size;
}

void deallocate_remote(PoolShared* shared, void* p) noexcept {
  // One CAS and nothing after it: once the push lands, the owner may reclaim
  // the block and, if it was the last one, unmap the memory `shared` is in.
  // (So the owner counts cross-thread frees when it drains them.)
  shared->remote.push(p);
}

}  // namespace coring::pool
