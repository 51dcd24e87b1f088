// pingpong_client: a load generator for sbmp_echo_server (and, with --raw,
// for the byte echo_server), built on coring.
//
//   pingpong_client --port=7000 --conns=64 --depth=4 --size=64 --duration=10s
//   pingpong_client --raw --unix=/tmp/echo.sock --json
//   pingpong_client --tls_ca=ca.pem --tls_server_name=localhost   # over TLS
//
// Every connection keeps --depth messages in flight (pipelined): a writer
// sends while the reader checks each echo byte for byte. A message's payload
// is a pattern derived from (connection id, sequence number); SBMP frames
// also carry the sequence number as REQUEST_ID. Prints msgs/s, MB/s (payload
// bytes echoed back), RTT percentiles and errors; a progress line each second
// on stderr. Stops after --duration (or SIGINT/SIGTERM): writers stop,
// every message in flight is awaited, connections close gracefully (SBMP:
// GOAWAY(NO_ERROR)). Exit 1 on any mismatch or error.
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <coroutine>
#include <cstdio>
#include <cstring>
#include <memory>
#include <stop_token>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "absl/time/time.h"
#include "command_line.h"
#include "coring/codec/codec.h"
#include "coring/core/event_loop.h"
#include "coring/core/runtime.h"
#include "coring/core/spawn.h"
#include "coring/core/task.h"
#include "coring/core/when_all.h"
#include "coring/net/framed_stream.h"
#include "coring/net/net_context.h"
#include "coring/net/socket_address.h"
#include "coring/net/stream.h"
#include "coring/tls/tls_context.h"
#include "coring/tls/tls_stream.h"
#include "latency_histogram.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "server address (numeric IPv4/IPv6 or localhost)");
ABSL_FLAG(uint16_t, port, 7000, "server TCP port");
ABSL_FLAG(std::string, unix, "", "connect to this Unix-domain socket path instead of TCP");
ABSL_FLAG(bool, raw, false, "raw bytes (against echo_server) instead of SBMP frames");
ABSL_FLAG(uint32_t, conns, 64, "connections");
ABSL_FLAG(uint32_t, size, 64, "payload bytes per message");
ABSL_FLAG(uint32_t, depth, 4, "messages in flight per connection");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(10), "how long to send (e.g. 10s, 500ms)");
ABSL_FLAG(uint32_t, threads, 1, "event-loop threads; connections are spread over them");
ABSL_FLAG(bool, hello, false, "SBMP: open with HELLO (offers CRC32C: frames then carry CHK)");
ABSL_FLAG(bool, json, false, "print the result as one JSON object instead of a table");
ABSL_FLAG(std::string, tls_ca, "",
          "speak TLS, verifying the server against these PEM trust anchors (empty with "
          "--tls_server_name: the system's)");
ABSL_FLAG(std::string, tls_server_name, "",
          "speak TLS; the name the server's certificate must carry (default: --host)");

namespace {

using coring::Task;
using coring::net::Stream;
using Clock = std::chrono::steady_clock;

constexpr uint16_t kEchoType = coring::sbmp::kFirstApplicationType;

struct Config {
  coring::net::SocketAddress address = coring::net::SocketAddress::ipv4_loopback(0);
  coring::tls::TlsContext* tls = nullptr;  // TLS when set
  std::string tls_server_name;
  bool raw = false;
  bool hello = false;
  uint32_t conns = 0;
  uint32_t size = 0;
  uint32_t depth = 0;
  uint32_t threads = 0;
  std::chrono::nanoseconds duration{};
};

// ---- Payload pattern: byte i of message (conn, seq) ----
uint64_t mix(uint64_t x) {  // splitmix64
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}
void fill_pattern(uint32_t conn, uint64_t seq, absl::Span<uint8_t> out) {
  const uint64_t seed = mix((uint64_t{conn} << 40) ^ seq);
  for (size_t i = 0; i < out.size(); i += 8) {
    const uint64_t word = mix(seed + i);
    std::memcpy(out.data() + i, &word, std::min<size_t>(8, out.size() - i));
  }
}

// ---- What each thread counts (written by its loop, read by main) ----
struct alignas(64) ThreadStats {
  std::atomic<uint64_t> msgs{0};
  std::atomic<uint64_t> bytes{0};
  std::atomic<uint64_t> errors{0};
  std::atomic<uint64_t> mismatches{0};
  std::atomic<uint32_t> connected{0};
  coring::examples::LatencyHistogram rtt;  // read once the thread is done
  std::string first_error;                 // likewise

