// BufferRing: an io_uring provided-buffer ring (io_uring_register_buf_ring)
// whose buffers are carved from the thread's pool::BufferArena, and
// RecvBuffer, the RAII handle on one buffer the kernel filled.
//
//   absl::StatusOr<std::unique_ptr<BufferRing>> ring = BufferRing::create(loop, arena, 256, 4096);
//   RecvStream stream = recv_multishot(fd, **ring);            // recv_stream.h
//   absl::StatusOr<RecvBuffer> buf = co_await stream.next();
//   use(buf->span());                                          // buffer returns to the ring
//                                                              // when `buf` is destroyed
//
// The kernel picks a buffer per received chunk, so an idle connection holds
// none. When the application holds every buffer, multishot recvs end with
// ENOBUFS: that is normal flow, counted in LoopStats::enobufs, and the
// streams re-arm as soon as buffers come back (BufferWaiter). Every buffer
// must be back when the ring is destroyed (outstanding() == 0; asserted in
// debug builds, reported on stderr otherwise). Owner thread only, and the
// ring must outlive its RecvBuffers and streams.
#pragma once

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "coring/core/frame_allocator.h"
#include "coring/pool/buffer_lease.h"

namespace coring {

namespace pool {
class BufferArena;
}
class EventLoop;
class BufferRing;

// Told when buffers came back to a ring that had run dry.
class BufferWaiter {
 public:
  virtual void on_buffers_available() noexcept = 0;

 protected:
  ~BufferWaiter() = default;

 private:
  friend class BufferRing;
  BufferWaiter* next_waiter_ = nullptr;
  bool waiting_ = false;
};

class RecvBuffer {
 public:
  RecvBuffer() = default;
  RecvBuffer(RecvBuffer&& other) noexcept
      : ring_(std::exchange(other.ring_, nullptr)),
        data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        id_(other.id_),
        owned_(std::exchange(other.owned_, false)) {}
  RecvBuffer& operator=(RecvBuffer&& other) noexcept {
    if (this != &other) {
      reset();
      ring_ = std::exchange(other.ring_, nullptr);
      data_ = std::exchange(other.data_, nullptr);
      size_ = std::exchange(other.size_, 0);
      id_ = other.id_;
      owned_ = std::exchange(other.owned_, false);
    }
    return *this;
  }
  // Bytes moved out of the ring into memory from frame_allocate(size) (a
  // stream at its share gives its buffers back; recv_stream.h); freed with
  // the handle.
  static RecvBuffer adopt_copy(uint8_t* data, size_t size) noexcept {
    RecvBuffer b(nullptr, data, size, 0);
    b.owned_ = true;
    return b;
  }
  RecvBuffer(const RecvBuffer&) = delete;
  RecvBuffer& operator=(const RecvBuffer&) = delete;
  ~RecvBuffer() { reset(); }

  // Gives the buffer back to its ring now.
  void reset() noexcept;

  // An empty RecvBuffer (size 0, no ring) means end of stream.
  bool empty() const noexcept { return size_ == 0; }
  const uint8_t* data() const noexcept { return data_; }
  uint8_t* data() noexcept { return data_; }
  size_t size() const noexcept { return size_; }
  absl::Span<const uint8_t> span() const noexcept { return {data_, size_}; }
  uint16_t buffer_id() const noexcept { return id_; }

 private:
  friend class BufferRing;
  RecvBuffer(BufferRing* ring, uint8_t* data, size_t size, uint16_t id) noexcept
      : ring_(ring), data_(data), size_(size), id_(id) {}

  BufferRing* ring_ = nullptr;
  uint8_t* data_ = nullptr;
  size_t size_ = 0;
  uint16_t id_ = 0;
  bool owned_ = false;  // data_ is a copy from frame_allocate(), not a ring buffer
};

class BufferRing {
 public:
  // `count` (a power of two, <= 32768) buffers of `buffer_size` bytes,
  // carved from `arena`, registered with `loop`'s ring under a free group id.
  static absl::StatusOr<std::unique_ptr<BufferRing>> create(EventLoop& loop,
                                                            pool::BufferArena& arena,
                                                            uint32_t count, uint32_t buffer_size);
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  uint16_t group() const noexcept { return group_; }
  uint32_t count() const noexcept { return count_; }
  uint32_t buffer_size() const noexcept { return buffer_size_; }
  // Buffers the application holds (delivered, not yet returned).
  uint32_t outstanding() const noexcept { return outstanding_; }
  // Buffers the kernel may still pick.
  uint32_t available() const noexcept { return count_ - outstanding_; }

  // A CQE carrying a buffer (IORING_CQE_F_BUFFER) arrived: the kernel took
  // one out of the ring.
  void mark_taken() noexcept { ++outstanding_; }
  // The buffer a CQE names, as an owning handle (after mark_taken()).
  RecvBuffer take(uint16_t id, size_t length) noexcept;
  // Puts buffer `id` back in the ring (RecvBuffer does this) and wakes waiters.
  void give_back(uint16_t id) noexcept;
  // Registers `waiter` to be told once buffers are given back.
  void wait_for_buffers(BufferWaiter* waiter) noexcept;
  void cancel_wait(BufferWaiter* waiter) noexcept;
  // Tells `waiter` now if it is still registered; `waiter` may name a
  // destroyed object (then it is not in the list and is not touched).
  void wake_waiter(const BufferWaiter* waiter) noexcept;

 private:
  BufferRing(EventLoop& loop, pool::BufferBlock block, uint32_t count, uint32_t buffer_size);
  void add(uint16_t id) noexcept;

  EventLoop& loop_;
  pool::BufferBlock block_;
  io_uring_buf_ring* ring_ = nullptr;
  size_t ring_bytes_ = 0;
  uint32_t count_;
  uint32_t buffer_size_;
  uint32_t outstanding_ = 0;
  uint16_t group_ = 0;
  bool registered_ = false;
  BufferWaiter* waiters_ = nullptr;
};

inline void RecvBuffer::reset() noexcept {
  if (ring_ != nullptr) std::exchange(ring_, nullptr)->give_back(id_);
  if (std::exchange(owned_, false)) frame_deallocate(data_, size_);
  data_ = nullptr;
  size_ = 0;
}

}  // namespace coring
