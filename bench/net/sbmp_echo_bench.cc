// Per-frame user-space cost of an SBMP echo through
// FramedStream<sbmp::Codec>: the server half is sbmp_echo_server's handler
// (read_frame, write_frame), the client writes `batch` frames of `size`
// payload bytes in one write and reads the echo back as raw bytes (no
// decoding), over one loopback TCP connection, both on one EventLoop. With
// a batch of a hundred frames the kernel's share (two recvs and two sends
// per batch) is small, so the time per frame is mostly the framing's: the
// header decode and check, the frame's way to the handler and back, the
// header encode and the send queue. Counters, per frame: allocs_per_frame
// (heap; 0 in the steady state) and slab_allocs_per_frame (SlabPool; 0, but
// for one per received buffer when several are shared with the send queue
// at once, as with batches of 1 KiB frames: a send-queue buffer header).
//
// BM_SbmpEchoConns does the same over 1000 connections, `batch` frames on
// each in turn (coring::bench::echo_rounds()), as the load generator's
// pipelined cells: each batch finds its connection's state (both ends')
// out of the cache.
//
// Run: net_sbmp_echo_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>

#include <cstdint>
#include <vector>

#include "coring/codec/codec.h"
#include "coring/core/task.h"
#include "coring/net/framed_stream.h"
#include "coring/net/listener.h"
#include "coring/net/net_context.h"
#include "coring/net/stream.h"
#include "coring/pool/slab_pool.h"
#include "loopback_bench.h"

namespace {

using coring::Task;
using Framed = coring::net::FramedStream<coring::sbmp::Codec>;

Task<> echo(Framed conn) {
  for (;;) {
    auto frame = co_await conn.read_frame();
    if (!frame.ok()) co_return;
    bool written;
    do {
      written = (co_await conn.write_frame(*frame)).ok();
    } while (written && conn.try_read_frame(*frame));
    if (!written) break;
  }
  (void)co_await conn.close();
}

// As sbmp_echo_server: frames split across receive buffers echoed in place.
Task<> serve(coring::net::Stream s) {
  return echo(Framed(std::move(s), coring::sbmp::Codec(), {.split_payloads = true}));
}

// The handshake of a client Codec on `conn` (no features, as bench/loadgen:
// no CRC-32C trailers), which then encodes the frames.
Task<absl::Status> handshake(coring::net::Stream& conn, coring::sbmp::Codec& codec) {
  while (!codec.established()) {
    const std::vector<uint8_t> hello(codec.pending_output().begin(), codec.pending_output().end());
    codec.consume_output(hello.size());
    if (!hello.empty()) {
      if (auto st = co_await conn.write(hello); !st.ok()) co_return st;
    }
    auto buf = co_await conn.read();
    if (!buf.ok()) co_return buf.status();
    if (buf->empty()) co_return absl::DataLossError("no HELLO_ACK");
    absl::Span<const uint8_t> bytes = buf->span();
    while (!bytes.empty()) {
      auto f = codec.decode(bytes);
      if (!f.ok()) co_return f.status();
      if (f->has_value()) co_return absl::InternalError("an application frame in the handshake");
    }
  }
  co_return absl::OkStatus();
}

// `batch` frames of `size` payload bytes, encoded one after the other.
absl::StatusOr<std::vector<uint8_t>> frames_wire(coring::sbmp::Codec& codec, size_t size,
                                                 size_t batch) {
  const std::vector<uint8_t> payload(size, 0x5a);
  std::vector<uint8_t> wire;
  for (size_t i = 0; i < batch; ++i) {
    coring::sbmp::Codec::Encoded encoded;
    if (auto st = codec.encode(coring::sbmp::make_frame(0x100, payload), encoded); !st.ok()) {
      return st;
    }
    for (auto part : encoded.parts()) wire.insert(wire.end(), part.begin(), part.end());
  }
  return wire;
}

// Clients: `conns` plain Streams, each after its handshake sent `batch`
// frames of `size` payload bytes at a time.
Task<absl::Status> clients(coring::net::NetContext& net, coring::net::SocketAddress addr,
                           coring::pool::SlabPool& slab, benchmark::State& state, int64_t conns,
                           int64_t size, int64_t batch) {
  auto streams = co_await coring::bench::connect_all(net, addr, conns);
  if (!streams.ok()) co_return streams.status();
  coring::sbmp::Codec codec({.role = coring::sbmp::Role::kClient, .features = 0});
  for (coring::net::Stream& conn : *streams) {
    coring::sbmp::Codec hello({.role = coring::sbmp::Role::kClient, .features = 0});
    if (auto st = co_await handshake(conn, &conn == &streams->front() ? codec : hello); !st.ok()) {
      co_return st;
    }
  }
  auto wire = frames_wire(codec, static_cast<size_t>(size), static_cast<size_t>(batch));
  if (!wire.ok()) co_return wire.status();
  if (auto st = co_await coring::bench::echo_rounds(absl::MakeSpan(*streams), *wire, slab, state,
                                                    "frame", static_cast<size_t>(batch));
      !st.ok()) {
    co_return st;
  }
  state.SetItemsProcessed(state.iterations() * conns * batch);
  for (coring::net::Stream& conn : *streams) (void)co_await conn.close();
  co_return absl::OkStatus();
}

void BM_SbmpEcho(benchmark::State& state) {
  coring::bench::LoopbackBench b;
  if (!b.open(state, /*arena=*/true)) return;
  b.run(state, coring::bench::accept_all(b.listener(), 1, serve),
        clients(b.net(), b.address(), b.slab(), state, 1, state.range(0), state.range(1)));
}

void BM_SbmpEchoConns(benchmark::State& state) {
  coring::bench::LoopbackBench b;
  if (!b.open(state, /*arena=*/true)) return;
  b.run(state, coring::bench::accept_all(b.listener(), state.range(0), serve),
        clients(b.net(), b.address(), b.slab(), state, state.range(0), 64, state.range(1)));
}

BENCHMARK(BM_SbmpEcho)
    ->ArgNames({"size", "batch"})
    ->ArgsProduct({{64, 1024}, {1, 128}})
    ->Apply(coring::bench::iterations_from_environment);
BENCHMARK(BM_SbmpEchoConns)
    ->ArgNames({"conns", "batch"})
    ->Args({1000, 16})
    ->Apply(coring::bench::iterations_from_environment);

}  // namespace

BENCHMARK_MAIN();
