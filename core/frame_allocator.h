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
// Why a header word: at free time the installed pool (if any) says nothing
// about where a block came from (the pool may have been exhausted at
// allocation time, the scope may have changed, or the free may run on another
// thread). Each block therefore starts with a small header recording its
// origin, which makes the decision O(1) and independent of how the pool tracks
// its slabs. The header is kHeaderSize bytes so the frame keeps the alignment
// operator new guarantees.
#pragma once

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

inline constexpr std::size_t kFrameHeaderSize = __STDCPP_DEFAULT_NEW_ALIGNMENT__;
static_assert(kFrameHeaderSize >= sizeof(FrameOrigin));

inline void* frame_payload(void* block, FrameOrigin origin) noexcept {
  *static_cast<FrameOrigin*>(block) = origin;
  return static_cast<std::byte*>(block) + kFrameHeaderSize;
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
  const std::size_t total = size + detail::kFrameHeaderSize;
  if (pool::SlabPool* pool = detail::current_frame_pool; pool != nullptr) {
    if (void* block = pool->try_allocate(total); block != nullptr) {
      return detail::frame_payload(block, detail::FrameOrigin::kSlab);
    }
  }
  return detail::frame_payload(::operator new(total), detail::FrameOrigin::kHeap);
}

// Frees a frame from frame_allocate(); `size` is the size passed to it. Safe
// on any thread, with any (or no) FrameAllocatorScope installed.
inline void frame_deallocate(void* frame, std::size_t size) noexcept {
  if (frame == nullptr) return;
  void* block = static_cast<std::byte*>(frame) - detail::kFrameHeaderSize;
  const auto origin = *static_cast<detail::FrameOrigin*>(block);
  if (origin == detail::FrameOrigin::kSlab) {
    pool::deallocate(block);
    return;
  }
  ::operator delete(block, size + detail::kFrameHeaderSize);
}

}  // namespace coring
