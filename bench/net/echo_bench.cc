// Per-message cost of FramedStream: an in-process echo over one loopback TCP
// connection, both ends FramedStream<LengthPrefixCodec> on one EventLoop with
// a SlabPool installed as the frame allocator (as Runtime does). Each
// iteration writes one frame of `size` bytes from the client, the server
// reads and echoes it, the client reads the echo. Counters, per echoed
// message and for both ends together:
//  * allocs_per_iter       heap allocations (coring::bench::AllocCounter);
//  * slab_allocs_per_iter  SlabPool allocations (coroutine frames, send
//                          chunks): stats().allocs_total delta.
// DESIGN.md's steady state is 0 for both. Arg 1 = 1 gives the loop a
// registered BufferArena, as Runtime does (copied writes lease their send
// buffers from it); 0 runs without one (send buffers are slab chunks).
// BM_StreamEcho does the same for the raw echo of examples/net/echo_server
// (Stream read() and write() of the buffer read), with a plain Stream client;
// BM_StreamEchoConns over 1000 connections, one message on each in turn
// (coring::bench::echo_rounds()), as the load generator's fixed-rate
// cells: each message finds its connection's state out of the cache.
//
// Run: net_echo_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "../../tests/net/length_prefix_codec.h"
#include "alloc_counter.h"
#include "coring/core/task.h"
#include "coring/net/framed_stream.h"
#include "coring/net/listener.h"
#include "coring/net/net_context.h"
#include "coring/net/stream.h"
#include "coring/pool/slab_pool.h"
#include "loopback_bench.h"

namespace {

using coring::Task;
using coring::net::FramedStream;
using coring::net::testing::LengthPrefixCodec;
using Framed = FramedStream<LengthPrefixCodec>;

Task<> echo(Framed conn) {
  for (;;) {
    auto frame = co_await conn.read_frame();
    if (!frame.ok()) co_return;
    auto st = co_await conn.write_frame(*frame);
    if (!st.ok()) break;
  }
  (void)co_await conn.close();
}

Task<> accept_one(coring::net::Listener& listener) {
  auto s = co_await listener.accept();
  if (!s.ok()) co_return;
  co_await echo(Framed(std::move(*s), LengthPrefixCodec()));
}

Task<absl::Status> client(coring::net::NetContext& net, coring::net::SocketAddress addr,
                          coring::pool::SlabPool& slab, benchmark::State& state) {
  auto c = co_await coring::net::Stream::connect(net, addr);
  if (!c.ok()) co_return c.status();
  Framed conn(std::move(*c), LengthPrefixCodec());
  const std::vector<uint8_t> payload(static_cast<size_t>(state.range(0)), 0x5a);
  const coring::net::testing::LpFrame frame{absl::MakeConstSpan(payload)};
  for (int i = 0; i < 100; ++i) {  // warm up: pools, buffers, lazily made state
    if (auto st = co_await conn.write_frame(frame); !st.ok()) co_return st;
    auto f = co_await conn.read_frame();
    if (!f.ok()) co_return f.status();
  }
  const uint64_t slab_before = slab.stats().allocs_total;
  coring::bench::AllocCounter allocs;
  for (auto _ : state) {
    if (auto st = co_await conn.write_frame(frame); !st.ok()) co_return st;
    auto f = co_await conn.read_frame();
    if (!f.ok()) co_return f.status();
    if (f->payload.size() != payload.size()) co_return absl::DataLossError("short echo");
  }
  const auto heap = static_cast<double>(allocs.count());
  const auto slab_allocs = static_cast<double>(slab.stats().allocs_total - slab_before);
  const auto iters = static_cast<double>(state.iterations());
  state.counters["allocs_per_iter"] = benchmark::Counter(heap / iters);
  state.counters["slab_allocs_per_iter"] = benchmark::Counter(slab_allocs / iters);
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
  (void)co_await conn.close();
  co_return absl::OkStatus();
}

void BM_FramedEcho(benchmark::State& state) {
  coring::bench::LoopbackBench b;
  if (!b.open(state, /*arena=*/state.range(1) != 0)) return;
  b.run(state, accept_one(b.listener()), client(b.net(), b.address(), b.slab(), state));
}

// The raw echo of examples/net/echo_server: a Stream's read() and its
// buffer written back (write(RecvBuffer&&): sent from the ring buffer, no
// copy). The client is a plain Stream: it writes `size` bytes, reads them
// back and compares. Counters as BM_FramedEcho's, per round trip.
Task<> raw_echo(coring::net::Stream conn) {
  for (;;) {
    auto buf = co_await conn.read();
    if (!buf.ok() || buf->empty()) break;
    if (!(co_await conn.write(std::move(*buf))).ok()) break;
  }
  (void)co_await conn.close();
}

// Clients: `conns` plain Streams, `size` bytes a message.
Task<absl::Status> raw_clients(coring::net::NetContext& net, coring::net::SocketAddress addr,
                               coring::pool::SlabPool& slab, benchmark::State& state, int64_t conns,
                               int64_t size) {
  auto streams = co_await coring::bench::connect_all(net, addr, conns);
  if (!streams.ok()) co_return streams.status();
  const std::vector<uint8_t> payload(static_cast<size_t>(size), 0x5a);
  if (auto st = co_await coring::bench::echo_rounds(absl::MakeSpan(*streams), payload, slab, state,
                                                    "iter", 1);
      !st.ok()) {
    co_return st;
  }
  state.SetBytesProcessed(state.iterations() * conns * size);
  for (coring::net::Stream& conn : *streams) (void)co_await conn.close();
  co_return absl::OkStatus();
}

void BM_StreamEcho(benchmark::State& state) {
  coring::bench::LoopbackBench b;
  if (!b.open(state, /*arena=*/true)) return;
  b.run(state, coring::bench::accept_all(b.listener(), 1, raw_echo),
        raw_clients(b.net(), b.address(), b.slab(), state, 1, state.range(0)));
}

void BM_StreamEchoConns(benchmark::State& state) {
  coring::bench::LoopbackBench b;
  if (!b.open(state, /*arena=*/true)) return;
  b.run(state, coring::bench::accept_all(b.listener(), state.range(0), raw_echo),
        raw_clients(b.net(), b.address(), b.slab(), state, state.range(0), state.range(1)));
}

BENCHMARK(BM_StreamEcho)
    ->ArgName("size")
    ->Arg(64)
    ->Arg(1024)
    ->Apply(coring::bench::iterations_from_environment);

BENCHMARK(BM_StreamEchoConns)
    ->ArgNames({"conns", "size"})
    ->Args({1000, 64})
    ->Apply(coring::bench::iterations_from_environment);
BENCHMARK(BM_FramedEcho)
    ->ArgNames({"size", "arena"})
    ->ArgsProduct({{64, 1024, 16 * 1024}, {0, 1}})
    ->Apply(coring::bench::iterations_from_environment);

}  // namespace

BENCHMARK_MAIN();
