// AllocCounter: how many heap allocations this thread has made.
//
// Linking bench/alloc_counter.cc replaces the global operator new/delete and
// interposes malloc/calloc/realloc, counting every call per thread, so a
// benchmark can report "allocations per message" as a counter and prove a hot
// path allocates nothing. Counting is per thread so that a benchmark's own
// background threads do not blur its numbers.
#pragma once

#include <cstdint>

namespace coring::bench {

class AllocCounter {
 public:
  // Allocations (operator new + malloc family) made by the calling thread so far.
  static uint64_t thread_allocations();

  // Starts a measurement on the calling thread.
  AllocCounter() : start_(thread_allocations()) {}
  // Allocations made by the calling thread since construction.
  uint64_t count() const { return thread_allocations() - start_; }

 private:
  uint64_t start_;
};

}  // namespace coring::bench