  static void bump(std::atomic<uint64_t>& c, uint64_t n = 1) {  // single writer
    c.store(c.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void error(uint32_t conn, std::string_view what, const absl::Status& why) {
    bump(errors);
    if (first_error.empty()) {
      first_error = absl::StrFormat("conn %u: %s: %s: %s", conn, what,
                                    absl::StatusCodeToString(why.code()), why.message());
    }
  }
};

struct Shared {
  Config config;
  std::atomic<bool> stop{false};  // writers stop sending
  std::atomic<uint32_t> threads_done{0};
  std::vector<std::unique_ptr<ThreadStats>> stats;
  std::vector<std::unique_ptr<std::stop_source>> cancel;  // last resort, per thread
};

// One coroutine waits on it, another (same thread) wakes it.
class Baton {
 public:
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> h) noexcept { waiter_ = h; }
  void await_resume() const noexcept {}
  void wake() {
    if (waiter_) coring::EventLoop::current()->schedule(std::exchange(waiter_, {}));
  }

 private:
  std::coroutine_handle<> waiter_;
};

// One connection's pipeline: the writer may run `depth` messages ahead of
// the reader; send times are kept per slot (seq % depth) for the RTT.
struct Pipeline {
  Pipeline(const Shared& shared, ThreadStats& st, uint32_t id)
      : shared(shared),
        stats(st),
        id(id),
        send_buf(shared.config.size),
        expect(shared.config.size),
        sent_at(shared.config.depth) {}

  bool window_open() const { return sent - received < shared.config.depth; }
  bool writer_should_stop() const { return failed || shared.stop.load(std::memory_order_relaxed); }
  void on_send() {
    sent_at[sent % sent_at.size()] = Clock::now();
    ++sent;
    reader_baton.wake();
  }
  void on_echo() {
    const auto rtt = Clock::now() - sent_at[received % sent_at.size()];
    stats.rtt.record(static_cast<uint64_t>(std::chrono::nanoseconds(rtt).count()));
    ThreadStats::bump(stats.msgs);
    ThreadStats::bump(stats.bytes, shared.config.size);
    ++received;
    writer_baton.wake();
  }
  void fail(std::string_view what, const absl::Status& why) {
    if (!failed) stats.error(id, what, why);
    failed = true;
    writer_baton.wake();
    reader_baton.wake();
  }
  void mismatch(std::string_view what) {
    ThreadStats::bump(stats.mismatches);
    fail("mismatch", absl::DataLossError(absl::StrFormat("message %u: %s", received, what)));
  }
  // Reader: a message is outstanding (else wait for reader_baton), or none
  // will ever be.
  bool reader_may_go() const { return received < sent || failed || writer_done; }
  bool reader_should_stop() const { return received == sent || failed; }
  void finish_writing() {
    writer_done = true;
    reader_baton.wake();
  }

