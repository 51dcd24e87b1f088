// sbmp_echo_server: echoes every SBMP application frame - same type,
// extensions and payload, sent from the receive buffer(s) without a copy
// (a frame split across two receive buffers too: FramedOptions::split_payloads).
// PING, HELLO and protocol errors are handled by FramedStream<sbmp::Codec>.
//
//   sbmp_echo_server --port=0 --host=127.0.0.1 --threads=1 --stats
//   -> "listening on 127.0.0.1:NNNNN" on stdout's first line
//   sbmp_echo_server --tls_cert=cert.pem --tls_key=key.pem    # the same over TLS
//
// SIGINT/SIGTERM: stop accepting, answer the frames already received,
// GOAWAY(SHUTDOWN) to every peer, exit 0 - or 2 when some connection had to
// be aborted at --shutdown_deadline (a peer that never reads). SIGUSR1 (with
// --stats): print stats.
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "command_line.h"
#include "coring/codec/codec.h"
#include "coring/core/runtime.h"
#include "coring/net/server.h"
#include "coring/pool/system_heap.h"
#include "coring/tls/tls_server.h"
#include "millis_flag.h"
#include "runtime_stats.h"

ABSL_FLAG(uint16_t, port, 7000, "TCP port to listen on (0: pick one)");
ABSL_FLAG(std::string, host, "0.0.0.0", "address to listen on");
ABSL_FLAG(std::string, unix, "", "listen on this Unix-domain socket path instead of TCP");
ABSL_FLAG(size_t, threads, 0, "event-loop threads (0: one per CPU)");
ABSL_FLAG(uint32_t, max_frame, coring::sbmp::kDefaultMaxFrame, "largest frame length accepted");
ABSL_FLAG(coring::examples::Millis, idle_timeout, {std::chrono::seconds(60)},
          "close peers that sent nothing for this long (ms or 30s; 0: never)");
ABSL_FLAG(coring::examples::Millis, frame_timeout, {std::chrono::seconds(30)},
          "close peers whose started frame is not complete after this long (0: never)");
ABSL_FLAG(coring::examples::Millis, shutdown_deadline, {std::chrono::seconds(5)},
          "on SIGINT/SIGTERM, abort connections still open after this long");
ABSL_FLAG(size_t, max_connections, 0,
          "connections served at once; more get GOAWAY(OVERLOADED) (0: RLIMIT_NOFILE)");
ABSL_FLAG(size_t, max_partial_frame_mib, 64,
          "per-thread memory for partially received frames, MiB; past it GOAWAY(OVERLOADED) "
          "(0: no limit)");
ABSL_FLAG(uint32_t, recv_buffers, coring::net::NetOptions{}.recv_buffers,
          "buffers in each thread's shared receive ring (a power of two)");
ABSL_FLAG(uint32_t, recv_buffer_size, coring::net::NetOptions{}.recv_buffer_size,
          "bytes per receive buffer");
ABSL_FLAG(uint32_t, max_recv_buffers, coring::net::NetOptions{}.max_recv_buffers,
          "how far the receive ring may grow under load (a power of two; "
          "<= --recv_buffers: fixed)");
ABSL_FLAG(uint32_t, recv_share, coring::net::NetOptions{}.recv_share,
          "receive buffers one connection may hold unread before its recv pauses");
ABSL_FLAG(uint32_t, send_share, coring::net::NetOptions{}.send_share,
          "received buffers one connection's send queue may hold (0: none; past it, "
          "echoes are copied or wait for their send)");
ABSL_FLAG(bool, receive_in_place, coring::net::FramedOptions{}.receive_in_place,
          "receive the rest of frames larger than a receive buffer straight into the "
          "frame's buffer (FramedOptions::receive_in_place)");
ABSL_FLAG(size_t, pipelined_receive_buffer, coring::net::FramedOptions{}.pipelined_receive_buffer,
          "grow the socket receive buffer of a peer that pipelines frames received in place "
          "to this many bytes (FramedOptions::pipelined_receive_buffer; 0: leave it to the "
          "kernel)");
ABSL_FLAG(bool, split_payloads, true,
          "echo a frame that arrived split across two receive buffers from both, without "
          "reassembling it (FramedOptions::split_payloads)");
