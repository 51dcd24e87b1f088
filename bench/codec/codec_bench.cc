// codec/ micro-benchmarks. Report medians of repetitions:
//   codec_bench --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
// allocs_per_frame counts heap allocations (operator new + malloc) per frame
// in the timed loop; steady state must show 0.
#include <array>
#include <cstdint>
#include <vector>

#include "alloc_counter.h"
#include "benchmark/benchmark.h"
#include "coring/codec/codec.h"
#include "coring/codec/crc16.h"
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

// The header code as first committed, kept as the baseline for
// BM_HeaderEncodeDecode: a load or store per byte and the 14 position-table
// lookups indexed by byte loads. Error details are not built (only the
// success path is timed).
namespace bytewise {

constexpr std::array<std::array<uint16_t, 256>, 14> make_tables() {
  std::array<std::array<uint16_t, 256>, 14> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint16_t crc = static_cast<uint16_t>(i << 8);
    for (int bit = 0; bit < 8; ++bit) {
      crc = static_cast<uint16_t>((crc & 0x8000) ? (crc << 1) ^ 0x1021 : crc << 1);
    }
    t[0][i] = crc;
  }
  for (size_t k = 1; k < 14; ++k) {
    for (size_t b = 0; b < 256; ++b) {
      uint16_t prev = t[k - 1][b];
      t[k][b] = static_cast<uint16_t>((prev << 8) ^ t[0][prev >> 8]);
    }
  }
  return t;
}
constexpr auto kByPosition = make_tables();

[[gnu::noinline]] uint16_t crc16_header(const uint8_t* p) {
  uint16_t a = kByPosition[13][p[0] ^ 0xFF] ^ kByPosition[12][p[1] ^ 0xFF];
  uint16_t b = kByPosition[11][p[2]] ^ kByPosition[10][p[3]] ^ kByPosition[9][p[4]];
  uint16_t c = kByPosition[8][p[5]] ^ kByPosition[7][p[6]] ^ kByPosition[6][p[7]];
  uint16_t d = kByPosition[5][p[8]] ^ kByPosition[4][p[9]] ^ kByPosition[3][p[10]];
  uint16_t e = kByPosition[2][p[11]] ^ kByPosition[1][p[12]] ^ kByPosition[0][p[13]];
  return static_cast<uint16_t>(a ^ b ^ c ^ d ^ e);
}
uint16_t load16(const uint8_t* p) { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
uint32_t load32(const uint8_t* p) {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3];
}
void store16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
void store32(uint8_t* p, uint32_t v) {
  p[0] = static_cast<uint8_t>(v >> 24);
  p[1] = static_cast<uint8_t>(v >> 16);
  p[2] = static_cast<uint8_t>(v >> 8);
  p[3] = static_cast<uint8_t>(v);
}

[[gnu::noinline]] void encode_header(const Header& h, uint8_t* out) {
  store32(out, kMagic);
  out[4] = h.version;
  out[5] = h.flags;
  store16(out + 6, h.type);
  store32(out + 8, h.length);
  store16(out + 12, h.ext_len);
  store16(out + 14, crc16_header(out));
}

[[gnu::noinline]] absl::StatusOr<Header> decode_header(const uint8_t* b,
                                                       const HeaderLimits& limits) {
  Header h;
  h.version = b[4];
  h.flags = b[5];
  h.type = load16(b + 6);
  h.length = load32(b + 8);
  h.ext_len = load16(b + 12);
  if (load32(b) != kMagic || crc16_header(b) != load16(b + 14) ||
      ((limits.majors >> version_major(h.version)) & 1) == 0 || (h.flags & ~kFlagChk) != 0 ||
      h.length > limits.max_frame ||
      (h.chk() ? (h.length < kTrailerSize || h.ext_len > h.length - kTrailerSize)
               : h.ext_len > h.length)) {
    return absl::InvalidArgumentError("bad header");
  }
  return h;
}

}  // namespace bytewise

// Header encode + decode + validate, as sender and receiver do per frame.
template <class Encode, class Decode>
void header_round_trip(benchmark::State& state, Encode encode, Decode decode) {
  uint8_t bytes[kHeaderSize];
  Header h{.type = 0x100, .length = 1000, .ext_len = 10};
  HeaderLimits limits;
  bool ok = true;
  auto body = [&] {
    benchmark::DoNotOptimize(h);
    encode(h, bytes);
    benchmark::DoNotOptimize(bytes);
    absl::StatusOr<Header> back = decode(bytes, limits);
    benchmark::DoNotOptimize(back);
    if (!back.ok()) ok = false;
    h.length += back.ok() ? 1 : 0;
    if (h.length > 1 << 20) h.length = 1000;
  };
  for (auto _ : state) body();
  if (!ok) state.SkipWithError("header did not decode");
  report_allocs(state, body, 1);
}

// encode_header in a lambda, called as a sender calls it: passed as a
// function pointer, GCC does not inline it.
void BM_HeaderEncodeDecode(benchmark::State& state) {
  header_round_trip(
      state, [](const Header& h, uint8_t* out) { encode_header(h, out); },
      [](const uint8_t* b, const HeaderLimits& limits) { return decode_header(b, limits, 0); });
}
BENCHMARK(BM_HeaderEncodeDecode);

void BM_HeaderEncodeDecode_Bytewise(benchmark::State& state) {
  header_round_trip(state, bytewise::encode_header, bytewise::decode_header);
}
BENCHMARK(BM_HeaderEncodeDecode_Bytewise);

