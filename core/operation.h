// Operation slots: where an in-flight io_uring operation's state lives.
//
// Every submitted SQE carries a user_data that names a slot by index and
// generation, never a pointer into memory that can die first. The slot holds
// what the kernel may still read or write (the timespec of a timeout, a
// sockaddr, a msghdr) and stays reserved until the operation's final CQE: the
// one without IORING_CQE_F_MORE, and for an operation with a linked timeout
// also the timeout's own CQE. If the awaiting coroutine is destroyed first, the
// slot is orphaned (target == nullptr) and its remaining CQEs go to the
// slot's reclaimer, which gives back whatever a CQE carries (an accepted
// fixed file, a provided buffer). Slots are allocated in chunks and reused:
// steady state allocates nothing.
//
// user_data layout: bits 0-31 index, 32-61 generation, bit 62 "linked-timeout
// companion", bit 63 "internal" (wake-ups and CQEs nobody needs).
#pragma once

#include <liburing.h>
#include <linux/time_types.h>

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace coring {

class EventLoop;
struct OpSlot;

inline constexpr uint64_t kInternalBit = uint64_t{1} << 63;
inline constexpr uint64_t kCompanionBit = uint64_t{1} << 62;
// Internal user_data values (bit 63 set).
inline constexpr uint64_t kIgnoreUserData = kInternalBit | 0;   // cancel requests, ...
inline constexpr uint64_t kWakeUserData = kInternalBit | 1;     // MSG_RING wake-up
inline constexpr uint64_t kEventfdUserData = kInternalBit | 2;  // eventfd wake-up read

// One completion as delivered to an operation.
struct OpResult {
  int32_t res = 0;
  uint32_t flags = 0;
  bool timed_out = false;  // the operation's linked timeout fired
  bool more() const noexcept { return (flags & IORING_CQE_F_MORE) != 0; }
  bool has_buffer() const noexcept { return (flags & IORING_CQE_F_BUFFER) != 0; }
  uint16_t buffer_id() const noexcept {
    return static_cast<uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
  }
};

// Receives the completions of the operation it started. Implemented by the
// awaitables (which live in a coroutine frame) and by callback operations.
class OpTarget {
 public:
  // Called once per CQE of a multishot operation, once for a single-shot one
  // (after the linked timeout's CQE too, if there is one). The slot has been
  // released already when the result is final (!result.more()).
  virtual void on_complete(const OpResult& result) noexcept = 0;

 protected:
  ~OpTarget() = default;
};

// Gives back what a CQE of an orphaned operation carries.
using Reclaimer = void (*)(EventLoop& loop, const OpSlot& slot, const OpResult& result);

struct OpSlot {
  static constexpr size_t kScratchSize = 192;  // sockaddr_storage + msghdr + iovec

  OpTarget* target = nullptr;
  Reclaimer reclaim = nullptr;
  uint64_t context = 0;  // for the reclaimer (e.g. a buffer group)
  uint32_t generation = 0;
  uint32_t next_free = 0;
  uint8_t pending = 0;  // CQEs the kernel still owes this slot
  bool in_use = false;
  bool linked = false;  // has a linked-timeout companion
  bool timed_out = false;
  bool main_done = false;  // linked: the main CQE came before the companion's
  bool cqe_due = false;    // a silent send's: a CQE for it waits in the CQ (its failure)
  int32_t main_res = 0;
  uint32_t main_flags = 0;
  __kernel_timespec ts{};
  alignas(16) std::byte scratch[kScratchSize];

  template <class T>
  T* scratch_as() noexcept {
    static_assert(sizeof(T) <= kScratchSize);
    return reinterpret_cast<T*>(scratch);
  }
};

class OpTable {
 public:
  OpTable() = default;
  OpTable(const OpTable&) = delete;
  OpTable& operator=(const OpTable&) = delete;

  // A free slot for an operation delivering to `target`; grows the table by
  // one chunk when none is free (the only allocation, and only until the
  // high-water mark).
  // Inline: acquire/release/lookup run once per operation.
  uint32_t acquire(OpTarget* target) {
    if (free_head_ == kNone) grow();
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
    slot.cqe_due = false;
    ++in_use_;
    return index;
  }
  void release(uint32_t index) noexcept { release(index, (*this)[index]); }
  // The same, for a caller that holds the slot already.
  void release(uint32_t index, OpSlot& slot) noexcept {
    assert(&slot == &(*this)[index]);
    assert(slot.in_use);
    slot.in_use = false;
    slot.target = nullptr;
    // A new generation: a stale user_data naming this slot no longer matches.
    slot.generation = (slot.generation + 1) & kGenerationMask;
    slot.next_free = free_head_;
    free_head_ = index;
    --in_use_;
  }

  OpSlot& operator[](uint32_t index) noexcept { return chunks_[index / kChunk][index % kChunk]; }
  uint64_t user_data(uint32_t index) noexcept {
    return (static_cast<uint64_t>((*this)[index].generation) << 32) | index;
  }
  // The slot `user_data` names, or nullptr if it has been reused since.
  OpSlot* lookup(uint64_t user_data) noexcept {
    const uint32_t index = index_of(user_data);
    if (index / kChunk >= chunks_.size()) return nullptr;
    OpSlot& slot = (*this)[index];
    const uint32_t generation = static_cast<uint32_t>(user_data >> 32) & kGenerationMask;
    if (!slot.in_use || slot.generation != generation) return nullptr;
    return &slot;
  }
  static uint32_t index_of(uint64_t user_data) noexcept {
    return static_cast<uint32_t>(user_data & 0xffffffffu);
  }

  size_t in_use() const noexcept { return in_use_; }
  size_t capacity() const noexcept { return chunks_.size() * kChunk; }

 private:
  static constexpr uint32_t kChunk = 256;
  static constexpr uint32_t kGenerationMask = (1u << 30) - 1;
  static constexpr uint32_t kNone = 0xffffffffu;

  // Adds one chunk of free slots (the table's only allocation).
  void grow();

  std::vector<std::unique_ptr<OpSlot[]>> chunks_;
  uint32_t free_head_ = kNone;
  size_t in_use_ = 0;
};

// A file descriptor as the kernel sees it: a normal fd, or an index into the
// ring's registered (fixed) file table.
struct FileRef {
  int fd = -1;
  bool fixed = false;

  FileRef() = default;
  FileRef(int plain_fd) noexcept : fd(plain_fd) {}  // NOLINT: implicit on purpose
  static FileRef fixed_index(uint32_t index) noexcept {
    FileRef f;
    f.fd = static_cast<int>(index);
    f.fixed = true;
    return f;
  }
  void apply(io_uring_sqe* sqe) const noexcept {
    if (fixed) sqe->flags |= IOSQE_FIXED_FILE;
  }
};

}  // namespace coring
