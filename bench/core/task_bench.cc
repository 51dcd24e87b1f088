// Task layer micro-benchmarks: what a co_await costs, and whether a steady
// state of short-lived Tasks allocates from the heap.
//
// * AwaitReadyTask: co_await a Task<int> that returns immediately (frame
//   allocation + start by symmetric transfer + return + free), heap frames vs
//   frames from a SlabPool installed with FrameAllocatorScope.
// * ManualResumeRoundTrip: a coroutine suspends on a hand-made awaitable and
//   is resumed by the benchmark loop: the floor under any I/O awaitable.
// * WhenAll2: when_all of two immediate Task<int>s.
// Every benchmark reports allocs_per_iter (target 0 with the pool installed).
#include <benchmark/benchmark.h>

#include <coroutine>
#include <exception>
#include <optional>

#include "alloc_counter.h"
#include "coring/core/frame_allocator.h"
#include "coring/core/task.h"
#include "coring/core/when_all.h"
#include "coring/pool/slab_pool.h"

namespace coring {
namespace {

void report_allocs(benchmark::State& state, const bench::AllocCounter& counter) {
  state.counters["allocs_per_iter"] =
      benchmark::Counter(static_cast<double>(counter.count()), benchmark::Counter::kAvgIterations);
}

// Runs `task` to completion; the benchmarks below never suspend for real.
void run(Task<> task) {
  bool done = false;
  std::coroutine_handle<> h =
      detail::make_detached(std::move(task), [&done](std::exception_ptr error) noexcept {
        if (error) std::terminate();
        done = true;
      });
  h.resume();
  if (!done) std::terminate();
}

Task<int> immediate(int v) { co_return v; }

Task<> await_ready_loop_counted(benchmark::State& state, std::optional<bench::AllocCounter>& c) {
  long sum = co_await immediate(0);  // first frame of the class: page set-up, not steady state
  c.emplace();
  for (auto _ : state) {
    sum += co_await immediate(1);
  }
  benchmark::DoNotOptimize(sum);
}

void BM_AwaitReadyTask_Heap(benchmark::State& state) {
  std::optional<bench::AllocCounter> counter;
  run(await_ready_loop_counted(state, counter));
  report_allocs(state, *counter);
}
BENCHMARK(BM_AwaitReadyTask_Heap);

void BM_AwaitReadyTask_Pool(benchmark::State& state) {
  pool::SlabPool slab({.name = "bench.task_frames.v1", .capacity_bytes = 4 << 20});
  FrameAllocatorScope scope(&slab);
  std::optional<bench::AllocCounter> counter;
  run(await_ready_loop_counted(state, counter));
  report_allocs(state, *counter);
}
BENCHMARK(BM_AwaitReadyTask_Pool);

// Suspends always; the benchmark loop resumes the coroutine by hand.
struct Park {
  std::coroutine_handle<>* slot;
  explicit Park(std::coroutine_handle<>* s) noexcept : slot(s) {}
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) noexcept { *slot = h; }
  void await_resume() const noexcept {}
};

Task<> parked_loop(std::coroutine_handle<>& slot, long& rounds) {
  for (;;) {
    co_await Park(&slot);
    ++rounds;
  }
}

void BM_ManualResumeRoundTrip(benchmark::State& state) {
  std::coroutine_handle<> slot;
  long rounds = 0;
  Task<> task = parked_loop(slot, rounds);
  std::coroutine_handle<> runner =
      detail::make_detached(std::move(task), [](std::exception_ptr) noexcept {});
  runner.resume();  // runs to the first Park
  bench::AllocCounter counter;
  for (auto _ : state) {
    slot.resume();
  }
  report_allocs(state, counter);
  benchmark::DoNotOptimize(rounds);
  runner.destroy();  // the loop never ends: free it as a loop shutdown would
}
BENCHMARK(BM_ManualResumeRoundTrip);

Task<> when_all_loop(benchmark::State& state, std::optional<bench::AllocCounter>& c) {
  long sum = 0;
  auto [w0, w1] = co_await when_all(immediate(0), immediate(0));  // warm the size classes
  sum += w0 + w1;
  c.emplace();
  for (auto _ : state) {
    auto [a, b] = co_await when_all(immediate(1), immediate(2));
    sum += a + b;
  }
  benchmark::DoNotOptimize(sum);
}

void BM_WhenAll2_Heap(benchmark::State& state) {
  std::optional<bench::AllocCounter> counter;
  run(when_all_loop(state, counter));
  report_allocs(state, *counter);
}
BENCHMARK(BM_WhenAll2_Heap);

void BM_WhenAll2_Pool(benchmark::State& state) {
  pool::SlabPool slab({.name = "bench.task_frames.v1", .capacity_bytes = 4 << 20});
  FrameAllocatorScope scope(&slab);
  std::optional<bench::AllocCounter> counter;
  run(when_all_loop(state, counter));
  report_allocs(state, *counter);
}
BENCHMARK(BM_WhenAll2_Pool);

}  // namespace
}  // namespace coring

BENCHMARK_MAIN();