// header_round_trip's loop with no header work at all: what the loop itself
// costs, to subtract from BM_HeaderEncodeDecode.
void BM_HeaderEncodeDecode_LoopOnly(benchmark::State& state) {
  header_round_trip(
      state, [](const Header&, uint8_t*) {},
      [](const uint8_t*, const HeaderLimits&) -> absl::StatusOr<Header> {
        return Header{.type = 0x100, .length = 1000, .ext_len = 10};
      });
}
BENCHMARK(BM_HeaderEncodeDecode_LoopOnly);

// Encode, then decode and validate, 64 different headers (types, lengths,
// extension lengths, CHK) per iteration, as a sender and a receiver do for a
// stream of frames: header after header, none waiting on the one before.
// time_per_header is the figure to read (the iteration's CPU time / 64).
template <class Encode, class Decode>
void header_batch(benchmark::State& state, Encode encode, Decode decode) {
  constexpr size_t kHeaders = 64;
  std::array<Header, kHeaders> headers;
  uint32_t x = 7;
  for (Header& h : headers) {
    x = x * 1103515245 + 12345;
    h.flags = (x >> 8) & kFlagChk;
    h.type = static_cast<uint16_t>(0x100 + (x >> 16) % 1000);
    h.length = 8 + (x >> 4) % (1 << 20);
    h.ext_len = static_cast<uint16_t>((x >> 12) % 4);
  }
  std::array<uint8_t, kHeaders * kHeaderSize> wire{};
  HeaderLimits limits;
  uint64_t sum = 0;
  bool ok = true;
  auto body = [&] {
    for (size_t i = 0; i < kHeaders; ++i) encode(headers[i], &wire[i * kHeaderSize]);
    benchmark::ClobberMemory();
    for (size_t i = 0; i < kHeaders; ++i) {
      absl::StatusOr<Header> h = decode(&wire[i * kHeaderSize], limits);
      if (!h.ok()) {
        ok = false;
      } else {
        sum += h->length + h->type;
      }
    }
    benchmark::DoNotOptimize(sum);
  };
  for (auto _ : state) body();
  if (!ok) state.SkipWithError("header did not decode");
  // CPU seconds per header (printed with an SI prefix: "9.8n" is 9.8 ns).
  state.counters["time_per_header"] = benchmark::Counter(
      kHeaders, benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
  report_allocs(state, body, kHeaders);
}

void BM_HeaderBatch(benchmark::State& state) {
  header_batch(
      state, [](const Header& h, uint8_t* out) { encode_header(h, out); },
      [](const uint8_t* b, const HeaderLimits& limits) { return decode_header(b, limits, 0); });
}
BENCHMARK(BM_HeaderBatch);

void BM_HeaderBatch_Bytewise(benchmark::State& state) {
  header_batch(state, bytewise::encode_header, bytewise::decode_header);
}
BENCHMARK(BM_HeaderBatch_Bytewise);

// The header CRC alone, on a stream of different headers (independent calls).
// The words are prepared outside the timed loop.
template <class Crc>
void header_crc(benchmark::State& state, Crc crc) {
  constexpr size_t kHeaders = 64;
  auto data = random_bytes(16 * kHeaders);
  std::vector<std::array<uint64_t, 2>> words(kHeaders);
  for (size_t h = 0; h < kHeaders; ++h) {
    for (int k = 0; k < 8; ++k) {
      words[h][0] = (words[h][0] << 8) | data[16 * h + k];
      words[h][1] = (words[h][1] << 8) | data[16 * h + 8 + k];
    }
  }
  size_t i = 0;
  for (auto _ : state) {
    size_t h = i++ % kHeaders;
    benchmark::DoNotOptimize(crc(data.data() + 16 * h, words[h][0], words[h][1]));
  }
}
void BM_Crc16HeaderClmul(benchmark::State& state) {
  if (!crc16_clmul_available()) {
    state.SkipWithError("no PCLMULQDQ");
    return;
  }
  header_crc(state,
             [](const uint8_t*, uint64_t hi, uint64_t lo) { return crc16_header_clmul(hi, lo); });
}
BENCHMARK(BM_Crc16HeaderClmul);
void BM_Crc16HeaderTable(benchmark::State& state) {
  header_crc(state,
             [](const uint8_t*, uint64_t hi, uint64_t lo) { return crc16_header_table(hi, lo); });
}
BENCHMARK(BM_Crc16HeaderTable);
void BM_Crc16HeaderBytewiseTable(benchmark::State& state) {
  header_crc(state, [](const uint8_t* p, uint64_t, uint64_t) { return bytewise::crc16_header(p); });
}
BENCHMARK(BM_Crc16HeaderBytewiseTable);
void BM_Crc16HeaderGeneric(benchmark::State& state) {
  header_crc(state, [](const uint8_t* p, uint64_t, uint64_t) {
    return crc16_ccitt_false(absl::MakeConstSpan(p, 14));
  });
}
BENCHMARK(BM_Crc16HeaderGeneric);

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
// reassembled (copied) once; the reassembly buffer is reused for frames up
// to Decoder::kKeptBuffer. A bigger frame's buffer grows as its bytes
// arrive and is given back after it (a connection keeps no such memory),
// so 1 MiB frames count about ten allocations each.
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
BENCHMARK(BM_DecodeSplitReads)->Arg(1024)->Arg(16384)->Arg(65536)->Arg(1 << 20);

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
