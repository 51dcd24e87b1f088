// codec/ micro-benchmarks. Report medians of repetitions:
//   codec_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// allocs_per_frame counts heap allocations (operator new + malloc) per frame
// in the timed loop; steady state must show 0.
#include <cstdint>
#include <vector>

#include "alloc_counter.h"
#include "benchmark/benchmark.h"
#include "coring/codec/codec.h"
#include "coring/codec/crc32c.h"
#include "coring/codec/decoder.h"
#include "coring/codec/encoder.h"
#include "coring/codec/header.h"

namespace coring::sbmp {
namespace {

using bench::AllocCounter;

// Runs `body` (which handles `frames_per_call` frames) 1000 more times after
// the timed loop, counting only its own allocations: the timed loop's count
// would include Google Benchmark's bookkeeping.
template <class Body>
void report_allocs(benchmark::State& state, Body&& body, double frames_per_call) {
  constexpr int kCalls = 1000;
  AllocCounter counter;
  for (int i = 0; i < kCalls; ++i) body();
  state.counters["allocs_per_frame"] =
      benchmark::Counter(static_cast<double>(counter.count()) / (kCalls * frames_per_call));
}

std::vector<uint8_t> random_bytes(size_t n) {
  std::vector<uint8_t> v(n);
  uint32_t x = 12345;
  for (uint8_t& b : v) {
    x = x * 1103515245 + 12345;
    b = static_cast<uint8_t>(x >> 16);
  }
  return v;
}

// Header encode + decode + validate, as sender and receiver do per frame.
void BM_HeaderEncodeDecode(benchmark::State& state) {
  uint8_t bytes[kHeaderSize];
  Header h{.type = 0x100, .length = 1000, .ext_len = 10};
  HeaderLimits limits;
  auto body = [&] {
    benchmark::DoNotOptimize(h);
    encode_header(h, bytes);
    benchmark::DoNotOptimize(bytes);
    absl::StatusOr<Header> back = decode_header(bytes, limits, 0);
    benchmark::DoNotOptimize(back);
    h.length += back.ok() ? 1 : 0;
    if (h.length > 1 << 20) h.length = 1000;
  };
  for (auto _ : state) body();
  report_allocs(state, body, 1);
}
BENCHMARK(BM_HeaderEncodeDecode);

void BM_Crc32cHardware(benchmark::State& state) {
  if (!crc32c_hardware_available()) {
    state.SkipWithError("no SSE4.2");
    return;
  }
  auto data = random_bytes(static_cast<size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(crc32c_hardware(data));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Crc32cHardware)->Arg(64)->Arg(1024)->Arg(16384);

void BM_Crc32cTable(benchmark::State& state) {
  auto data = random_bytes(static_cast<size_t>(state.range(0)));
  for (auto _ : state) benchmark::DoNotOptimize(crc32c_table(data));
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_Crc32cTable)->Arg(64)->Arg(1024)->Arg(16384);

// A stream of whole frames with `payload` bytes each, about 4 MiB in all.
std::vector<uint8_t> make_stream(size_t payload, bool chk, size_t* frames) {
  auto body = random_bytes(payload);
  ExtensionBuilder ext;
  ext.set_request_id(7);
  Frame f = make_frame(0x100, body, ext.view());
  size_t frame_size = kHeaderSize + ext.size() + payload + (chk ? kTrailerSize : 0);
  *frames = std::max<size_t>(1, (4u << 20) / frame_size);
  std::vector<uint8_t> stream(*frames * frame_size);
  for (size_t i = 0; i < *frames; ++i) {
    (void)encode_frame(f, {.chk = chk}, absl::MakeSpan(stream).subspan(i * frame_size, frame_size));
  }
  return stream;
}

// Streaming decode of contiguous frames: views into the input, no copy.
void decode_stream(benchmark::State& state, bool chk) {
  size_t frames = 0;
  auto stream = make_stream(static_cast<size_t>(state.range(0)), chk, &frames);
  Decoder decoder({.max_frame = 2u << 20});
  bool ok = true;
  auto body = [&] {
    absl::Span<const uint8_t> in(stream);
    for (;;) {
      auto next = decoder.next(in);
      if (!next.ok()) ok = false;
      if (!next.ok() || !next->has_value()) break;
      benchmark::DoNotOptimize((*next)->payload.data());
    }
  };
  for (auto _ : state) body();
  if (!ok) state.SkipWithError("decode failed");
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
  state.counters["frames_per_s"] = benchmark::Counter(
      static_cast<double>(state.iterations() * frames), benchmark::Counter::kIsRate);
  report_allocs(state, body, static_cast<double>(frames));
}

void BM_DecodeStream(benchmark::State& state) { decode_stream(state, false); }
BENCHMARK(BM_DecodeStream)->Arg(64)->Arg(1024)->Arg(16384)->Arg(1 << 20);

void BM_DecodeStreamChk(benchmark::State& state) { decode_stream(state, true); }
BENCHMARK(BM_DecodeStreamChk)->Arg(64)->Arg(1024)->Arg(16384)->Arg(1 << 20);

// Decode of a stream cut into 4 KiB reads: frames split across reads are
// reassembled (copied) once; the reassembly buffer is reused.
void BM_DecodeSplitReads(benchmark::State& state) {
  size_t frames = 0;
  auto stream = make_stream(static_cast<size_t>(state.range(0)), false, &frames);
  Decoder decoder({.max_frame = 2u << 20});
  constexpr size_t kRead = 4096;
  auto body = [&] {
    for (size_t pos = 0; pos < stream.size(); pos += kRead) {
      absl::Span<const uint8_t> in = absl::MakeConstSpan(stream).subspan(pos, kRead);
      for (;;) {
        auto next = decoder.next(in);
        if (!next.ok() || !next->has_value()) break;
        benchmark::DoNotOptimize((*next)->payload.data());
      }
    }
  };
  body();  // the reassembly buffer grows once
  for (auto _ : state) body();
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * stream.size()));
  report_allocs(state, body, static_cast<double>(frames));
}
BENCHMARK(BM_DecodeSplitReads)->Arg(1024)->Arg(16384)->Arg(1 << 20);

// Encode to a scatter list (payload not copied), without and with CHK.
void BM_Encode(benchmark::State& state) {
  auto payload = random_bytes(static_cast<size_t>(state.range(0)));
  bool chk = state.range(1) != 0;
  ExtensionBuilder ext;
  ext.set_request_id(7);
  Frame f = make_frame(0x100, payload, ext.view());
  EncodedFrame encoded;
  auto body = [&] {
    benchmark::DoNotOptimize(encode_frame(f, {.chk = chk}, encoded));
    benchmark::DoNotOptimize(encoded.parts().data());
  };
  for (auto _ : state) body();
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
  report_allocs(state, body, 1);
}
BENCHMARK(BM_Encode)->ArgsProduct({{64, 1024, 16384}, {0, 1}});

// A server Codec echoing frames (decode + encode), CRC32C negotiated.
void BM_CodecEcho(benchmark::State& state) {
  Codec client({.role = Role::kClient});
  Codec server;
  auto pump = [](Codec& from, Codec& to) {
    std::vector<uint8_t> wire(from.pending_output().begin(), from.pending_output().end());
    from.consume_output(wire.size());
    absl::Span<const uint8_t> in(wire);
    while (to.decode(in).value_or(std::nullopt)) {
    }
  };
  pump(client, server);
  pump(server, client);
  auto payload = random_bytes(static_cast<size_t>(state.range(0)));
  Codec::Encoded request;
  (void)client.encode(make_frame(0x100, payload), request);
  std::vector<uint8_t> wire;
  for (auto part : request.parts()) wire.insert(wire.end(), part.begin(), part.end());
  Codec::Encoded echo;
  bool ok = true;
  auto body = [&] {
    absl::Span<const uint8_t> in(wire);
    auto f = server.decode(in);
    if (!f.ok() || !f->has_value() || !server.encode(**f, echo).ok()) ok = false;
    benchmark::DoNotOptimize(echo.parts().data());
  };
  for (auto _ : state) body();
  if (!ok) state.SkipWithError("echo failed");
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) * state.range(0));
  report_allocs(state, body, 1);
}
BENCHMARK(BM_CodecEcho)->Arg(64)->Arg(1024)->Arg(16384);

}  // namespace
}  // namespace coring::sbmp

BENCHMARK_MAIN();
