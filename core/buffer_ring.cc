#include "coring/core/buffer_ring.h"

#include <sys/mman.h>

#include <cassert>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_format.h"
#include "coring/core/errno_status.h"
#include "coring/core/event_loop.h"
#include "coring/pool/buffer_arena.h"

namespace coring {

absl::StatusOr<std::unique_ptr<BufferRing>> BufferRing::create(EventLoop& loop,
                                                               pool::BufferArena& arena,
                                                               uint32_t count,
                                                               uint32_t buffer_size) {
  if (count == 0 || count > 32768 || (count & (count - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("BufferRing: count %u must be a power of two in [1, 32768]", count));
  }
  if (buffer_size == 0) return absl::InvalidArgumentError("BufferRing: buffer_size must be > 0");
  absl::StatusOr<pool::BufferBlock> block = arena.carve(count, buffer_size);
  if (!block.ok()) return block.status();
  std::unique_ptr<BufferRing> ring(new BufferRing(loop, std::move(*block), count, buffer_size));

  ring->ring_bytes_ = count * sizeof(io_uring_buf);
  void* mem =
      mmap(nullptr, ring->ring_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return errno_to_status(errno, "BufferRing: mmap");
  ring->ring_ = static_cast<io_uring_buf_ring*>(mem);
  io_uring_buf_ring_init(ring->ring_);

  ring->group_ = loop.allocate_buffer_group();
  io_uring_buf_reg reg;
  std::memset(&reg, 0, sizeof(reg));
  reg.ring_addr = reinterpret_cast<uint64_t>(ring->ring_);
  reg.ring_entries = count;
  reg.bgid = ring->group_;
  const int ret = io_uring_register_buf_ring(loop.ring().raw(), &reg, 0);
  if (ret < 0) return errno_to_status(-ret, "io_uring_register_buf_ring");
  ring->registered_ = true;
  loop.register_buffer_ring(ring->group_, ring.get());
  for (uint32_t i = 0; i < count; ++i) {
    io_uring_buf_ring_add(ring->ring_, ring->block_.buffer(i), buffer_size,
                          static_cast<uint16_t>(i), io_uring_buf_ring_mask(count),
                          static_cast<int>(i));
  }
  io_uring_buf_ring_advance(ring->ring_, static_cast<int>(count));
  return ring;
}

BufferRing::BufferRing(EventLoop& loop, pool::BufferBlock block, uint32_t count,
                       uint32_t buffer_size)
    : loop_(loop), block_(std::move(block)), count_(count), buffer_size_(buffer_size) {}

BufferRing::~BufferRing() {
  if (outstanding_ != 0) {
    std::fprintf(stderr, "coring: buffer ring %u destroyed with %u buffers still held\n", group_,
                 outstanding_);
    assert(outstanding_ == 0 && "every RecvBuffer must be released before its BufferRing");
  }
  if (registered_) {
    loop_.unregister_buffer_ring(group_);
    io_uring_unregister_buf_ring(loop_.ring().raw(), group_);
  }
  if (ring_ != nullptr) munmap(ring_, ring_bytes_);
}

void BufferRing::add(uint16_t id) noexcept {
  io_uring_buf_ring_add(ring_, block_.buffer(id), buffer_size_, id, io_uring_buf_ring_mask(count_),
                        0);
  io_uring_buf_ring_advance(ring_, 1);
}

RecvBuffer BufferRing::take(uint16_t id, size_t length) noexcept {
  assert(id < count_);
  return RecvBuffer(this, block_.buffer(id), length, id);
}

void BufferRing::give_back(uint16_t id) noexcept {
  assert(outstanding_ > 0);
  --outstanding_;
  add(id);
  if (waiters_ != nullptr) {
    BufferWaiter* w = std::exchange(waiters_, nullptr);
    while (w != nullptr) {
      BufferWaiter* next = std::exchange(w->next_waiter_, nullptr);
      w->waiting_ = false;
      w->on_buffers_available();
      w = next;
    }
  }
}

void BufferRing::wait_for_buffers(BufferWaiter* waiter) noexcept {
  if (waiter->waiting_) return;
  waiter->waiting_ = true;
  waiter->next_waiter_ = waiters_;
  waiters_ = waiter;
}

void BufferRing::cancel_wait(BufferWaiter* waiter) noexcept {
  if (!waiter->waiting_) return;
  for (BufferWaiter** p = &waiters_; *p != nullptr; p = &(*p)->next_waiter_) {
    if (*p == waiter) {
      *p = waiter->next_waiter_;
      break;
    }
  }
  waiter->next_waiter_ = nullptr;
  waiter->waiting_ = false;
}

void BufferRing::wake_waiter(const BufferWaiter* waiter) noexcept {
  for (BufferWaiter** p = &waiters_; *p != nullptr; p = &(*p)->next_waiter_) {
    if (*p == waiter) {
      BufferWaiter* found = *p;
      *p = found->next_waiter_;
      found->next_waiter_ = nullptr;
      found->waiting_ = false;
      found->on_buffers_available();
      return;
    }
  }
}

}  // namespace coring
