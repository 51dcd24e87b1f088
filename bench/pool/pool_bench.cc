// pool/ micro-benchmarks: the slab pool against glibc malloc, mimalloc and
// jemalloc, side by side in one binary.
//
// Baselines, and why they are loaded the way they are: Debian's libmimalloc
// and libjemalloc export unprefixed malloc/free, so linking either would
// replace glibc's malloc for the whole process and make the "glibc" numbers a
// lie. Both are dlopen()ed with RTLD_LOCAL instead (mi_malloc/mi_free;
// jemalloc's own malloc/free via dlsym), and main() verifies that the
// process's malloc is still glibc's. The glibc baseline calls __libc_malloc /
// __libc_free directly: that is glibc's malloc itself, minus the alloc
// counter's interposition (bench/alloc_counter.cc), which is linked so the
// pool benchmarks can prove allocs_per_iter == 0.
//
//   pool_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <dlfcn.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "alloc_counter.h"
#include "benchmark/benchmark.h"
#include "coring/pool/slab_pool.h"

extern "C" {
void* __libc_malloc(size_t);
void __libc_free(void*);
}

namespace {

using coring::pool::HugePagePolicy;
using coring::pool::SlabPool;
using coring::pool::SlabPoolOptions;

using MallocFn = void* (*)(size_t);
using FreeFn = void (*)(void*);

struct Allocator {
  MallocFn malloc_fn = nullptr;
  FreeFn free_fn = nullptr;
  const char* error = nullptr;
};

Allocator load(const char* library, const char* malloc_name, const char* free_name) {
  Allocator a;
  void* handle = ::dlopen(library, RTLD_NOW | RTLD_LOCAL);
  if (handle == nullptr) {
    a.error = "library not loadable (apt-get install libmimalloc2.0 libjemalloc2)";
    std::fprintf(stderr, "pool_bench: %s: %s\n", library, ::dlerror());
    return a;
  }
  a.malloc_fn = reinterpret_cast<MallocFn>(::dlsym(handle, malloc_name));
  a.free_fn = reinterpret_cast<FreeFn>(::dlsym(handle, free_name));
  if (a.malloc_fn == nullptr || a.free_fn == nullptr) a.error = "symbol missing";
  return a;  // never dlclose()d: blocks may outlive a benchmark
}

const Allocator& mimalloc() {
  static const Allocator a = load("libmimalloc.so.2", "mi_malloc", "mi_free");
  return a;
}
const Allocator& jemalloc() {
  static const Allocator a = load("libjemalloc.so.2", "malloc", "free");
  return a;
}
const Allocator& glibc() {
  static const Allocator a{&__libc_malloc, &__libc_free, nullptr};
  return a;
}

SlabPoolOptions bench_pool_options() {
  return SlabPoolOptions{"bench.slab.v1", size_t{1} << 30, HugePagePolicy::kAuto};
}

void report_allocs(benchmark::State& state, const coring::bench::AllocCounter& counter) {
  state.counters["allocs_per_iter"] =
      benchmark::Counter(static_cast<double>(counter.count()), benchmark::Counter::kAvgIterations);
}

// --- alloc+free pairs -------------------------------------------------------

void BM_PoolAllocFree(benchmark::State& state) {
  const auto size = static_cast<size_t>(state.range(0));
  SlabPool pool(bench_pool_options());
  coring::pool::deallocate(pool.try_allocate(size));  // map the first page outside the loop
  coring::bench::AllocCounter counter;
  for (auto _ : state) {
    void* p = pool.try_allocate(size);
    benchmark::DoNotOptimize(p);
    coring::pool::deallocate(p);
  }
  report_allocs(state, counter);
}

void allocator_alloc_free(benchmark::State& state, const Allocator& a) {
  if (a.error != nullptr) {
    state.SkipWithError(a.error);
    return;
  }
  const auto size = static_cast<size_t>(state.range(0));
  for (auto _ : state) {
    void* p = a.malloc_fn(size);
    benchmark::DoNotOptimize(p);
    a.free_fn(p);
  }
}
void BM_GlibcAllocFree(benchmark::State& state) { allocator_alloc_free(state, glibc()); }
void BM_MimallocAllocFree(benchmark::State& state) { allocator_alloc_free(state, mimalloc()); }
void BM_JemallocAllocFree(benchmark::State& state) { allocator_alloc_free(state, jemalloc()); }

// --- batch: allocate 1,000, free them in random order ----------------------

constexpr int kBatch = 1000;

const std::vector<int>& shuffled_order() {
  static const std::vector<int> order = [] {
    std::vector<int> v(kBatch);
    std::iota(v.begin(), v.end(), 0);
    std::shuffle(v.begin(), v.end(), std::mt19937(7));
    return v;
  }();
  return order;
}

template <class Alloc, class Free>
void batch(benchmark::State& state, Alloc alloc, Free release, bool count_allocs) {
  const auto size = static_cast<size_t>(state.range(0));
  const std::vector<int>& order = shuffled_order();
  std::vector<void*> blocks(kBatch);
  coring::bench::AllocCounter counter;
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      blocks[i] = alloc(size);
      benchmark::DoNotOptimize(blocks[i]);
    }
    for (int i : order) release(blocks[i]);
  }
  state.SetItemsProcessed(state.iterations() * kBatch);  // items = alloc+free pairs
  if (count_allocs) report_allocs(state, counter);
}

