// PageArena: the 2 MiB chunks one slab pool carves its 64 KiB pages from.
//
// Each chunk is a MappedRegion aligned to 2 MiB (huge pages when available),
// registered in the process-wide chunk registry (chunk_registry.h) so that
// is_slab_block() can recognise its addresses, and formatted with a
// ChunkHeader in its first page. The arena hands out fresh pages in address
// order; the pool recycles freed pages itself. Owner thread only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "coring/pool/mapped_region.h"
#include "coring/pool/page.h"

namespace coring::pool {

class PageArena {
 public:
  explicit PageArena(HugePagePolicy policy) : policy_(policy) {}
  PageArena(const PageArena&) = delete;
  PageArena& operator=(const PageArena&) = delete;
  ~PageArena();

  // A page header never handed out before, from the current chunk or a new
  // one; a new chunk's header points at `shared` (nullptr for the first
  // chunk, whose caller then constructs PoolShared in shared_slot()).
  absl::StatusOr<PageHeader*> fresh_page(PoolShared* shared);

  // Where the first chunk keeps its PoolShared (after the ChunkHeader).
  void* shared_slot() const;
  ChunkHeader* first_chunk() const {
    return chunks_.empty() ? nullptr : reinterpret_cast<ChunkHeader*>(chunks_[0].data());
  }

  size_t bytes_reserved() const { return chunks_.size() * kChunkSize; }
  // The mode of the first chunk (they normally agree).
  HugePageMode huge_pages() const {
    return chunks_.empty() ? HugePageMode::kNone : chunks_[0].huge_pages();
  }

  // Keeps every chunk mapped and registered forever (pool destroyed with
  // blocks still out).
  void leak();

 private:
  HugePagePolicy policy_;
  std::vector<MappedRegion> chunks_;
  uint32_t next_page_ = kPagesPerChunk;  // next fresh page index in the last chunk
};

}  // namespace coring::pool
