#include "coring/core/operation.h"

#include <cassert>

namespace coring {

uint32_t OpTable::acquire(OpTarget* target) {
  if (free_head_ == kNone) {
    const uint32_t base = static_cast<uint32_t>(chunks_.size()) * kChunk;
    chunks_.push_back(std::make_unique<OpSlot[]>(kChunk));
    OpSlot* chunk = chunks_.back().get();
    for (uint32_t i = 0; i < kChunk; ++i) {
      chunk[i].next_free = (i + 1 < kChunk) ? base + i + 1 : kNone;
    }
    free_head_ = base;
  }
  const uint32_t index = free_head_;
  OpSlot& slot = (*this)[index];
  free_head_ = slot.next_free;
  assert(!slot.in_use);
  slot.in_use = true;
  slot.target = target;
  slot.reclaim = nullptr;
  slot.context = 0;
  slot.pending = 0;
  slot.linked = false;
  slot.timed_out = false;
  slot.main_done = false;
  ++in_use_;
  return index;
}

void OpTable::release(uint32_t index) noexcept {
  OpSlot& slot = (*this)[index];
  assert(slot.in_use);
  slot.in_use = false;
  slot.target = nullptr;
  // A new generation: a stale user_data naming this slot no longer matches.
  slot.generation = (slot.generation + 1) & kGenerationMask;
  slot.next_free = free_head_;
  free_head_ = index;
  --in_use_;
}

OpSlot* OpTable::lookup(uint64_t user_data) noexcept {
  const uint32_t index = index_of(user_data);
  if (index / kChunk >= chunks_.size()) return nullptr;
  OpSlot& slot = (*this)[index];
  const uint32_t generation = static_cast<uint32_t>(user_data >> 32) & kGenerationMask;
  if (!slot.in_use || slot.generation != generation) return nullptr;
  return &slot;
}

}  // namespace coring
