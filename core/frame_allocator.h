// Coroutine frame allocation: frames come from the calling thread's slab pool.
//
// Every coring coroutine promise (Task<T>, when_all/when_any internals, the
// detached runner) routes operator new/delete through frame_allocate() and
// frame_deallocate(). While a FrameAllocatorScope is alive on a thread, frames
// created on that thread come from its pool::SlabPool, so a steady-state
// request loop allocates nothing from the global heap. Without a scope, or
// when the pool cannot serve the size (above 64 KiB, or exhausted), frames
// come from the global heap.
//
//   pool::SlabPool slab(options);
//   coring::FrameAllocatorScope scope(&slab);   // EventLoop does this per thread
//   Task<> t = handler();                        // frame comes from `slab`
//
// A frame may be freed on any thread, with or without a scope installed there:
// slab blocks go back through pool::deallocate(), which routes a foreign
// thread's free through the owning pool's queue.
//
// Why an origin word: at free time the installed pool (if any) says nothing
// about where a block came from (the pool may have been exhausted at
// allocation time, the scope may have changed, or the free may run on another
// thread). Each block therefore records its origin, which makes the decision
// O(1) and independent of how the pool tracks its slabs. The word sits just
// past the frame (frame_deallocate() is given the size), not before it: the
// frame starts where its block does, so one in a block whose size is a
// multiple of 64 (every slab class from 256 bytes: connection state, a
// handler's frame) starts on a cache line, and the members a message
// touches, declared together, share as few lines as they can. (With the word
// in front, such frames started 16 bytes into a line, and their first 64
// bytes took two.)
#pragma once

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <new>

#include "coring/pool/slab_pool.h"

namespace coring {

namespace detail {

// The pool frames of this thread come from; owned by whoever installed it
// (normally the thread's EventLoop), never by this file.
inline thread_local pool::SlabPool* current_frame_pool = nullptr;

enum class FrameOrigin : std::uintptr_t { kHeap = 0x48454150, kSlab = 0x534c4142 };

// Where a frame of `size` bytes keeps its origin: past the frame, aligned.
inline FrameOrigin* frame_tag(void* frame, std::size_t size) noexcept {
  const std::size_t at = (size + alignof(FrameOrigin) - 1) & ~(alignof(FrameOrigin) - 1);
  return reinterpret_cast<FrameOrigin*>(static_cast<std::byte*>(frame) + at);
}
// The block a frame of `size` bytes needs, its origin word included.
inline constexpr std::size_t frame_block_size(std::size_t size) noexcept {
  return ((size + alignof(FrameOrigin) - 1) & ~(alignof(FrameOrigin) - 1)) + sizeof(FrameOrigin);
}

}  // namespace detail

// The pool frames allocated on this thread come from, or nullptr (heap).
inline pool::SlabPool* current_frame_pool() noexcept { return detail::current_frame_pool; }

// Installs `pool` as this thread's frame pool for the scope's lifetime and
// restores the previous one (scopes nest). nullptr installs "use the heap".
class FrameAllocatorScope {
 public:
  explicit FrameAllocatorScope(pool::SlabPool* pool) noexcept
      : previous_(detail::current_frame_pool) {
    detail::current_frame_pool = pool;
  }
  ~FrameAllocatorScope() { detail::current_frame_pool = previous_; }

  FrameAllocatorScope(const FrameAllocatorScope&) = delete;
  FrameAllocatorScope& operator=(const FrameAllocatorScope&) = delete;

 private:
  pool::SlabPool* previous_;
};

// Allocates `size` bytes for a coroutine frame; throws std::bad_alloc when
// neither the pool nor the heap can serve it (like operator new).
inline void* frame_allocate(std::size_t size) {
  const std::size_t total = detail::frame_block_size(size);
  void* frame = nullptr;
  detail::FrameOrigin origin = detail::FrameOrigin::kSlab;
  if (pool::SlabPool* pool = detail::current_frame_pool; pool != nullptr) {
    frame = pool->try_allocate(total);
  }
  if (frame == nullptr) {
    frame = ::operator new(total);
    origin = detail::FrameOrigin::kHeap;
  }
  *detail::frame_tag(frame, size) = origin;
  return frame;
}

// Frees a frame from frame_allocate(); `size` is the size passed to it. Safe
// on any thread, with any (or no) FrameAllocatorScope installed.
inline void frame_deallocate(void* frame, std::size_t size) noexcept {
  if (frame == nullptr) return;
  const detail::FrameOrigin origin = *detail::frame_tag(frame, size);
  if (origin == detail::FrameOrigin::kSlab) {
    pool::deallocate(frame);
    return;
  }
  assert(origin == detail::FrameOrigin::kHeap && "frame_deallocate(): not the size allocated");
  ::operator delete(frame, detail::frame_block_size(size));
}

}  // namespace coring
