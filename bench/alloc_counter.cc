// Counts heap allocations per thread (see alloc_counter.h). malloc and friends
// are interposed by defining them here and forwarding to glibc's __libc_*
// entry points, which keeps counting free of recursion and of dlsym.
//
// Under AddressSanitizer the sanitizer's allocator must see every malloc
// and free (glibc's heap behind its back corrupts both: "free(): invalid
// next size"), so there the counting is a hook the sanitizer calls on each
// allocation instead.
#include "alloc_counter.h"

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__)
#define CORING_ALLOC_COUNTER_HOOKS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORING_ALLOC_COUNTER_HOOKS 1
#endif
#endif

#ifdef CORING_ALLOC_COUNTER_HOOKS
// From <sanitizer/allocator_interface.h>, which g++ does not install.
extern "C" int __sanitizer_install_malloc_and_free_hooks(void (*malloc_hook)(const volatile void*,
                                                                             size_t),
                                                         void (*free_hook)(const volatile void*));
#endif

namespace {
// Plain thread-local integer: no constructor, safe to touch from inside malloc.
thread_local uint64_t t_allocations = 0;
}  // namespace

namespace coring::bench {
uint64_t AllocCounter::thread_allocations() { return t_allocations; }
}  // namespace coring::bench

#ifdef CORING_ALLOC_COUNTER_HOOKS

namespace {
void count_malloc(const volatile void*, size_t) { ++t_allocations; }
void ignore_free(const volatile void*) {}
[[maybe_unused]] const int hooks_installed =
    __sanitizer_install_malloc_and_free_hooks(count_malloc, ignore_free);
}  // namespace

#else

extern "C" {
void* __libc_malloc(size_t);
void* __libc_calloc(size_t, size_t);
void* __libc_realloc(void*, size_t);
void* __libc_memalign(size_t, size_t);
void __libc_free(void*);
}

extern "C" {
void* malloc(size_t n) {
  ++t_allocations;
  return __libc_malloc(n);
}
void* calloc(size_t count, size_t n) {
  ++t_allocations;
  return __libc_calloc(count, n);
}
void* realloc(void* p, size_t n) {
  ++t_allocations;
  return __libc_realloc(p, n);
}
void* aligned_alloc(size_t alignment, size_t n) {
  ++t_allocations;
  return __libc_memalign(alignment, n);
}
int posix_memalign(void** out, size_t alignment, size_t n) {
  ++t_allocations;
  void* p = __libc_memalign(alignment, n);
  if (p == nullptr) return ENOMEM;
  *out = p;
  return 0;
}
void free(void* p) { __libc_free(p); }
}

// operator new goes through malloc above, so it is counted once there.
void* operator new(size_t n) {
  if (void* p = malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void* operator new[](size_t n) { return operator new(n); }
void* operator new(size_t n, const std::nothrow_t&) noexcept { return malloc(n == 0 ? 1 : n); }
void* operator new[](size_t n, const std::nothrow_t&) noexcept { return malloc(n == 0 ? 1 : n); }
void* operator new(size_t n, std::align_val_t a) {
  if (void* p = aligned_alloc(static_cast<size_t>(a),
                              (n + static_cast<size_t>(a) - 1) & ~(static_cast<size_t>(a) - 1))) {
    return p;
  }
  throw std::bad_alloc();
}
void* operator new[](size_t n, std::align_val_t a) { return operator new(n, a); }
void operator delete(void* p) noexcept { free(p); }
void operator delete[](void* p) noexcept { free(p); }
void operator delete(void* p, size_t) noexcept { free(p); }
void operator delete[](void* p, size_t) noexcept { free(p); }
void operator delete(void* p, std::align_val_t) noexcept { free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { free(p); }
void operator delete(void* p, size_t, std::align_val_t) noexcept { free(p); }
void operator delete[](void* p, size_t, std::align_val_t) noexcept { free(p); }

#endif  // CORING_ALLOC_COUNTER_HOOKS
