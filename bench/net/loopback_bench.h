// LoopbackBench: what a net/ benchmark of loopback connections sets up - an
// EventLoop with a SlabPool as its frame allocator (as Runtime installs one)
// and, if asked, a registered BufferArena; a NetContext on it; a listener on
// 127.0.0.1 - and how it runs: the server task spawned, the client task to
// its end, then the loop turned until the server's streams are gone, before
// the context goes (a stream must not outlive its context: its receive
// channel reads into the context's buffer ring).
//
//   LoopbackBench b;
//   if (!b.open(state, /*arena=*/true)) return;  // skipped with the reason
//   b.run(state, serve(b.listener()), client(b.net(), b.address(), b.slab(), state));
#pragma once

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "alloc_counter.h"
#include "coring/core/event_loop.h"
#include "coring/core/spawn.h"
#include "coring/core/task.h"
#include "coring/core/timer.h"
#include "coring/net/listener.h"
#include "coring/net/net_context.h"
#include "coring/net/socket_address.h"
#include "coring/net/stream.h"
#include "coring/net/stream_state.h"
#include "coring/pool/buffer_arena.h"
#include "coring/pool/slab_pool.h"

namespace coring::bench {

class LoopbackBench {
 public:
  LoopbackBench() = default;
  LoopbackBench(const LoopbackBench&) = delete;
  LoopbackBench& operator=(const LoopbackBench&) = delete;
  ~LoopbackBench() {
    if (stuck_) {
      // Streams still held by handlers that would not finish: tearing down
      // under them would free what they use. Left to the process's exit.
      (void)listener_.release();
      (void)net_.release();
      (void)loop_.release();
      return;
    }
    listener_.reset();
    net_.reset();
  }

  // False (the benchmark skipped with the reason) when a part cannot be made.
  bool open(benchmark::State& state, bool arena) {
    LoopOptions options;
    options.slab_pool = &slab_;
    if (arena) {
      auto a = pool::BufferArena::create({});
      if (!a.ok()) return skip(state, a.status());
      arena_.emplace(std::move(*a));
      options.arena = &*arena_;
    }
    auto loop = EventLoop::create(std::move(options));
    if (!loop.ok()) return skip(state, loop.status());
    loop_ = std::move(*loop);
    auto net = net::NetContext::create(*loop_);
    if (!net.ok()) return skip(state, net.status());
    net_ = std::move(*net);
    auto listener = net::Listener::bind(*net_, net::SocketAddress::ipv4_loopback(0));
    if (!listener.ok()) return skip(state, listener.status());
    listener_ = std::move(*listener);
    auto address = listener_->local_address();
    if (!address.ok()) return skip(state, address.status());
    address_.emplace(*address);
    return true;
  }

  pool::SlabPool& slab() { return slab_; }
  net::NetContext& net() { return *net_; }
  net::Listener& listener() { return *listener_; }
  const net::SocketAddress& address() const { return *address_; }

  // Spawns `server`, runs `client` to its end (its error skips the
  // benchmark), then lets the server see the goodbye and finish.
  void run(benchmark::State& state, Task<> server, Task<absl::Status> client) {
    spawn(*loop_, std::move(server));
    if (const absl::Status s = loop_->block_on(std::move(client)); !s.ok()) {
      state.SkipWithError(s.ToString().c_str());
    }
    if (const absl::Status s = loop_->block_on(streams_closed()); !s.ok()) {
      state.SkipWithError(s.ToString().c_str());
    }
  }

 private:
  // Waits for the server's handlers to see the client's goodbye and close
  // their streams: a few turns, longer on a busy host (a fixed number of
  // turns without waiting was once too few, in a full bench/run.sh, and the
  // context went with a stream still open). Streams still open after kWait
  // are cut short; handlers that do not finish even then are an error
  // (stuck_).
  Task<absl::Status> streams_closed() {
    constexpr auto kWait = std::chrono::seconds(5);
    const auto start = std::chrono::steady_clock::now();
    bool killed = false;
    while (net_->live_streams() > 0) {
      const auto waited = std::chrono::steady_clock::now() - start;
      if (!killed && waited >= kWait) {
        killed = true;
        net_->for_each_stream([](net::detail::StreamState& s) {
          s.kill(absl::DeadlineExceededError("benchmark over"));
        });
      } else if (killed && waited >= kWait + std::chrono::seconds(1)) {
        stuck_ = true;
        co_return absl::InternalError(absl::StrFormat(
            "%u server streams still open after they were cut short", net_->live_streams()));
      }
      if (auto st = co_await sleep_for(std::chrono::milliseconds(1)); !st.ok()) co_return st;
    }
    if (killed) co_return absl::DeadlineExceededError("the server's streams did not close in 5 s");
    co_return absl::OkStatus();
  }

  static bool skip(benchmark::State& state, const absl::Status& why) {
    state.SkipWithError(why.ToString().c_str());
    return false;
  }

