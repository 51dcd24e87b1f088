// BufferLease and BufferBlock: RAII handles on BufferArena memory.
//
// A BufferLease is one fixed-size I/O buffer; a BufferBlock is `count`
// contiguous buffers of `buffer_size` bytes, carved for an io_uring
// provided-buffer ring. Both are move-only and give their memory back to the
// arena when destroyed. Both report buf_index(): the index of the registered
// region (io_uring_register_buffers) the memory lies in, which is what a
// fixed-buffer operation (IORING_OP_READ_FIXED / WRITE_FIXED) needs along with
// the address.
//
// Leases must be destroyed on the arena's thread. If the arena is destroyed
// first, its memory stays mapped until the last lease is gone (no dangling
// pointer, no crash), then is unmapped.
#pragma once

#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/types/span.h"

namespace coring::pool {

namespace detail {
struct ArenaState;  // buffer_arena.cc
}  // namespace detail

class BufferLease {
 public:
  BufferLease() = default;
  BufferLease(BufferLease&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)),
        data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        slot_(other.slot_),
        buffer_class_(other.buffer_class_),
        region_offset_(other.region_offset_),
        buf_index_(other.buf_index_) {}
  BufferLease& operator=(BufferLease&& other) noexcept {
    if (this != &other) {
      reset();
      state_ = std::exchange(other.state_, nullptr);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
      slot_ = other.slot_;
      buffer_class_ = other.buffer_class_;
      buf_index_ = other.buf_index_;
      region_offset_ = other.region_offset_;
    }
    return *this;
  }
  BufferLease(const BufferLease&) = delete;
  BufferLease& operator=(const BufferLease&) = delete;
  ~BufferLease() { reset(); }

  // Gives the buffer back now (no-op on an empty lease).
  void reset() noexcept;

  bool valid() const { return data_ != nullptr; }
  explicit operator bool() const { return valid(); }
  uint8_t* data() const { return data_; }
  // The whole buffer: its class size, which is >= the size asked for.
  size_t size() const { return size_; }
  absl::Span<uint8_t> span() const { return {data_, size_}; }
  // Registered-buffer index of the region holding this buffer.
  uint16_t buf_index() const { return buf_index_; }
  // Offset of data() from the start of that region.
  size_t region_offset() const { return region_offset_; }

 private:
  friend class BufferArena;
  BufferLease(detail::ArenaState* state, uint8_t* data, size_t size, uint32_t buffer_class,
              uint32_t slot, uint16_t buf_index, size_t region_offset)
      : state_(state),
        data_(data),
        size_(size),
        slot_(slot),
        buffer_class_(buffer_class),
        region_offset_(region_offset),
        buf_index_(buf_index) {}

  detail::ArenaState* state_ = nullptr;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  uint32_t slot_ = 0;
  uint32_t buffer_class_ = 0;
  size_t region_offset_ = 0;
  uint16_t buf_index_ = 0;
};

class BufferBlock {
 public:
  BufferBlock() = default;
  BufferBlock(BufferBlock&& other) noexcept
      : state_(std::exchange(other.state_, nullptr)),
        data_(std::exchange(other.data_, nullptr)),
        count_(std::exchange(other.count_, 0)),
        buffer_size_(std::exchange(other.buffer_size_, 0)),
        region_offset_(other.region_offset_),
        reserved_(other.reserved_),
        buf_index_(other.buf_index_) {}
  BufferBlock& operator=(BufferBlock&& other) noexcept {
    if (this != &other) {
      reset();
      state_ = std::exchange(other.state_, nullptr);
      data_ = std::exchange(other.data_, nullptr);
      count_ = std::exchange(other.count_, 0);
      buffer_size_ = std::exchange(other.buffer_size_, 0);
      region_offset_ = other.region_offset_;
      reserved_ = other.reserved_;
      buf_index_ = other.buf_index_;
    }
    return *this;
  }
  BufferBlock(const BufferBlock&) = delete;
  BufferBlock& operator=(const BufferBlock&) = delete;
  ~BufferBlock() { reset(); }

  // Gives the buffers back now (no-op on an empty block).
  void reset() noexcept;

  bool valid() const { return data_ != nullptr; }
  explicit operator bool() const { return valid(); }
  uint32_t count() const { return count_; }
  uint32_t buffer_size() const { return buffer_size_; }
  // Buffer i (i < count()): buffer_size() bytes at data() + i * buffer_size().
  uint8_t* buffer(uint32_t i) const { return data_ + size_t{i} * buffer_size_; }
  uint8_t* data() const { return data_; }
  size_t size_bytes() const { return size_t{count_} * buffer_size_; }
  absl::Span<uint8_t> span() const { return {data_, size_bytes()}; }
  uint16_t buf_index() const { return buf_index_; }
  size_t region_offset() const { return region_offset_; }

 private:
  friend class BufferArena;
  BufferBlock(detail::ArenaState* state, uint8_t* data, uint32_t count, uint32_t buffer_size,
              uint16_t buf_index, size_t region_offset, size_t reserved)
      : state_(state),
        data_(data),
        count_(count),
        buffer_size_(buffer_size),
        region_offset_(region_offset),
        reserved_(reserved),
        buf_index_(buf_index) {}

  detail::ArenaState* state_ = nullptr;
  uint8_t* data_ = nullptr;
  uint32_t count_ = 0;
  uint32_t buffer_size_ = 0;
  size_t region_offset_ = 0;
  size_t reserved_ = 0;
  uint16_t buf_index_ = 0;
};

}  // namespace coring::pool
