#include "coring/pool/page_arena.h"

#include <memory>

#include "absl/status/status.h"
#include "coring/pool/chunk_registry.h"

namespace coring::pool {

PageArena::~PageArena() {
  for (MappedRegion& chunk : chunks_) {
    if (!chunk.empty()) chunk_registry::remove(chunk.data());
  }
}

void PageArena::leak() {
  for (MappedRegion& chunk : chunks_) chunk.leak();
  chunks_.clear();
}

void* PageArena::shared_slot() const {
  ChunkHeader* first = first_chunk();
  if (first == nullptr) return nullptr;
  // After the header, on a fresh cache line (PoolShared is 64-aligned).
  const uintptr_t end = reinterpret_cast<uintptr_t>(first + 1);
  return reinterpret_cast<void*>((end + 127) & ~uintptr_t{127});
}

absl::StatusOr<PageHeader*> PageArena::fresh_page(PoolShared* shared) {
  if (next_page_ == kPagesPerChunk) {
    absl::StatusOr<MappedRegion> region = MappedRegion::map(kChunkSize, kChunkSize, policy_);
    if (!region.ok()) return region.status();
    if (!chunk_registry::add(region->data())) {
      return absl::ResourceExhaustedError(
          "slab chunk mapped outside the 47-bit address space the chunk registry covers");
    }
    auto* chunk = std::construct_at(reinterpret_cast<ChunkHeader*>(region->data()));
    chunk->magic = ChunkHeader::kMagic;
    chunk->shared = shared;
    chunk->next = nullptr;
    for (uint32_t i = 0; i < kPagesPerChunk; ++i) {
      chunk->pages[i] = PageHeader{};
      chunk->pages[i].base = region->data() + size_t{i} * kPageSize;
    }
    if (!chunks_.empty()) reinterpret_cast<ChunkHeader*>(chunks_.back().data())->next = chunk;
    chunks_.push_back(*std::move(region));
    next_page_ = 1;  // page 0 holds the headers
  }
  ChunkHeader* chunk = reinterpret_cast<ChunkHeader*>(chunks_.back().data());
  return &chunk->pages[next_page_++];
}

}  // namespace coring::pool
