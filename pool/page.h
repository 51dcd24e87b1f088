// The slab pool's memory layout: 2 MiB chunks of 64 KiB pages.
//
// A chunk is 2 MiB aligned, so any block address maps to its chunk by
// masking and to its page by one shift. The chunk's first 64 KiB page holds
// the headers of the chunk's other 31 pages (out of line, so a 64 KiB block
// fills a whole page) plus, in the pool's first chunk, the PoolShared block
// that other threads may touch. A page header records the page's size class,
// an occupancy bitmap (1 = free) with a one-word summary of which bitmap words
// have free bits, and the page's links in its class list. Alloc and free are
// O(1): two find-first-set instructions, or one bit set.
//
// Everything except PoolShared is touched by the owning thread only.
#pragma once

#include <atomic>
#include <bit>
#include <cstddef>
#include <cstdint>

#include "coring/pool/remote_free_queue.h"
#include "coring/pool/size_classes.h"

namespace coring::pool {

class SlabPool;

inline constexpr size_t kPageSize = 64 * 1024;
inline constexpr size_t kChunkSize = 2 * 1024 * 1024;
inline constexpr uint32_t kPagesPerChunk = kChunkSize / kPageSize;  // page 0 = headers
inline constexpr uint32_t kMaxBlocksPerPage = kPageSize / kMinBlockSize;
inline constexpr uint32_t kBitmapWords = kMaxBlocksPerPage / 64;
static_assert(kBitmapWords <= 64, "the summary word has one bit per bitmap word");

// The part of a pool that other threads write: the queue their frees go
// through. Lives in the pool's first chunk, on its own cache line.
struct PoolShared {
  alignas(64) RemoteFreeQueue remote;
};

struct PageHeader {
  uint64_t summary;                  // bit w: free_bits[w] != 0
  uint64_t free_bits[kBitmapWords];  // bit i of word w: block 64*w+i is free
  PageHeader* next;                  // class list (pages with free blocks) or free-page list
  PageHeader* prev;
  uint8_t* base;  // the page's first byte (= its first block)
  uint32_t block_size;
  uint32_t div_magic;  // ceil(2^32 / block_size): offset -> index without a divide
  uint16_t capacity;   // blocks in this page
  uint16_t free_count;
  uint16_t touched;  // blocks [0, touched) were handed out at least once
  uint8_t size_class;
  bool listed;        // in its class list
  bool used_before;   // formatted before: its memory has been handed out
  uint32_t freed_at;  // the pool's trim epoch when it joined the free-page list

  // Formats the page for class `c`: every block free.
  void format(uint32_t c) {
    size_class = static_cast<uint8_t>(c);
    block_size = size_class_bytes(c);
    div_magic = static_cast<uint32_t>(((uint64_t{1} << 32) + block_size - 1) / block_size);
    capacity = static_cast<uint16_t>(kPageSize / block_size);
    free_count = capacity;
    // A recycled page's blocks all count as reuses in the stats.
    touched = used_before ? capacity : 0;
    used_before = true;
    summary = 0;
    for (uint32_t w = 0; w < kBitmapWords; ++w) {
      const uint32_t first = w * 64;
      uint64_t bits = 0;
      if (first + 64 <= capacity) {
        bits = ~uint64_t{0};
      } else if (first < capacity) {
        bits = (uint64_t{1} << (capacity - first)) - 1;
      }
      free_bits[w] = bits;
      if (bits != 0) summary |= uint64_t{1} << w;
    }
  }

  // Takes up to `max` free blocks (max >= 1, free_count > 0) from the lowest
  // bitmap word that has any: one word update for the whole batch. Writes
  // their indices, ascending, to `out`; returns how many.
  uint32_t take_some(uint32_t max, uint32_t* out) {
    const uint32_t w = static_cast<uint32_t>(std::countr_zero(summary));
    uint64_t bits = free_bits[w];
    uint32_t n = 0;
    while (bits != 0 && n < max) {
      out[n++] = w * 64 + static_cast<uint32_t>(std::countr_zero(bits));
      bits &= bits - 1;
    }
    free_bits[w] = bits;
    if (bits == 0) summary &= ~(uint64_t{1} << w);
    free_count = static_cast<uint16_t>(free_count - n);
    return n;
  }

  uint32_t index_of(const void* block) const {
    const uint64_t offset = static_cast<uint64_t>(static_cast<const uint8_t*>(block) - base);
    return static_cast<uint32_t>((offset * div_magic) >> 32);
  }
  bool is_block_start(const void* block, uint32_t index) const {
    return static_cast<const uint8_t*>(block) == base + size_t{index} * block_size;
  }
  bool is_free(uint32_t index) const { return (free_bits[index / 64] >> (index % 64)) & 1; }

  // Marks block `index` free. Requires !is_free(index).
  void give_back(uint32_t index) {
    const uint32_t w = index / 64;
    free_bits[w] |= uint64_t{1} << (index % 64);
    summary |= uint64_t{1} << w;
    ++free_count;
  }
};

struct ChunkHeader {
  static constexpr uint64_t kMagic = 0x636f72696e67534cULL;  // "coringSL"
  // Thread id (current_thread_id()) of the pool's owner, copied into every
  // chunk so a free needs one load to know whether it is local; 0 = the pool
  // was destroyed with blocks outstanding (every free is then remote and
  // nobody drains: those blocks are leaked, never reused).
  std::atomic<uint64_t> owner_thread;
  SlabPool* pool;      // valid while owner_thread != 0
  PoolShared* shared;  // the owning pool's shared block (lives in its first chunk)
  uint64_t magic;
  ChunkHeader* next;                 // the pool's chunk list
  PageHeader pages[kPagesPerChunk];  // pages[0] describes this header page: unused
};
static_assert(sizeof(ChunkHeader) + sizeof(PoolShared) + 128 <= kPageSize);

inline ChunkHeader* chunk_of(const void* p) {
  return reinterpret_cast<ChunkHeader*>(reinterpret_cast<uintptr_t>(p) & ~(kChunkSize - 1));
}
inline PageHeader* page_of(ChunkHeader* chunk, const void* p) {
  return &chunk->pages[(reinterpret_cast<uintptr_t>(p) & (kChunkSize - 1)) / kPageSize];
}

}  // namespace coring::pool
