// pin_heap_mmap_threshold: large blocks of the C library's heap go back to
// the system when freed, not only into the heap's free lists.
//
// Some of a server's memory is not coring's pools but plain heap blocks: a
// codec's reassembly buffer for a large frame, a heap buffer a send queue
// took over. glibc's malloc serves blocks over its mmap threshold with mmap
// and unmaps them on free, but it raises the threshold to the size of every
// mapped block it frees. After one burst of large frames (peers that send 4
// MiB frames and never read the echoes) the next such blocks come from the
// heap, and freed, stay in it: measured on sbmp_echo_server, three rounds of
// 24 such peers left 92 MiB of RSS after they had gone (baseline 29 MiB);
// with the threshold pinned at 128 KiB, 42 MiB.
//
// The setting is the process's (mallopt): an application's choice, made
// once at start-up before threads allocate, as the example servers do
// (--heap_mmap_threshold).
//
//   if (absl::Status s = pin_heap_mmap_threshold(128 << 10); !s.ok() && !absl::IsUnimplemented(s))
//     std::fprintf(stderr, "%s\n", s.ToString().c_str());
#pragma once

#include <cstddef>

#include "absl/status/status.h"

namespace coring::pool {

// Blocks of at least `min_block` bytes are mapped on their own and unmapped
// when freed, whatever was freed before. InvalidArgument outside [4 KiB, 32
// MiB] (glibc's range); Unimplemented where the allocator is not glibc's
// (other C libraries, or a sanitizer's, which manages its own memory).
absl::Status pin_heap_mmap_threshold(size_t min_block);

}  // namespace coring::pool
