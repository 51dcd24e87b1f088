// Request/reply over one loopback TCP connection, SBMP, both ends on one
// EventLoop with a SlabPool (as Runtime does):
//  * BM_ChannelCalls: `concurrency` coroutines each co_await channel.call()
//    (net/channel.h) against serve_calls() (net/channel_server.h) with an
//    echo handler; one benchmark iteration = one call by each of them.
//  * BM_ManualCalls: the same traffic by hand - `concurrency` requests with
//    REQUEST_ID written with write_frame(), the replies read with
//    read_frame() and matched by id - against a read_frame/write_frame echo.
// Counters per call, both ends together: calls/s (items_per_second),
// allocs_per_call (heap, bench/alloc_counter.h) and slab_allocs_per_call
// (coroutine frames from the SlabPool).
//
// Run: net_channel_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <coroutine>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "alloc_counter.h"
#include "coring/codec/codec.h"
#include "coring/core/event_loop.h"
#include "coring/core/spawn.h"
#include "coring/core/switch_to.h"
#include "coring/core/task.h"
#include "coring/net/channel.h"
#include "coring/net/channel_server.h"
#include "coring/net/client.h"
#include "coring/net/framed_stream.h"
#include "coring/net/listener.h"
#include "coring/net/net_context.h"
#include "coring/pool/slab_pool.h"
#include "loopback_bench.h"

namespace {

using coring::Task;
using coring::net::Channel;
using coring::net::FramedStream;
using coring::sbmp::Codec;
using Conn = FramedStream<Codec>;
using Reply = absl::StatusOr<Codec::Frame>;

constexpr uint16_t kType = 0x0101;
constexpr size_t kPayload = 64;

Task<Reply> echo_handler(coring::net::ServerCall<Codec>& call) {
  co_return coring::sbmp::make_frame(kType, call.request().payload);
}

Task<> serve_channel(coring::net::Listener& listener) {
  auto s = co_await listener.accept();
  if (!s.ok()) co_return;
  co_await coring::net::serve_calls(Conn(std::move(*s), Codec()), echo_handler,
                                    {.max_concurrent = 128});
}

Task<> serve_manual(coring::net::Listener& listener) {
  auto s = co_await listener.accept();
  if (!s.ok()) co_return;
  Conn conn(std::move(*s), Codec());
  for (;;) {
    auto frame = co_await conn.read_frame();
    if (!frame.ok()) break;
    if (!(co_await conn.write_frame(*frame)).ok()) break;
  }
  (void)co_await conn.close();
}

// Callers parked between rounds; the benchmark releases them all at once.
struct Round {
  std::vector<std::coroutine_handle<>> parked;
  std::coroutine_handle<> main;
  int pending = 0;
  int alive = 0;
  bool stop = false;
  absl::Status error;