  // Destroyed in reverse: the listener and context (~LoopbackBench), the
  // loop, then the memory it used.
  pool::SlabPool slab_;
  std::optional<pool::BufferArena> arena_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<net::NetContext> net_;
  std::unique_ptr<net::Listener> listener_;
  std::optional<net::SocketAddress> address_;
  bool stuck_ = false;
};

// The measured loop of a client of plain Streams: per iteration it writes
// `wire` on each of `streams` in turn, then reads each echo back and
// compares. With many connections (the load generator's many-connection
// cells, in one process) each connection's state, at both ends, is touched
// once per iteration, after every other connection's: what a message costs
// when that state has left the cache (bench/instructions.sh counts the
// misses). The first rounds (pools, buffers, lazily made state: 100 with
// one connection, 10 with more) are not timed: KeepRunning() starts the
// clock on its first call. One coroutine for the whole loop (a helper per
// round would be a slab allocation per round). Sets the counters
// allocs_per_<unit> (heap), slab_allocs_per_<unit> and ns_per_<unit>,
// `per_connection` units to a connection's iteration.
inline Task<absl::Status> echo_rounds(absl::Span<net::Stream> streams,
                                      absl::Span<const uint8_t> wire, pool::SlabPool& slab,
                                      benchmark::State& state, std::string unit,
                                      size_t per_connection) {
  std::vector<uint8_t> got;
  got.reserve(wire.size());
  const int warm_up = streams.size() == 1 ? 100 : 10;
  uint64_t slab_before = 0;
  std::optional<AllocCounter> allocs;
  for (int i = 0; i < warm_up || state.KeepRunning(); ++i) {
    for (net::Stream& conn : streams) {
      if (auto st = co_await conn.write(wire); !st.ok()) co_return st;
    }
    for (net::Stream& conn : streams) {
      got.clear();
      while (got.size() < wire.size()) {
        auto buf = co_await conn.read();
        if (!buf.ok()) co_return buf.status();
        if (buf->empty()) co_return absl::DataLossError("the server closed the connection");
        got.insert(got.end(), buf->span().begin(), buf->span().end());
      }
      if (!std::equal(got.begin(), got.end(), wire.begin(), wire.end())) {
        co_return absl::DataLossError("the echo differs from what was sent");
      }
    }
    if (i == warm_up - 1) {
      slab_before = slab.stats().allocs_total;
      allocs.emplace();
    }
  }
  const auto units = static_cast<double>(state.iterations()) *
                     static_cast<double>(streams.size() * per_connection);
  state.counters["allocs_per_" + unit] =
      benchmark::Counter(static_cast<double>(allocs->count()) / units);
  state.counters["slab_allocs_per_" + unit] =
      benchmark::Counter(static_cast<double>(slab.stats().allocs_total - slab_before) / units);
  state.counters["ns_per_" + unit] =
      benchmark::Counter(units, benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  co_return absl::OkStatus();
}

// The server side of a loopback benchmark: `conns` connections accepted,
// each served by handler(stream) (a Task<>), spawned.
template <class Handler>
Task<> accept_all(net::Listener& listener, int64_t conns, Handler handler) {
  for (int64_t i = 0; i < conns; ++i) {
    auto s = co_await listener.accept();
    if (!s.ok()) co_return;
    spawn(listener.context().loop(), handler(std::move(*s)));
  }
}

// `conns` client connections to `addr`.
inline Task<absl::StatusOr<std::vector<net::Stream>>> connect_all(net::NetContext& net,
                                                                  net::SocketAddress addr,
                                                                  int64_t conns) {
  std::vector<net::Stream> streams;
  for (int64_t i = 0; i < conns; ++i) {
    auto c = co_await net::Stream::connect(net, addr);
    if (!c.ok()) co_return c.status();
    streams.push_back(std::move(*c));
  }
  co_return streams;
}

// Apply()'d to a loopback benchmark: with CORING_BENCH_ITERATIONS=N in the
// environment it runs exactly N iterations, once, instead of as many as fill
// --benchmark_min_time (and the trial runs that find that many). Two runs
// of different N then differ by (N2 - N1) iterations of work and nothing
// else: bench/instructions.sh counts instructions per message so.
inline void iterations_from_environment(benchmark::internal::Benchmark* b) {
  const char* text = std::getenv("CORING_BENCH_ITERATIONS");
  if (text == nullptr) return;
  char* end = nullptr;
  errno = 0;
  const long long n = std::strtoll(text, &end, 10);
  if (*text == '\0' || *end != '\0' || errno != 0 || n <= 0) {
    std::fprintf(stderr, "CORING_BENCH_ITERATIONS must be a positive integer, got '%s'\n", text);
    std::exit(2);
  }
  b->Iterations(static_cast<benchmark::IterationCount>(n));
}

}  // namespace coring::bench