void BM_PoolBatch(benchmark::State& state) {
  SlabPool pool(bench_pool_options());
  batch(
      state, [&pool](size_t n) { return pool.try_allocate(n); },
      [](void* p) { coring::pool::deallocate(p); }, true);
}
void allocator_batch(benchmark::State& state, const Allocator& a) {
  if (a.error != nullptr) {
    state.SkipWithError(a.error);
    return;
  }
  batch(state, a.malloc_fn, a.free_fn, false);
}
void BM_GlibcBatch(benchmark::State& state) { allocator_batch(state, glibc()); }
void BM_MimallocBatch(benchmark::State& state) { allocator_batch(state, mimalloc()); }
void BM_JemallocBatch(benchmark::State& state) { allocator_batch(state, jemalloc()); }

// --- cross-thread frees -----------------------------------------------------
// The benchmark thread allocates 64-byte blocks and passes each through a
// single-producer/single-consumer ring to a second thread, which frees it.
// For the pool every such free is a push onto the owner's queue, and the
// owner drains every 256 allocations. Items = blocks allocated here and freed
// there; the two threads run concurrently, so this is a throughput figure.

class Freer {
 public:
  explicit Freer(FreeFn free_fn) : free_fn_(free_fn), ring_(kRing), thread_([this] { run(); }) {}
  ~Freer() {
    stop_.store(true, std::memory_order_release);
    thread_.join();
  }
  void push(void* p) {
    const size_t tail = tail_.load(std::memory_order_relaxed);
    // Yield while full: on a loaded machine a pure spin starves the freer.
    while (tail - head_.load(std::memory_order_acquire) == kRing) std::this_thread::yield();
    ring_[tail % kRing] = p;
    tail_.store(tail + 1, std::memory_order_release);
  }
  void wait_until_empty() {
    while (head_.load(std::memory_order_acquire) != tail_.load(std::memory_order_relaxed)) {
      std::this_thread::yield();
    }
  }