  const Shared& shared;
  ThreadStats& stats;
  uint32_t id;
  std::vector<uint8_t> send_buf;
  std::vector<uint8_t> expect;
  std::vector<Clock::time_point> sent_at;
  uint64_t sent = 0;
  uint64_t received = 0;
  bool writer_done = false;
  bool failed = false;
  Baton writer_baton;
  Baton reader_baton;
};

// ---- SBMP ----
// Conn: FramedStream<sbmp::Codec, S> for S = Stream or tls::TlsStream.
template <class Conn>
Task<> sbmp_writer(Conn& conn, Pipeline& p) {
  coring::sbmp::ExtensionBuilder ext;
  for (;;) {
    while (!p.window_open() && !p.writer_should_stop()) co_await p.writer_baton;
    if (p.writer_should_stop()) break;
    fill_pattern(p.id, p.sent, absl::MakeSpan(p.send_buf));
    ext.set_request_id(p.sent);
    auto frame = coring::sbmp::make_frame(kEchoType, p.send_buf, ext.view());
    p.on_send();  // before: the echo of a large frame may come back before the write returns
    // Copied (small) or sent from send_buf (large) before this returns.
    if (absl::Status s = co_await conn.write_frame(frame); !s.ok()) {
      p.fail("write", s);
      break;
    }
  }
  p.finish_writing();
}

template <class Conn>
Task<> sbmp_reader(Conn& conn, Pipeline& p) {
  for (;;) {
    while (!p.reader_may_go()) co_await p.reader_baton;
    if (p.reader_should_stop()) break;
    auto frame = co_await conn.read_frame();
    if (!frame.ok()) co_return p.fail("read", frame.status());
    fill_pattern(p.id, p.received, absl::MakeSpan(p.expect));
    std::optional<uint64_t> id = frame->extensions.request_id();
    if (frame->type() != kEchoType) co_return p.mismatch("wrong type");
    if (!id.has_value() || *id != p.received) co_return p.mismatch("wrong REQUEST_ID");
    if (!std::equal(frame->payload.begin(), frame->payload.end(), p.expect.begin(),
                    p.expect.end())) {
      co_return p.mismatch("payload differs");
    }
    p.on_echo();
  }
}

template <class S>
Task<> sbmp_connection(S stream, Pipeline& p) {
  using Conn = coring::net::FramedStream<coring::sbmp::Codec, S>;
  coring::sbmp::CodecOptions options{.role = coring::sbmp::Role::kClient,
                                     .send_hello = p.shared.config.hello,
                                     .agent = "coring-pingpong/0.1"};
  Conn conn(std::move(stream), coring::sbmp::Codec(options));
  co_await coring::when_all(sbmp_writer(conn, p), sbmp_reader(conn, p));
  (void)co_await conn.close();  // GOAWAY(NO_ERROR) after everything queued
}

// ---- Raw bytes: messages are `size` bytes of the byte stream ----
template <class S>
Task<> raw_writer(S& s, Pipeline& p) {
  for (;;) {
    while (!p.window_open() && !p.writer_should_stop()) co_await p.writer_baton;
    if (p.writer_should_stop()) break;
    fill_pattern(p.id, p.sent, absl::MakeSpan(p.send_buf));
    p.on_send();
    if (absl::Status st = co_await s.write(absl::MakeConstSpan(p.send_buf)); !st.ok()) {
      p.fail("write", st);
      break;
    }
  }
  p.finish_writing();
}

template <class S>
Task<> raw_reader(S& s, Pipeline& p) {
  size_t offset = 0;  // into the message being received
  for (;;) {
    while (!p.reader_may_go()) co_await p.reader_baton;
    if (p.reader_should_stop()) break;
    auto buf = co_await s.read();
    if (!buf.ok()) co_return p.fail("read", buf.status());
    if (buf->empty()) co_return p.fail("read", coring::net::end_of_stream_error());
    absl::Span<const uint8_t> in = buf->span();
    while (!in.empty()) {
      if (p.received == p.sent) co_return p.mismatch("more bytes than were sent");
      if (offset == 0) fill_pattern(p.id, p.received, absl::MakeSpan(p.expect));
      const size_t n = std::min(in.size(), p.expect.size() - offset);
      if (std::memcmp(in.data(), p.expect.data() + offset, n) != 0) {
        co_return p.mismatch("bytes differ");
      }
      in.remove_prefix(n);
      offset += n;
      if (offset == p.expect.size()) {
        offset = 0;
        p.on_echo();
      }
    }
  }
}

template <class S>
Task<> raw_connection(S stream, Pipeline& p) {
  co_await coring::when_all(raw_writer(stream, p), raw_reader(stream, p));
  absl::Status half_closed = absl::CancelledError("not tried");
  if (!p.failed) half_closed = co_await stream.shutdown_write();
  if (half_closed.ok()) {
    auto eof = co_await stream.read();  // the echo server closes after our EOF
    if (eof.ok() && !eof->empty()) p.mismatch("bytes after the last message");
  }
  (void)co_await stream.close();
}

Task<> connection(coring::net::NetContext& net, Shared& shared, ThreadStats& stats, uint32_t id) {
  auto stream =
      co_await Stream::connect(net, shared.config.address, {.timeout = std::chrono::seconds(5)});
  if (!stream.ok()) co_return stats.error(id, "connect", stream.status());
  Pipeline p(shared, stats, id);
  if (coring::tls::TlsContext* tls = shared.config.tls) {
    auto t = co_await coring::tls::TlsStream::connect(*tls, std::move(*stream),
                                                      shared.config.tls_server_name);
    if (!t.ok()) co_return stats.error(id, "TLS handshake", t.status());
    stats.connected.fetch_add(1, std::memory_order_relaxed);
    if (shared.config.raw) {
      co_await raw_connection(std::move(*t), p);
    } else {
      co_await sbmp_connection(std::move(*t), p);
    }
  } else {
    stats.connected.fetch_add(1, std::memory_order_relaxed);
    if (shared.config.raw) {
      co_await raw_connection(std::move(*stream), p);
    } else {
      co_await sbmp_connection(std::move(*stream), p);
    }
  }
  stats.connected.fetch_sub(1, std::memory_order_relaxed);
}

Task<> run_thread(coring::EventLoop& loop, Shared& shared, uint32_t index) {
  ThreadStats& stats = *shared.stats[index];
  auto net = coring::net::NetContext::create(loop, {});
  if (!net.ok()) {
    stats.error(0, "thread set-up", net.status());
  } else {
    std::vector<Task<>> conns;
    for (uint32_t id = index; id < shared.config.conns; id += shared.config.threads) {
      conns.push_back(connection(**net, shared, stats, id));
    }
    Task<> all = coring::when_all(std::move(conns));
    all.set_stop_token(shared.cancel[index]->get_token());
    co_await std::move(all);
  }
  shared.threads_done.fetch_add(1, std::memory_order_acq_rel);
}

// ---- Main thread ----
struct Totals {
  uint64_t msgs = 0, bytes = 0, errors = 0, mismatches = 0, connected = 0;
};
Totals totals(const Shared& shared) {
  Totals t;
  for (const auto& s : shared.stats) {
    t.msgs += s->msgs.load(std::memory_order_relaxed);
    t.bytes += s->bytes.load(std::memory_order_relaxed);
    t.errors += s->errors.load(std::memory_order_relaxed);
    t.mismatches += s->mismatches.load(std::memory_order_relaxed);
    t.connected += s->connected.load(std::memory_order_relaxed);
  }
  return t;
}

double seconds(Clock::duration d) { return std::chrono::duration<double>(d).count(); }

absl::StatusOr<Config> config_from_flags() {
  Config c;
  c.raw = absl::GetFlag(FLAGS_raw);
  c.hello = absl::GetFlag(FLAGS_hello);
  c.conns = absl::GetFlag(FLAGS_conns);
  c.size = absl::GetFlag(FLAGS_size);
  c.depth = absl::GetFlag(FLAGS_depth);
  c.threads = absl::GetFlag(FLAGS_threads);
  const absl::Duration d = absl::GetFlag(FLAGS_duration);
  const uint32_t max_size = coring::sbmp::kDefaultMaxFrame - 16;  // room for REQUEST_ID (+CHK)
  if (c.conns == 0 || c.conns > 100000)
    return absl::InvalidArgumentError("--conns must be 1..100000");
  if (c.depth == 0 || c.depth > 65536)
    return absl::InvalidArgumentError("--depth must be 1..65536");
  if (c.threads == 0 || c.threads > 256)
    return absl::InvalidArgumentError("--threads must be 1..256");
  if (c.size > max_size)
    return absl::InvalidArgumentError(absl::StrFormat("--size must be <= %u", max_size));
  if (c.raw && c.size == 0) return absl::InvalidArgumentError("--raw needs --size >= 1");
  if (c.raw && c.hello) return absl::InvalidArgumentError("--hello is for SBMP, not --raw");
  if (d <= absl::ZeroDuration() || d > absl::Hours(24)) {
    return absl::InvalidArgumentError("--duration must be > 0 and <= 24h");
  }
  c.duration = absl::ToChronoNanoseconds(d);
  const std::string unix_path = absl::GetFlag(FLAGS_unix);
  absl::StatusOr<coring::net::SocketAddress> a =
      !unix_path.empty() ? coring::net::SocketAddress::unix_path(unix_path)
      : absl::GetFlag(FLAGS_host).find(':') != std::string::npos
          ? coring::net::SocketAddress::parse(
                absl::StrFormat("[%s]:%u", absl::GetFlag(FLAGS_host), absl::GetFlag(FLAGS_port)))
          : coring::net::SocketAddress::parse(
                absl::StrFormat("%s:%u", absl::GetFlag(FLAGS_host), absl::GetFlag(FLAGS_port)));
  if (!a.ok()) return a.status();
  c.address = *a;
  return c;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "load generator for sbmp_echo_server (and, with --raw, echo_server).\n\n"
      "Usage: pingpong_client [--host=ADDR] [--port=N | --unix=PATH] [--raw] [--hello]\n"
      "                       [--conns=N] [--depth=N] [--size=BYTES] [--duration=10s]\n"
      "                       [--threads=N] [--json] [--tls_ca=PEM] [--tls_server_name=NAME]\n"
      "Keeps --depth messages in flight on each connection, checks every echoed byte,\n"
      "prints msgs/s, MB/s, RTT percentiles and errors. Exit 1 on any mismatch or error.");
  coring::examples::parse_command_line(argc, argv, /*max_positional=*/0);
  absl::StatusOr<Config> config = config_from_flags();
  if (!config.ok()) {
    std::fprintf(stderr, "pingpong_client: %s\n", std::string(config.status().message()).c_str());
    return 1;
  }
  std::unique_ptr<coring::tls::TlsContext> tls;
  if (!absl::GetFlag(FLAGS_tls_ca).empty() || !absl::GetFlag(FLAGS_tls_server_name).empty()) {
    auto t = coring::tls::TlsContext::client({.ca_file = absl::GetFlag(FLAGS_tls_ca)});
    if (!t.ok()) {
      std::fprintf(stderr, "pingpong_client: %s\n", t.status().ToString().c_str());
      return 1;
    }
    tls = std::move(*t);
    config->tls = tls.get();
    config->tls_server_name = absl::GetFlag(FLAGS_tls_server_name);
    if (config->tls_server_name.empty()) config->tls_server_name = absl::GetFlag(FLAGS_host);
  }
  sigset_t signals;  // SIGINT/SIGTERM end the run early (gracefully)
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  Shared shared;
  shared.config = *config;
  const Config& c = shared.config;
  for (uint32_t i = 0; i < c.threads; ++i) {
    shared.stats.push_back(std::make_unique<ThreadStats>());
    shared.cancel.push_back(std::make_unique<std::stop_source>());
  }
  coring::Runtime rt({.threads = c.threads});
  if (absl::Status s = rt.start(); !s.ok()) {
    std::fprintf(stderr, "pingpong_client: %s\n", s.ToString().c_str());
    return 1;
  }
  for (uint32_t i = 0; i < c.threads; ++i) {
    coring::spawn(rt.loop(i), run_thread(rt.loop(i), shared, i));
  }

