// one_loop_server: echo_server's and sbmp_echo_server's connection handlers
// on one EventLoop run by the main thread, with no Runtime: for tools that
// cannot follow a multi-threaded coring process. Valgrind runs one thread at
// a time and treats io_uring_enter as a call that never blocks, so a Runtime
// loop thread waiting there for completions stops every other thread of the
// process, its main thread first. bench/instructions.sh runs this under
// callgrind, beside the raw liburing baseline, under the load generator.
//
//   one_loop_server [--sbmp] [--port=0]   -> "listening on 127.0.0.1:NNNNN"
//
// Set up as the servers are (a SlabPool for coroutine frames, a registered
// BufferArena, rings of 2048/16384 entries, the NetContext's and
// FramedStream's defaults, split_payloads as sbmp_echo_server's default);
// the handlers are theirs, line for line. Serves until SIGINT/SIGTERM.
#include <cstdint>
#include <cstdio>
#include <memory>
#include <utility>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/flags/usage.h"
#include "absl/status/status.h"
#include "coring/codec/codec.h"
#include "coring/core/event_loop.h"
#include "coring/core/spawn.h"
#include "coring/core/task.h"
#include "coring/net/framed_stream.h"
#include "coring/net/listener.h"
#include "coring/net/net_context.h"
#include "coring/net/socket_address.h"
#include "coring/net/stream.h"
#include "coring/pool/buffer_arena.h"
#include "coring/pool/slab_pool.h"

ABSL_FLAG(uint16_t, port, 0, "TCP port on 127.0.0.1 (0: pick one)");
ABSL_FLAG(bool, sbmp, false, "serve sbmp_echo_server's SBMP echo instead of the raw byte echo");

namespace {

using coring::Task;
using coring::net::FramedStream;
using coring::net::Stream;

// examples/net/echo_server.cc's echo().
Task<> raw_echo(Stream conn) {
  for (;;) {
    auto buf = co_await conn.read();
    if (!buf.ok() || buf->empty()) break;
    if (!(co_await conn.write(std::move(*buf))).ok()) break;
  }
  (void)co_await conn.close();
}

// examples/net/sbmp_echo_server.cc's echo().
Task<> sbmp_echo(FramedStream<coring::sbmp::Codec> conn) {
  for (;;) {
    auto frame = co_await conn.read_frame();
    if (!frame.ok()) co_return;
    bool written;
    do {
      const absl::Status st = co_await conn.write_frame(*frame);
      written = st.ok();
    } while (written && conn.try_read_frame(*frame));
    if (!written) break;
  }
  (void)co_await conn.close();
}

Task<> serve(coring::net::Listener& listener, bool sbmp) {
  coring::EventLoop& loop = listener.context().loop();
  for (;;) {
    auto s = co_await listener.accept();
    if (!s.ok()) {
      std::fprintf(stderr, "one_loop_server: accept: %s\n", s.status().ToString().c_str());
      loop.stop();
      co_return;
    }
    if (sbmp) {
      coring::net::FramedOptions framed;
      framed.split_payloads = true;
      coring::spawn(loop, sbmp_echo(FramedStream<coring::sbmp::Codec>(
                              std::move(*s), coring::sbmp::Codec(), framed)));
    } else {
      coring::spawn(loop, raw_echo(std::move(*s)));
    }
  }
}

int fail(const char* what, const absl::Status& s) {
  std::fprintf(stderr, "one_loop_server: %s: %s\n", what, s.ToString().c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "echo_server's (or with --sbmp, sbmp_echo_server's) echo on one event loop run by the\n"
      "main thread, for valgrind. Usage: one_loop_server [--sbmp] [--port=N]");
  if (absl::ParseCommandLine(argc, argv).size() > 1) {
    std::fprintf(stderr, "one_loop_server: takes no positional arguments (see --help)\n");
    return 1;
  }
  coring::pool::SlabPool slab;
  if (!slab.status().ok()) return fail("slab pool", slab.status());
  auto arena = coring::pool::BufferArena::create({});
  if (!arena.ok()) return fail("buffer arena", arena.status());
  coring::LoopOptions options;
  options.ring = {.sq_entries = 2048, .cq_entries = 16384};
  options.slab_pool = &slab;
  options.arena = &*arena;
  auto loop = coring::EventLoop::create(std::move(options));
  if (!loop.ok()) return fail("event loop", loop.status());
  auto net = coring::net::NetContext::create(**loop);
  if (!net.ok()) return fail("net context", net.status());
  auto listener = coring::net::Listener::bind(
      **net, coring::net::SocketAddress::ipv4_loopback(absl::GetFlag(FLAGS_port)));
  if (!listener.ok()) return fail("listen", listener.status());
  auto address = (*listener)->local_address();
  if (!address.ok()) return fail("listen", address.status());
  std::printf("listening on %s\n", address->to_string().c_str());
  std::fflush(stdout);
  coring::spawn(**loop, serve(**listener, absl::GetFlag(FLAGS_sbmp)));
  (*loop)->run();
  return 1;  // only when accepting failed
}
