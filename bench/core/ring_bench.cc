// Ring/loop micro-benchmarks (core/event_loop.*, the awaitables):
// * NOP round trip through co_await vs a hand-written liburing loop doing the
//   same NOPs on an identically configured ring (target overhead <= 15%);
// * switch_to() round trip between two loops on two threads (post latency);
// * allocations per iteration of a steady-state request loop (send + recv
//   echo over a socket pair, frames from the slab pool): target 0.
//
// Run: core_ring_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <liburing.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <future>
#include <thread>

#include "alloc_counter.h"
#include "coring/core/event_loop.h"
#include "coring/core/nop.h"
#include "coring/core/recv.h"
#include "coring/core/send.h"
#include "coring/core/spawn.h"
#include "coring/core/switch_to.h"
#include "coring/core/task.h"
#include "coring/pool/slab_pool.h"

namespace coring {
namespace {

using bench::AllocCounter;

pool::SlabPoolOptions slab_options() {
  pool::SlabPoolOptions o;
  o.name = "coring.bench_frames.v1";
  o.capacity_bytes = 16 << 20;
  return o;
}

Task<> nop_loop(benchmark::State& state) {
  for (auto _ : state) {
    absl::Status s = co_await nop();
    benchmark::DoNotOptimize(s);
  }
}

void BM_NopCoAwait(benchmark::State& state) {
  pool::SlabPool slab(slab_options());
  LoopOptions options;
  options.slab_pool = &slab;
  auto loop = EventLoop::create(std::move(options));
  if (!loop.ok()) {
    state.SkipWithError(loop.status().ToString().c_str());
    return;
  }
  AllocCounter allocs;
  (*loop)->block_on(nop_loop(state));
  state.counters["allocs_per_iter"] = benchmark::Counter(static_cast<double>(allocs.count()) /
                                                         static_cast<double>(state.iterations()));
}
BENCHMARK(BM_NopCoAwait);

// The same NOPs, by hand: one SQE, one submit-and-wait, one CQE.
void BM_NopRawLiburing(benchmark::State& state) {
  io_uring ring;
  io_uring_params params;
  std::memset(&params, 0, sizeof(params));
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_SUBMIT_ALL |
                 IORING_SETUP_CQSIZE | IORING_SETUP_CLAMP;
  params.cq_entries = 1024;
  if (io_uring_queue_init_params(256, &ring, &params) != 0) {
    state.SkipWithError("io_uring_queue_init_params failed");
    return;
  }
  io_uring_register_ring_fd(&ring);
  for (auto _ : state) {
    io_uring_sqe* sqe = io_uring_get_sqe(&ring);
    io_uring_prep_nop(sqe);
    io_uring_sqe_set_data64(sqe, 1);
    io_uring_submit_and_wait(&ring, 1);
    io_uring_cqe* cqe = nullptr;
    io_uring_peek_cqe(&ring, &cqe);
    benchmark::DoNotOptimize(cqe->res);
    io_uring_cqe_seen(&ring, cqe);
  }
  io_uring_queue_exit(&ring);
}
BENCHMARK(BM_NopRawLiburing);

Task<> ping_pong(EventLoop& a, EventLoop& b, benchmark::State& state) {
  for (auto _ : state) {
    co_await switch_to(b);
    co_await switch_to(a);
  }
}

// One iteration = A -> B -> A: two cross-thread posts and two MSG_RING wake-ups.
void BM_SwitchToRoundTrip(benchmark::State& state) {
  std::unique_ptr<EventLoop> b;
  std::promise<void> ready;
  std::promise<void> stopped;
  std::thread thread([&] {
    b = std::move(*EventLoop::create({}));
    ready.set_value();
    b->run();
    stopped.get_future().wait();  // B outlives the stop() call below
    b.reset();
  });
  ready.get_future().wait();
  auto a = EventLoop::create({});
  (*a)->block_on(ping_pong(**a, *b, state));
  b->stop();
  stopped.set_value();
  thread.join();
}
BENCHMARK(BM_SwitchToRoundTrip)->UseRealTime();

Task<> echo_server(int fd) {
  std::array<uint8_t, 64> buf{};
  for (;;) {
    absl::StatusOr<size_t> n = co_await recv(fd, absl::MakeSpan(buf));
    if (!n.ok() || *n == 0) co_return;
    absl::StatusOr<size_t> w = co_await send(fd, absl::MakeConstSpan(buf.data(), *n));
    if (!w.ok()) co_return;
  }
}

Task<> request_loop(int fd, benchmark::State& state, uint64_t* allocs) {
  std::array<uint8_t, 64> out{};
  std::array<uint8_t, 64> in{};
  // Warm up: slot table, frames, vectors reach their high-water marks.
  for (int i = 0; i < 1000; ++i) {
    (void)co_await send(fd, absl::MakeConstSpan(out));
    (void)co_await recv(fd, absl::MakeSpan(in));
  }
  AllocCounter counter;
  for (auto _ : state) {
    absl::StatusOr<size_t> w = co_await send(fd, absl::MakeConstSpan(out));
    absl::StatusOr<size_t> r = co_await recv(fd, absl::MakeSpan(in));
    benchmark::DoNotOptimize(w);
    benchmark::DoNotOptimize(r);
  }
  *allocs = counter.count();
}

void BM_SteadyStateEchoAllocs(benchmark::State& state) {
  pool::SlabPool slab(slab_options());
  LoopOptions options;
  options.slab_pool = &slab;
  auto loop = EventLoop::create(std::move(options));
  int fds[2];
  if (!loop.ok() || ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) != 0) {
    state.SkipWithError("set-up failed");
    return;
  }
  spawn(**loop, echo_server(fds[1]));
  uint64_t allocs = 0;
  (*loop)->block_on(request_loop(fds[0], state, &allocs));
  state.counters["allocs_per_iter"] =
      benchmark::Counter(static_cast<double>(allocs) / static_cast<double>(state.iterations()));
  ::shutdown(fds[0], SHUT_RDWR);
  for (int i = 0; i < 4; ++i) (*loop)->run_once(false);
  loop->reset();
  ::close(fds[0]);
  ::close(fds[1]);
}
BENCHMARK(BM_SteadyStateEchoAllocs);

}  // namespace
}  // namespace coring

BENCHMARK_MAIN();
