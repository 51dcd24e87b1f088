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
    if (!(co_await conn.write_frame(*frame)).ok()) break;
  }
  (void)co_await conn.close();
}

Task<> accept_one(coring::net::Listener& listener) {
  auto s = co_await listener.accept();
  if (!s.ok()) co_return;
  // As sbmp_echo_server: frames split across receive buffers echoed in place.
  co_await echo(Framed(std::move(*s), coring::sbmp::Codec(), {.split_payloads = true}));
}

Task<absl::Status> client(coring::net::NetContext& net, coring::net::SocketAddress addr,
                          coring::pool::SlabPool& slab, benchmark::State& state) {
  auto c = co_await coring::net::Stream::connect(net, addr);
  if (!c.ok()) co_return c.status();
  coring::net::Stream conn = std::move(*c);
  // The handshake, by a client Codec; the frames are then encoded once.
  // No features, as bench/loadgen: no CRC-32C trailers.
  coring::sbmp::Codec codec({.role = coring::sbmp::Role::kClient, .features = 0});
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
  const std::vector<uint8_t> payload(static_cast<size_t>(state.range(0)), 0x5a);
  const auto batch = static_cast<size_t>(state.range(1));
  std::vector<uint8_t> wire;
  for (size_t i = 0; i < batch; ++i) {
    coring::sbmp::Codec::Encoded encoded;
    if (auto st = codec.encode(coring::sbmp::make_frame(0x100, payload), encoded); !st.ok()) {
      co_return st;
    }
    for (auto part : encoded.parts()) wire.insert(wire.end(), part.begin(), part.end());
  }
  if (auto st = co_await coring::bench::echo_rounds(conn, wire, slab, state, "frame", batch);
      !st.ok()) {
    co_return st;
  }
  const auto frames = static_cast<double>(state.iterations() * batch);
  state.counters["ns_per_frame"] =
      benchmark::Counter(frames, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetItemsProcessed(static_cast<int64_t>(frames));
  (void)co_await conn.close();
  co_return absl::OkStatus();
}

void BM_SbmpEcho(benchmark::State& state) {
  coring::bench::LoopbackBench b;
  if (!b.open(state, /*arena=*/true)) return;
  b.run(state, accept_one(b.listener()), client(b.net(), b.address(), b.slab(), state));
}

BENCHMARK(BM_SbmpEcho)
    ->ArgNames({"size", "batch"})
    ->ArgsProduct({{64, 1024}, {1, 128}})
    ->Apply(coring::bench::iterations_from_environment);

}  // namespace

BENCHMARK_MAIN();