  // Run for --duration with a progress line each second; then stop the
  // writers, wait for the echoes in flight (bounded), cancel what is stuck.
  const auto start = Clock::now();
  auto stop_at = start + c.duration;
  auto next_tick = start + std::chrono::seconds(1);
  Clock::time_point stopped_at{};
  Totals at_stop, last;
  bool cancelled = false;
  while (shared.threads_done.load(std::memory_order_acquire) < c.threads) {
    const auto now = Clock::now();
    if (!shared.stop.load() && now >= stop_at) {
      shared.stop.store(true);
      stopped_at = now;
      at_stop = totals(shared);
    }
    if (shared.stop.load() && !cancelled && now >= stopped_at + std::chrono::seconds(5)) {
      cancelled = true;
      std::fprintf(stderr, "pingpong_client: echoes still missing 5 s after the end: cancelling\n");
      for (auto& source : shared.cancel) source->request_stop();
    }
    if (cancelled && now >= stopped_at + std::chrono::seconds(10)) break;
    if (now >= next_tick) {
      const Totals t = totals(shared);
      absl::FPrintF(stderr, "[%3.0fs] %9u msgs/s %8.2f MB/s  conns %u/%u  errors %u\n",
                    seconds(now - start), t.msgs - last.msgs, double(t.bytes - last.bytes) / 1e6,
                    t.connected, c.conns, t.errors);
      last = t;
      next_tick += std::chrono::seconds(1);
    }
    const timespec tick{0, 50'000'000};
    const int sig = sigtimedwait(&signals, nullptr, &tick);
    if ((sig == SIGINT || sig == SIGTERM) && !shared.stop.load()) stop_at = Clock::now();
  }
  const bool finished = shared.threads_done.load(std::memory_order_acquire) == c.threads;
  if (!shared.stop.load()) {  // every connection ended before the duration: errors
    stopped_at = Clock::now();
    at_stop = totals(shared);
  }
  rt.stop();  // joins the threads: everything they wrote is visible now

