#include "coring/core/operation.h"

namespace coring {

void OpTable::grow() {
  const uint32_t base = static_cast<uint32_t>(chunks_.size()) * kChunk;
  chunks_.push_back(std::make_unique<OpSlot[]>(kChunk));
  OpSlot* chunk = chunks_.back().get();
  for (uint32_t i = 0; i < kChunk; ++i) {
    chunk[i].next_free = (i + 1 < kChunk) ? base + i + 1 : kNone;
  }
  free_head_ = base;
}

}  // namespace coring
