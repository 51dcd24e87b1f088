// kv_server: a sharded key-value service over SBMP (examples/kv/kv_protocol.h)
// built on net/'s request/reply channel: GET/PUT/DELETE, latest-wins by
// STATE_VERSION, the key space split across the threads (kv_service.h).
//
//   kv_server --host=127.0.0.1 --port=0 --threads=2
//   -> "listening on 127.0.0.1:NNNNN" on stdout's first line
//
// SIGINT/SIGTERM: requests already received are answered, GOAWAY(SHUTDOWN)
// to every peer, exit 0 (2 if connections had to be aborted).
#include <signal.h>

#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_format.h"
#include "command_line.h"
#include "coring/codec/codec.h"
#include "coring/core/runtime.h"
#include "coring/net/channel_server.h"
#include "coring/net/server.h"
#include "kv_service.h"

ABSL_FLAG(uint16_t, port, 7100, "TCP port to listen on (0: pick one)");
ABSL_FLAG(std::string, host, "0.0.0.0", "address to listen on");
ABSL_FLAG(size_t, threads, 0, "event-loop threads = shards (0: one per CPU)");
ABSL_FLAG(size_t, max_key_size, 256, "largest key, bytes");
ABSL_FLAG(size_t, max_value_size, 64 * 1024, "largest value, bytes");
ABSL_FLAG(size_t, max_memory, size_t{256} << 20,
          "memory for stored keys and values, bytes, split evenly across the threads");
ABSL_FLAG(size_t, max_concurrent, 64, "requests handled at once per connection");

using Conn = coring::net::FramedStream<coring::sbmp::Codec>;

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "a sharded key-value service over SBMP (GET/PUT/DELETE, latest-wins versions).\n\n"
      "Usage: kv_server [--port=N] [--host=ADDR] [--threads=N] [--max_memory=BYTES]\n"
      "                 [--max_key_size=N] [--max_value_size=N] [--max_concurrent=N]\n"
      "Prints \"listening on ADDR:PORT\" first. SIGINT/SIGTERM: answer what was received,\n"
      "GOAWAY to every peer, exit 0.");
  coring::examples::parse_command_line(argc, argv, /*max_positional=*/0);
  // (Checked before anything starts: a server that could store nothing, or
  // whose limits no request can reach, is a mistake to say, not to serve.)
  const size_t max_key = absl::GetFlag(FLAGS_max_key_size);
  const size_t max_value = absl::GetFlag(FLAGS_max_value_size);
  const size_t max_memory = absl::GetFlag(FLAGS_max_memory);
  constexpr size_t kMaxFrame = coring::sbmp::kDefaultMaxFrame;  // what carries a PUT
  if (max_key < 1 || max_key > kMaxFrame) {
    coring::examples::usage_exit(argv[0],
                                 absl::StrFormat("--max_key_size must be 1..%u", kMaxFrame));
  }
  if (max_value > kMaxFrame) {
    coring::examples::usage_exit(argv[0],
                                 absl::StrFormat("--max_value_size must be at most %u", kMaxFrame));
  }
  const size_t max_concurrent = absl::GetFlag(FLAGS_max_concurrent);
  if (max_concurrent < 1 || max_concurrent > 65536) {
    coring::examples::usage_exit(argv[0], "--max_concurrent must be 1..65536");
  }
  sigset_t signals;  // blocked before the threads start, so only sigwait() sees them
  sigemptyset(&signals);
  for (int sig : {SIGINT, SIGTERM}) sigaddset(&signals, sig);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  coring::Runtime rt({.threads = absl::GetFlag(FLAGS_threads)});
  if (absl::Status s = rt.start(); !s.ok()) {
    std::fprintf(stderr, "kv_server: %s\n", s.ToString().c_str());
    return 1;
  }
  // Each thread's share of --max_memory must hold an entry of the largest
  // key and value, or PUTs of that size could never succeed.
  const size_t largest_entry = max_key + max_value + coring::kv::KvShard::kEntryOverhead;
  if (max_memory / rt.size() < largest_entry) {
    // (Not usage_exit(): the threads are running, and rt must stop them.)
    std::fprintf(stderr,
                 "kv_server: --max_memory=%zu leaves each of the %zu threads %zu bytes, less than "
                 "the %zu of an entry of the largest key and value (see kv_server --help)\n",
                 max_memory, rt.size(), max_memory / rt.size(), largest_entry);
    return 1;
  }
  coring::kv::KvService service(
      rt, {.max_key_size = max_key, .max_value_size = max_value, .max_memory = max_memory});
  coring::net::Server server(
      rt, {.port = absl::GetFlag(FLAGS_port), .host = absl::GetFlag(FLAGS_host)});
  const coring::net::ChannelServerOptions options{.max_concurrent = max_concurrent,
                                                  .stats = nullptr};
  auto serve = [&service, options](Conn conn) {
    return coring::net::serve_calls(std::move(conn), service.handler(), options);
  };
  if (absl::Status s = server.serve<coring::sbmp::Codec>(serve); !s.ok()) {
    std::fprintf(stderr, "kv_server: %s\n", s.ToString().c_str());
    return 1;
  }
  std::printf("listening on %s\n", server.address().to_string().c_str());
  std::fflush(stdout);

  for (int sig = 0; sig != SIGINT && sig != SIGTERM;) {
    if (sigwait(&signals, &sig) != 0) break;
  }
  server.shutdown();  // answers what was received, GOAWAY(SHUTDOWN), bounded
  rt.stop();
  if (!server.finished()) return 1;
  return server.stats().aborted_at_shutdown > 0 ? 2 : 0;
}