  const Totals t = totals(shared);
  coring::examples::LatencyHistogram rtt;
  std::string first_error;
  for (const auto& s : shared.stats) {
    rtt.merge(s->rtt);
    if (first_error.empty()) first_error = s->first_error;
  }
  const uint64_t errors = t.errors + (finished ? 0 : 1);
  const double secs = std::max(seconds(stopped_at - start), 1e-9);
  const double rate = double(at_stop.msgs) / secs;
  const double mbps = double(at_stop.bytes) / secs / 1e6;
  auto us = [&](double q) { return double(rtt.percentile(q)) / 1e3; };
  const char* mode = c.raw ? "raw" : "sbmp";
  if (absl::GetFlag(FLAGS_json)) {
    absl::PrintF(
        "{\"mode\":\"%s\",\"address\":\"%s\",\"conns\":%u,\"depth\":%u,\"size\":%u,"
        "\"threads\":%u,\"hello\":%s,\"seconds\":%.3f,\"msgs\":%u,\"msgs_per_sec\":%.0f,"
        "\"mb_per_sec\":%.3f,\"rtt_us\":{\"p50\":%.1f,\"p99\":%.1f,\"p999\":%.1f,\"max\":%.1f,"
        "\"mean\":%.1f},\"errors\":%u,\"mismatches\":%u}\n",
        mode, c.address.to_string(), c.conns, c.depth, c.size, c.threads,
        c.hello ? "true" : "false", secs, t.msgs, rate, mbps, us(0.5), us(0.99), us(0.999),
        double(rtt.max()) / 1e3, rtt.mean() / 1e3, errors, t.mismatches);
  } else {
    absl::PrintF("pingpong_client: %s %s, %u conns x depth %u, %u-byte payloads, %u thread(s)%s\n",
                 mode, c.address.to_string(), c.conns, c.depth, c.size, c.threads,
                 c.hello ? ", HELLO" : "");
    absl::PrintF("  %-10s %12u in %.2f s (+%u in flight at the end)\n", "messages", at_stop.msgs,
                 secs, t.msgs - at_stop.msgs);
    absl::PrintF("  %-10s %12.0f msgs/s\n", "rate", rate);
    absl::PrintF("  %-10s %12.2f MB/s of payload echoed\n", "throughput", mbps);
    absl::PrintF("  %-10s p50 %.1f us  p99 %.1f us  p999 %.1f us  max %.1f us\n", "rtt", us(0.5),
                 us(0.99), us(0.999), double(rtt.max()) / 1e3);
    absl::PrintF("  %-10s %12u (mismatches %u)\n", "errors", errors, t.mismatches);
  }
  std::fflush(stdout);
  if (!first_error.empty())
    absl::FPrintF(stderr, "pingpong_client: first error: %s\n", first_error);
  if (!finished) absl::FPrintF(stderr, "pingpong_client: connections did not finish\n");
  return errors == 0 ? 0 : 1;
}
