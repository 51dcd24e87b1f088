// echo_server: raw TCP (or Unix-socket) byte echo on coring.
//
//   echo_server --port=7000 --threads=4
//   echo_server --unix=/tmp/echo.sock
//   echo_server --port=7443 --tls_cert=cert.pem --tls_key=key.pem   # TLS
//
// One listener and accept loop per thread; every connection echoes the bytes
// it receives until the peer closes. SIGINT/SIGTERM: stop accepting, let
// connections finish, exit 0 (2 if some had to be aborted at the deadline).
// --stats prints the ring's counters at exit and on SIGUSR1 (bench/run.sh
// reads messages per io_uring_enter from them).
#include <signal.h>

#include <cstdio>
#include <memory>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "command_line.h"
#include "coring/core/runtime.h"
#include "coring/net/server.h"
#include "coring/tls/tls_stream.h"
#include "millis_flag.h"
#include "runtime_stats.h"

ABSL_FLAG(uint16_t, port, 7000, "TCP port to listen on (0: pick one)");
ABSL_FLAG(std::string, host, "0.0.0.0", "address to listen on");
ABSL_FLAG(size_t, threads, 0, "event-loop threads (0: one per CPU)");
ABSL_FLAG(std::string, unix, "", "listen on this Unix-domain socket path instead of TCP");
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
ABSL_FLAG(coring::examples::Millis, idle_timeout, {std::chrono::seconds(60)},
          "close peers that sent nothing for this long (ms or 30s; 0: never)");
ABSL_FLAG(size_t, max_connections, 0,
          "connections served at once; more are closed (0: RLIMIT_NOFILE)");
ABSL_FLAG(coring::examples::Millis, shutdown_deadline, {std::chrono::seconds(5)},
          "on SIGINT/SIGTERM, abort connections still open after this long");
ABSL_FLAG(bool, stats, false, "print ring/pool/connection stats on exit and on SIGUSR1");
ABSL_FLAG(std::string, tls_cert, "", "serve TLS with this PEM certificate chain (needs --tls_key)");
ABSL_FLAG(std::string, tls_key, "", "the PEM private key of --tls_cert");

// S: net::Stream, or tls::TlsStream with --tls_cert.
template <class S>
coring::Task<> echo(S conn) {
  for (;;) {
    auto buf = co_await conn.read();       // a chunk from the loop's buffer ring
    if (!buf.ok() || buf->empty()) break;  // error, EOF or shutdown
    absl::Status st;
    if constexpr (requires { conn.write(std::move(*buf)); }) {
      st = co_await conn.write(std::move(*buf));  // sent from the ring buffer, no copy
    } else {
      st = co_await conn.write(buf->span());  // TLS: encrypted into records of its own
    }
    if (!st.ok()) break;
  }
  (void)co_await conn.close();  // queued bytes first
}

coring::Task<> echo_tls(coring::tls::TlsContext& tls, coring::net::Stream conn) {
  auto t = co_await coring::tls::TlsStream::accept(tls, std::move(conn));
  if (t.ok()) co_await echo(std::move(*t));  // else: closed, counted in tls.stats()
}

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "raw TCP (or Unix-socket) byte echo server.\n\n"
      "Usage: echo_server [--port=N] [--host=ADDR] [--threads=N] [--unix=PATH]\n"
      "                   [--idle_timeout=D] [--max_connections=N] [--shutdown_deadline=D]\n"
      "                   [--recv_buffers=N] [--recv_buffer_size=BYTES]\n"
      "                   [--max_recv_buffers=N] [--recv_share=N] [--send_share=N]\n"
      "                   [--stats] [--tls_cert=PEM --tls_key=PEM]\n"
      "Echoes the bytes of every connection until the peer closes; SIGINT/SIGTERM\n"
      "stop accepting, let connections finish and exit 0 (2 if some had to be aborted).");
  coring::examples::parse_command_line(argc, argv, /*max_positional=*/0);
  const bool stats = absl::GetFlag(FLAGS_stats);
  sigset_t signals;  // --stats: blocked before the threads start, so only sigwait() sees them
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGUSR1);
  if (stats) pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  // Rings sized for thousands of busy connections (as bench/'s raw liburing
  // server): a multishot recv per connection can post many CQEs per turn.
  coring::Runtime rt(
      {.threads = absl::GetFlag(FLAGS_threads), .ring = {.sq_entries = 2048, .cq_entries = 16384}});
  coring::net::Server server(rt,
                             {.port = absl::GetFlag(FLAGS_port),
                              .host = absl::GetFlag(FLAGS_host),
                              .unix_path = absl::GetFlag(FLAGS_unix),
                              .net = {.recv_buffers = absl::GetFlag(FLAGS_recv_buffers),
                                      .recv_buffer_size = absl::GetFlag(FLAGS_recv_buffer_size),
                                      .max_recv_buffers = absl::GetFlag(FLAGS_max_recv_buffers),
                                      .recv_share = absl::GetFlag(FLAGS_recv_share),
                                      .send_share = absl::GetFlag(FLAGS_send_share)},
                              .max_connections = absl::GetFlag(FLAGS_max_connections),
                              .idle_timeout = absl::GetFlag(FLAGS_idle_timeout).value,
                              .shutdown_deadline = absl::GetFlag(FLAGS_shutdown_deadline).value});
  std::unique_ptr<coring::tls::TlsContext> tls;
  if (!absl::GetFlag(FLAGS_tls_cert).empty() || !absl::GetFlag(FLAGS_tls_key).empty()) {
    auto t = coring::tls::TlsContext::server(
        {.cert_file = absl::GetFlag(FLAGS_tls_cert), .key_file = absl::GetFlag(FLAGS_tls_key)});
    if (!t.ok()) {
      std::fprintf(stderr, "echo_server: %s\n", t.status().ToString().c_str());
      return 1;
    }
    tls = std::move(*t);
  }
  coring::net::Server::Handler handler = echo<coring::net::Stream>;
  if (tls) {
    handler = [&tls](coring::net::Stream s) { return echo_tls(*tls, std::move(s)); };
  }
  if (absl::Status s = server.serve(std::move(handler)); !s.ok()) {
    std::fprintf(stderr, "echo_server: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("echo_server: listening on %s with %zu threads\n",
              server.address().to_string().c_str(), rt.size());
  std::fflush(stdout);
  if (!stats) return server.run_until_signal();
  for (int sig = 0; sig != SIGINT && sig != SIGTERM;) {
    if (sigwait(&signals, &sig) == 0 && sig == SIGUSR1) {
      coring::examples::print_runtime_stats(rt, server, stdout);
    }
  }
  server.shutdown();
  coring::examples::print_runtime_stats(rt, server, stdout);
  rt.stop();
  return server.stats().aborted_at_shutdown > 0 ? 2 : 0;
}
