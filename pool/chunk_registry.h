// The process-wide record of which 2 MiB chunks belong to slab pools.
//
// deallocate(void*) and is_slab_block() take a bare pointer from any thread;
// is_slab_block() must not dereference a heap pointer to decide, so it asks
// this registry: one bit per 2 MiB of the 47-bit user address space (8 MiB of
// address space reserved with MAP_NORESERVE; only the pages holding set bits
// ever get memory). Setting and clearing happen when a pool maps or unmaps a
// chunk (rare); the test is one relaxed atomic load.
#pragma once

#include <cstdint>

namespace coring::pool::chunk_registry {

// Records `chunk` (2 MiB aligned, below 2^47). False if it cannot be recorded.
bool add(const void* chunk) noexcept;
void remove(const void* chunk) noexcept;
bool contains(const void* p) noexcept;

}  // namespace coring::pool::chunk_registry