  struct Park {
    Round* r;
    bool await_ready() const noexcept { return false; }
    void await_suspend(std::coroutine_handle<> h) { r->parked.push_back(h); }
    void await_resume() const noexcept {}
  };
  struct WaitAll {
    Round* r;
    bool await_ready() const noexcept { return r->pending == 0; }
    void await_suspend(std::coroutine_handle<> h) noexcept { r->main = h; }
    void await_resume() const noexcept {}
  };
  void done() {
    if (--pending == 0 && main) coring::EventLoop::current()->schedule(std::exchange(main, {}));
  }
  void release(int n) {
    pending = n;
    for (auto h : parked) coring::EventLoop::current()->schedule(h);
    parked.clear();
  }
};

Task<> caller(Channel<Codec>& ch, Round& round) {
  std::vector<uint8_t> payload(kPayload, 0x5a);
  const Codec::Frame request = coring::sbmp::make_frame(kType, payload);
  ++round.alive;
  for (;;) {
    co_await Round::Park{&round};
    if (round.stop) break;
    auto reply = co_await ch.call(request);
    if (!reply.ok()) {
      round.error = reply.status();
    } else if ((*reply)->payload.size() != kPayload) {
      round.error = absl::DataLossError("short reply");
    }
    round.done();
  }
  --round.alive;
}

struct Measure {
  coring::pool::SlabPool& slab;
  uint64_t slab_before;
  coring::bench::AllocCounter allocs;
  explicit Measure(coring::pool::SlabPool& s) : slab(s), slab_before(s.stats().allocs_total) {}
  void report(benchmark::State& state, int concurrency) {
    const double calls = static_cast<double>(state.iterations()) * concurrency;
    state.counters["allocs_per_call"] = static_cast<double>(allocs.count()) / calls;
    state.counters["slab_allocs_per_call"] =
        static_cast<double>(slab.stats().allocs_total - slab_before) / calls;
    state.SetItemsProcessed(static_cast<int64_t>(calls));
  }
};

Task<absl::Status> channel_client(coring::net::NetContext& net, coring::net::SocketAddress addr,
                                  coring::pool::SlabPool& slab, benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto conn = co_await coring::net::connect_framed(net, addr, Codec());
  if (!conn.ok()) co_return conn.status();
  Channel<Codec> ch(std::move(*conn), {.max_in_flight = 128});
  Round round;
  round.parked.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) coring::spawn(*coring::EventLoop::current(), caller(ch, round));
  while (round.parked.size() < static_cast<size_t>(n)) co_await coring::yield();
  for (int i = 0; i < 200; ++i) {  // warm up: slots, buffers, op table, pools
    round.release(n);
    co_await Round::WaitAll{&round};
    while (round.parked.size() < static_cast<size_t>(n)) co_await coring::yield();
  }
  Measure m(slab);
  for (auto _ : state) {
    round.release(n);
    co_await Round::WaitAll{&round};
    while (round.parked.size() < static_cast<size_t>(n)) co_await coring::yield();
  }
  m.report(state, n);
  round.stop = true;
  round.release(n);
  while (round.alive > 0) co_await coring::yield();
  co_await ch.close();
  co_return round.error;
}

Task<absl::Status> manual_client(coring::net::NetContext& net, coring::net::SocketAddress addr,
                                 coring::pool::SlabPool& slab, benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto conn = co_await coring::net::connect_framed(net, addr, Codec());
  if (!conn.ok()) co_return conn.status();
  std::vector<uint8_t> payload(kPayload, 0x5a);
  std::vector<coring::sbmp::ExtensionBuilder> ext(static_cast<size_t>(n));
  std::vector<uint64_t> outstanding(static_cast<size_t>(n), 0);
  uint64_t next_id = 1;
  absl::Status error;
  // 200 warm-up rounds, then the measured ones; one round = n calls = one
  // iteration.
  std::optional<Measure> m;
  for (int warm = 0; error.ok();) {
    if (warm < 200) {
      ++warm;
    } else {
      if (!m) m.emplace(slab);
      if (!state.KeepRunning()) break;
    }
    for (int i = 0; i < n; ++i) {
      outstanding[static_cast<size_t>(i)] = next_id;
      ext[static_cast<size_t>(i)].set_request_id(next_id++);
      const Codec::Frame f = coring::sbmp::make_frame(kType, payload, ext[size_t(i)].view());
      if (auto st = co_await conn->write_frame(f); !st.ok()) error = st;
    }
    for (int i = 0; i < n && error.ok(); ++i) {
      auto f = co_await conn->read_frame();
      if (!f.ok()) {
        error = f.status();
        break;
      }
      const std::optional<uint64_t> id = f->extensions.request_id();
      const uint64_t base = outstanding[0];
      if (!id || *id < base || *id >= base + static_cast<uint64_t>(n)) {
        error = absl::DataLossError("reply with an unknown id");
      }
    }
  }
  if (m) m->report(state, n);
  (void)co_await conn->close();
  co_return error;
}

template <bool kChannel>
void run(benchmark::State& state) {
  coring::bench::LoopbackBench b;
  if (!b.open(state, /*arena=*/false)) return;
  if constexpr (kChannel) {
    b.run(state, serve_channel(b.listener()),
          channel_client(b.net(), b.address(), b.slab(), state));
  } else {
    b.run(state, serve_manual(b.listener()), manual_client(b.net(), b.address(), b.slab(), state));
  }
}

void BM_ChannelCalls(benchmark::State& state) { run<true>(state); }
void BM_ManualCalls(benchmark::State& state) { run<false>(state); }

BENCHMARK(BM_ChannelCalls)->ArgName("concurrency")->Arg(1)->Arg(64);
BENCHMARK(BM_ManualCalls)->ArgName("concurrency")->Arg(1)->Arg(64);

}  // namespace

BENCHMARK_MAIN();