ABSL_FLAG(size_t, heap_mmap_threshold, 128 << 10,
          "heap blocks (frame buffers) of at least this many bytes are mapped on their own "
          "and given back to the system when freed; 0: glibc's adaptive threshold, which "
          "after a burst of large frames keeps such blocks for good (pool/system_heap.h)");
ABSL_FLAG(bool, stats, false, "print ring/pool/connection stats on exit and on SIGUSR1");
ABSL_FLAG(std::string, tls_cert, "", "serve TLS with this PEM certificate chain (needs --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "the PEM private key of --tls_cert");

// Conn: FramedStream<sbmp::Codec>, or FramedStream<sbmp::Codec, tls::TlsStream> with --tls_cert.
template <class Conn>
coring::Task<> echo(Conn conn) {
  for (;;) {
    auto frame = co_await conn.read_frame();  // a view into the receive buffer
    if (!frame.ok()) co_return;  // EOF, GOAWAY, protocol error, shutdown: already closed
    // Then the frames already received, each without an awaiter.
    bool written;
    do {
      const absl::Status st = co_await conn.write_frame(*frame);  // type, extensions, payload:
      written = st.ok();                                          // no copy
    } while (written && conn.try_read_frame(*frame));
    if (!written) break;
  }
  (void)co_await conn.close();
}

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "echoes every SBMP/1.3 application frame.\n\n"
      "Usage: sbmp_echo_server [--port=N] [--host=ADDR] [--threads=N] [--unix=PATH]\n"
      "                        [--max_frame=N] [--idle_timeout=D] [--frame_timeout=D]\n"
      "                        [--max_connections=N] [--max_partial_frame_mib=N]\n"
      "                        [--shutdown_deadline=D] [--recv_buffers=N]\n"
      "                        [--recv_buffer_size=BYTES] [--max_recv_buffers=N] [--recv_share=N]\n"
      "                        [--send_share=N]\n"
      "                        [--receive_in_place=BOOL] [--split_payloads=BOOL]\n"
      "                        [--pipelined_receive_buffer=BYTES]\n"
      "                        [--heap_mmap_threshold=BYTES] [--stats]\n"
      "                        [--tls_cert=PEM --tls_key=PEM]\n"
      "Prints \"listening on ADDR:PORT\" first. SIGINT/SIGTERM: GOAWAY to every peer,\n"
      "exit 0 (2 if connections had to be aborted); SIGUSR1 (with --stats): print stats.");
  coring::examples::parse_command_line(argc, argv, /*max_positional=*/0);
  const uint32_t max_frame = absl::GetFlag(FLAGS_max_frame);
  // Below a peer's largest control frame (GOAWAY with its longest reason,
  // and a trailer), a conforming peer's goodbye would break the limit.
  constexpr size_t kMinMaxFrame = coring::sbmp::kMaxGoawayPayload + coring::sbmp::kTrailerSize;
  if (max_frame < kMinMaxFrame) {
    std::fprintf(stderr,
                 "sbmp_echo_server: --max_frame must be at least %zu (a peer's largest control "
                 "frame: GOAWAY with a %zu-byte reason, and its trailer)\n",
                 kMinMaxFrame, coring::sbmp::kMaxGoawayReason);
    return 1;
  }
  // (In bytes it must fit a size_t: a larger number would wrap to a small budget.)
  constexpr size_t kMaxPartialMib = size_t{1} << 30;  // 1 PiB
  if (absl::GetFlag(FLAGS_max_partial_frame_mib) > kMaxPartialMib) {
    std::fprintf(stderr, "sbmp_echo_server: --max_partial_frame_mib must be at most %zu\n",
                 kMaxPartialMib);
    return 1;
  }
  // Before the threads start: the setting is the process's.
  if (const size_t threshold = absl::GetFlag(FLAGS_heap_mmap_threshold); threshold != 0) {
    const absl::Status s = coring::pool::pin_heap_mmap_threshold(threshold);
    if (absl::IsInvalidArgument(s)) {
      std::fprintf(stderr, "sbmp_echo_server: --heap_mmap_threshold: %s\n",
                   std::string(s.message()).c_str());
      return 1;
    }
    // Unimplemented: not glibc's allocator (a sanitizer's), nothing to pin.
    if (!s.ok() && !absl::IsUnimplemented(s)) {
      std::fprintf(stderr, "sbmp_echo_server: %s (going on)\n", s.ToString().c_str());
    }
  }
  sigset_t signals;  // blocked before the threads start, so only sigwait() sees them
  sigemptyset(&signals);
  for (int sig : {SIGINT, SIGTERM, SIGUSR1}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  // Rings sized for thousands of busy connections (as bench/'s raw liburing
  // server): a multishot recv per connection can post many CQEs per turn.
  coring::Runtime rt(
      {.threads = absl::GetFlag(FLAGS_threads), .ring = {.sq_entries = 2048, .cq_entries = 16384}});
  coring::net::Server server(
      rt, {.port = absl::GetFlag(FLAGS_port),
           .host = absl::GetFlag(FLAGS_host),
           .unix_path = absl::GetFlag(FLAGS_unix),
           .net = {.recv_buffers = absl::GetFlag(FLAGS_recv_buffers),
                   .recv_buffer_size = absl::GetFlag(FLAGS_recv_buffer_size),
                   .max_recv_buffers = absl::GetFlag(FLAGS_max_recv_buffers),
                   .recv_share = absl::GetFlag(FLAGS_recv_share),
                   .send_share = absl::GetFlag(FLAGS_send_share),
                   .max_partial_frame_bytes = absl::GetFlag(FLAGS_max_partial_frame_mib) << 20},
           .framed = {.receive_in_place = absl::GetFlag(FLAGS_receive_in_place),
                      .pipelined_receive_buffer = absl::GetFlag(FLAGS_pipelined_receive_buffer),
                      .split_payloads = absl::GetFlag(FLAGS_split_payloads)},
           .max_connections = absl::GetFlag(FLAGS_max_connections),
           .idle_timeout = absl::GetFlag(FLAGS_idle_timeout).value,
           .frame_timeout = absl::GetFlag(FLAGS_frame_timeout).value,
           .shutdown_deadline = absl::GetFlag(FLAGS_shutdown_deadline).value});
  auto codec = [max_frame] { return coring::sbmp::Codec({.max_frame = max_frame}); };
  std::unique_ptr<coring::tls::TlsContext> tls;
  if (!absl::GetFlag(FLAGS_tls_cert).empty() || !absl::GetFlag(FLAGS_tls_key).empty()) {
    auto t = coring::tls::TlsContext::server(
        {.cert_file = absl::GetFlag(FLAGS_tls_cert), .key_file = absl::GetFlag(FLAGS_tls_key)});
    if (!t.ok()) {
      std::fprintf(stderr, "sbmp_echo_server: %s\n", t.status().ToString().c_str());
      return 1;
    }
    tls = std::move(*t);
  }
  using TlsConn = coring::net::FramedStream<coring::sbmp::Codec, coring::tls::TlsStream>;
  const absl::Status served =
      tls ? coring::tls::serve_tls<coring::sbmp::Codec>(server, *tls, echo<TlsConn>, codec)
          : server.serve<coring::sbmp::Codec>(echo<coring::net::FramedStream<coring::sbmp::Codec>>,
                                              codec);
  if (const absl::Status& s = served; !s.ok()) {
    std::fprintf(stderr, "sbmp_echo_server: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("listening on %s\n", server.address().to_string().c_str());
  std::fflush(stdout);

  const bool stats = absl::GetFlag(FLAGS_stats);
  for (int sig = 0; sig != SIGINT && sig != SIGTERM;) {
    if (sigwait(&signals, &sig) == 0 && sig == SIGUSR1 && stats) {
      coring::examples::print_runtime_stats(rt, server, stdout);
      if (tls) std::printf("%s\n", tls->stats().to_string().c_str());
    }
  }
  server.shutdown();  // GOAWAY(SHUTDOWN), in-flight frames answered, bounded
  if (stats) coring::examples::print_runtime_stats(rt, server, stdout);
  if (stats && tls) std::printf("%s\n", tls->stats().to_string().c_str());
  rt.stop();
  if (!server.finished()) return 1;
  if (const uint64_t aborted = server.stats().aborted_at_shutdown; aborted > 0) {
    std::fprintf(stderr, "sbmp_echo_server: %llu connection(s) aborted at the shutdown deadline\n",
                 static_cast<unsigned long long>(aborted));
    return 2;
  }
  return 0;
}