 private:
  static constexpr size_t kRing = 4096;
  void run() {
    while (true) {
      size_t head = head_.load(std::memory_order_relaxed);
      const size_t tail = tail_.load(std::memory_order_acquire);
      if (head == tail) {
        if (stop_.load(std::memory_order_acquire)) return;
        std::this_thread::yield();
        continue;
      }
      for (; head != tail; ++head) free_fn_(ring_[head % kRing]);
      head_.store(head, std::memory_order_release);
    }
  }
  FreeFn free_fn_;
  std::vector<void*> ring_;
  alignas(64) std::atomic<size_t> head_{0};
  alignas(64) std::atomic<size_t> tail_{0};
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

template <class Alloc>
void cross_thread(benchmark::State& state, Alloc alloc, FreeFn free_fn, SlabPool* pool) {
  Freer freer(free_fn);
  for (auto _ : state) {
    for (int i = 0; i < kBatch; ++i) {
      freer.push(alloc(64));
      if (pool != nullptr && i % 256 == 0) pool->drain();
    }
  }
  freer.wait_until_empty();
  if (pool != nullptr) pool->drain();
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void BM_PoolCrossThreadFree(benchmark::State& state) {
  SlabPool pool(bench_pool_options());
  cross_thread(
      state, [&pool](size_t n) { return pool.try_allocate(n); },
      [](void* p) { coring::pool::deallocate(p); }, &pool);
  if (state.thread_index() == 0) {
    state.counters["cross_thread_frees"] = static_cast<double>(pool.stats().cross_thread_frees);
  }
}
// The owner's side alone, free of the scheduling noise of the concurrent
// figure above: 1,000 64-byte blocks freed by another thread (not timed),
// then drain() and 1,000 allocations on the owner (timed). Items = blocks.
void BM_PoolRemoteDrain(benchmark::State& state) {
  SlabPool pool(bench_pool_options());
  std::vector<void*> blocks(kBatch);
  for (void*& b : blocks) b = pool.try_allocate(64);
  for (auto _ : state) {
    state.PauseTiming();
    std::thread([&blocks] {
      for (void* b : blocks) coring::pool::deallocate(b);
    }).join();
    state.ResumeTiming();
    pool.drain();
    for (void*& b : blocks) {
      b = pool.try_allocate(64);
      benchmark::DoNotOptimize(b);
    }
  }
  for (void* b : blocks) coring::pool::deallocate(b);
  state.SetItemsProcessed(state.iterations() * kBatch);
}

void allocator_cross_thread(benchmark::State& state, const Allocator& a) {
  if (a.error != nullptr) {
    state.SkipWithError(a.error);
    return;
  }
  cross_thread(state, a.malloc_fn, a.free_fn, nullptr);
}
void BM_GlibcCrossThreadFree(benchmark::State& state) { allocator_cross_thread(state, glibc()); }
void BM_MimallocCrossThreadFree(benchmark::State& state) {
  allocator_cross_thread(state, mimalloc());
}
void BM_JemallocCrossThreadFree(benchmark::State& state) {
  allocator_cross_thread(state, jemalloc());
}

// --- giving memory back -----------------------------------------------------

// SlabPool::trim() giving back `pages` 64 KiB pages that were touched and
// then freed, as after a burst of large blocks (a server's receive copies
// under 1000 connections): the timed part is the one trim() call that
// releases them; setting them up (faulting them in again) is not timed.
// time_per_page is the figure to read.
void BM_PoolTrim(benchmark::State& state) {
  const auto pages = static_cast<size_t>(state.range(0));
  SlabPool pool({"bench.trim.v1", size_t{64} << 20, HugePagePolicy::kNever});
  std::vector<void*> blocks(pages);
  size_t released = 0;
  for (auto _ : state) {
    state.PauseTiming();
    std::fill(blocks.begin(), blocks.end(), nullptr);  // (a failed allocation leaves the rest)
    for (void*& b : blocks) {
      b = pool.try_allocate(coring::pool::kPageSize);
      if (b == nullptr) break;
      for (size_t off = 0; off < coring::pool::kPageSize; off += 4096)
        static_cast<volatile char*>(b)[off] = 1;
    }
    for (void* b : blocks) coring::pool::deallocate(b);
    pool.trim();  // the pages are free from here; the next call gives them back
    state.ResumeTiming();
    released = pool.trim();
    if (released != pages * coring::pool::kPageSize) break;
  }
  if (released != pages * coring::pool::kPageSize) {
    state.SkipWithError("trim() did not give back every page");
  }
  state.counters["time_per_page"] =
      benchmark::Counter(static_cast<double>(pages), benchmark::Counter::kIsIterationInvariantRate |
                                                         benchmark::Counter::kInvert);
}

#define PAIR_SIZES Arg(64)->Arg(1024)->Arg(16384)
BENCHMARK(BM_PoolAllocFree)->PAIR_SIZES;
BENCHMARK(BM_GlibcAllocFree)->PAIR_SIZES;
BENCHMARK(BM_MimallocAllocFree)->PAIR_SIZES;
BENCHMARK(BM_JemallocAllocFree)->PAIR_SIZES;
BENCHMARK(BM_PoolBatch)->PAIR_SIZES;
BENCHMARK(BM_GlibcBatch)->PAIR_SIZES;
BENCHMARK(BM_MimallocBatch)->PAIR_SIZES;
BENCHMARK(BM_JemallocBatch)->PAIR_SIZES;
BENCHMARK(BM_PoolCrossThreadFree)->UseRealTime();
BENCHMARK(BM_PoolRemoteDrain);
BENCHMARK(BM_GlibcCrossThreadFree)->UseRealTime();
BENCHMARK(BM_MimallocCrossThreadFree)->UseRealTime();
BENCHMARK(BM_JemallocCrossThreadFree)->UseRealTime();
BENCHMARK(BM_PoolTrim)->Arg(32)->Arg(256);

// The baselines are only honest if the process's malloc is still glibc's.
bool malloc_is_glibc() {
  void* process_malloc = ::dlsym(RTLD_DEFAULT, "malloc");
  const Allocator& je = jemalloc();
  if (je.error == nullptr && process_malloc == reinterpret_cast<void*>(je.malloc_fn)) return false;
  if (mimalloc().error == nullptr) {
    void* handle = ::dlopen("libmimalloc.so.2", RTLD_NOW | RTLD_LOCAL | RTLD_NOLOAD);
    auto owned = reinterpret_cast<bool (*)(const void*)>(::dlsym(handle, "mi_check_owned"));
    void* p = std::malloc(64);
    const bool stolen = owned != nullptr && owned(p);
    std::free(p);
    if (stolen) return false;
  }
  return true;
}

// Debian's libjemalloc uses initial-exec TLS, which a dlopen()ed library can
// only get from glibc's static TLS surplus; glibc sizes that surplus at
// startup from a tunable. So set the tunable and run this binary again, once.
void reexec_with_static_tls_surplus(char** argv) {
  constexpr const char* kTunable = "glibc.rtld.optional_static_tls";
  const char* current = std::getenv("GLIBC_TUNABLES");
  if (current != nullptr && std::strstr(current, kTunable) != nullptr) return;
  std::string value = current == nullptr ? "" : std::string(current) + ":";
  value += std::string(kTunable) + "=65536";
  ::setenv("GLIBC_TUNABLES", value.c_str(), 1);
  ::execv("/proc/self/exe", argv);
  // exec failed: carry on; the jemalloc rows will say it is not loadable.
}

}  // namespace

int main(int argc, char** argv) {
  reexec_with_static_tls_surplus(argv);
  if (!malloc_is_glibc()) {
    std::fprintf(stderr, "pool_bench: malloc is not glibc's; the baselines would be wrong\n");
    return 1;
  }
  std::fprintf(stderr,
               "pool_bench: process malloc is glibc's (mimalloc, jemalloc loaded locally)\n");
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
