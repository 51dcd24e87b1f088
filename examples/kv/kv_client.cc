// kv_client: talks to kv_server over one connection (net/channel.h).
//
//   kv_client --port=P put KEY VALUE [--version=N]   exit 0 when stored; 1 if
//                                                    refused (names the stored version)
//   kv_client --port=P get KEY                       the value on stdout; 1 if missing
//   kv_client --port=P load --duration=10s --concurrency=64 [--keys=N]
//             [--value_size=N] [--get_ratio=F] [--json]
//
// load: `concurrency` callers on one connection mix GETs and PUTs over
// fresh keys; every reply is checked (a GET returns the value of the version
// it names, never older than a write already acknowledged); prints ops/s and
// p50/p99 latency; exit 1 on any error.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "../net/latency_histogram.h"
#include "../net/millis_flag.h"
#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "command_line.h"
#include "coring/codec/codec.h"
#include "coring/core/event_loop.h"
#include "coring/core/spawn.h"
#include "coring/core/task.h"
#include "coring/core/when_all.h"
#include "coring/net/channel.h"
#include "coring/net/client.h"
#include "kv_protocol.h"

ABSL_FLAG(std::string, host, "127.0.0.1", "server address");
ABSL_FLAG(uint16_t, port, 7100, "server port");
ABSL_FLAG(int64_t, version, -1, "put: the write's STATE_VERSION (-1: stored + 1)");
ABSL_FLAG(coring::examples::Millis, timeout, {std::chrono::seconds(5)}, "deadline of each call");
ABSL_FLAG(coring::examples::Millis, duration, {std::chrono::seconds(10)}, "load: how long");
ABSL_FLAG(size_t, concurrency, 64, "load: calls in flight on the connection");
ABSL_FLAG(size_t, keys, 1000, "load: distinct keys");
ABSL_FLAG(size_t, value_size, 64, "load: bytes per value");
ABSL_FLAG(double, get_ratio, 0.8, "load: share of GETs (the rest are PUTs)");
ABSL_FLAG(bool, json, false, "load: print the result as one JSON object");

namespace {

using coring::Task;
using coring::sbmp::Codec;
using Chan = coring::net::Channel<Codec>;
using Clock = std::chrono::steady_clock;

coring::net::CallOptions<Codec> call_options() {
  coring::net::CallOptions<Codec> o;
  o.deadline = Clock::now() + absl::GetFlag(FLAGS_timeout).value;
  return o;
}

std::string error_text(const coring::sbmp::Frame& f) {
  if (f.payload.empty()) return "error reply without a message";
  return std::string(coring::kv::as_string(f.payload.subspan(1)));
}
std::optional<coring::kv::KvError> error_code(const coring::sbmp::Frame& f) {
  if (f.type() != coring::kv::kError || f.payload.empty()) return std::nullopt;
  return static_cast<coring::kv::KvError>(f.payload[0]);
}

Task<absl::StatusOr<std::unique_ptr<Chan>>> open(coring::net::NetContext& net) {
  auto addr = coring::net::SocketAddress::parse(
      absl::StrCat(absl::GetFlag(FLAGS_host), ":", absl::GetFlag(FLAGS_port)));
  if (!addr.ok()) co_return addr.status();
  const coring::sbmp::CodecOptions hello{.role = coring::sbmp::Role::kClient};
  auto conn = co_await coring::net::connect_framed(net, *addr, Codec(hello));
  if (!conn.ok()) co_return conn.status();
  co_return std::make_unique<Chan>(
      std::move(*conn), coring::net::ChannelOptions{.max_in_flight = std::max<size_t>(
                                                        1, absl::GetFlag(FLAGS_concurrency))});
}

Task<int> put(coring::net::NetContext& net, std::string key, std::string value) {
  auto ch = co_await open(net);
  if (!ch.ok()) {
    std::fprintf(stderr, "kv_client: %s\n", ch.status().ToString().c_str());
    co_return 1;
  }
  std::vector<uint8_t> payload;
  coring::kv::encode_put(payload, key, value);
  coring::sbmp::ExtensionBuilder ext;
  if (const int64_t v = absl::GetFlag(FLAGS_version); v >= 0) {
    ext.set_state_version(static_cast<uint64_t>(v));
  }
  const coring::sbmp::Frame req = coring::sbmp::make_frame(coring::kv::kPut, payload, ext.view());
  int rc = 1;
  {
    auto reply = co_await (*ch)->call(req, call_options());
    if (!reply.ok()) {
      std::fprintf(stderr, "kv_client: put: %s\n", reply.status().ToString().c_str());
    } else if ((*reply)->type() == coring::kv::kOk) {
      std::printf(
          "stored '%s' at version %llu\n", key.c_str(),
          static_cast<unsigned long long>((*reply)->extensions.state_version().value_or(0)));
      rc = 0;
    } else {
      std::fprintf(stderr, "kv_client: put refused: %s\n", error_text(**reply).c_str());
    }
  }
  co_await (*ch)->close();
  co_return rc;
}

Task<int> get(coring::net::NetContext& net, std::string key) {
  auto ch = co_await open(net);
  if (!ch.ok()) {
    std::fprintf(stderr, "kv_client: %s\n", ch.status().ToString().c_str());
    co_return 1;
  }
  const coring::sbmp::Frame req = coring::sbmp::make_frame(
      coring::kv::kGet,
      absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(key.data()), key.size()));
  int rc = 1;
  {
    auto reply = co_await (*ch)->call(req, call_options());
    if (!reply.ok()) {
      std::fprintf(stderr, "kv_client: get: %s\n", reply.status().ToString().c_str());
    } else if ((*reply)->type() == coring::kv::kOk) {
      const std::string_view v = coring::kv::as_string((*reply)->payload);
      std::fwrite(v.data(), 1, v.size(), stdout);
      std::fputc('\n', stdout);
      rc = 0;
    } else {
      std::fprintf(stderr, "kv_client: get: %s\n", error_text(**reply).c_str());
    }
  }
  co_await (*ch)->close();
  co_return rc;
}

// ---- load ----

struct Load {
  std::string prefix;
  size_t value_size;
  double get_ratio;
  Clock::time_point end;
  std::vector<uint64_t> next_version;  // per key: the last version written
  std::vector<uint64_t> acked;         // per key: highest version acknowledged
  coring::examples::LatencyHistogram latency;
  uint64_t gets = 0, puts = 0, stale = 0, errors = 0;
  std::string first_error;

  void fail(const std::string& why) {
    if (errors++ == 0) first_error = why;
  }
  std::string key(size_t k) const { return absl::StrCat(prefix, k); }
  std::string value(const std::string& key, uint64_t version) const {
    std::string v(value_size, 'a');
    uint64_t x = std::hash<std::string>()(key) ^ (version * 0x9e3779b97f4a7c15ull);
    for (char& c : v) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      c = static_cast<char>('a' + (x >> 59) % 26);
    }
    return v;
  }
};

Task<> load_worker(Chan& ch, Load& load, uint32_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, load.acked.size() - 1);
  std::uniform_real_distribution<double> coin(0, 1);
  std::vector<uint8_t> payload;
  coring::sbmp::ExtensionBuilder ext;
  while (Clock::now() < load.end && load.errors == 0) {
    const size_t k = pick(rng);
    const std::string key = load.key(k);
    const bool is_get = coin(rng) < load.get_ratio;
    uint64_t version = 0;
    ext.clear();
    if (is_get) {
      payload.assign(key.begin(), key.end());
    } else {
      version = ++load.next_version[k];
      coring::kv::encode_put(payload, key, load.value(key, version));
      ext.set_state_version(version);
    }
    const uint64_t acked_before = load.acked[k];
    const coring::sbmp::Frame req =
        coring::sbmp::make_frame(is_get ? coring::kv::kGet : coring::kv::kPut, payload, ext.view());
    const Clock::time_point start = Clock::now();
    auto reply = co_await ch.call(req, call_options());
    load.latency.record(static_cast<uint64_t>((Clock::now() - start).count()));
    if (!reply.ok()) {
      load.fail(reply.status().ToString());
      break;
    }
    const coring::sbmp::Frame& f = **reply;
    const uint64_t got = f.extensions.state_version().value_or(0);
    const std::optional<coring::kv::KvError> code = error_code(f);
    if (is_get) {
      ++load.gets;
      if (f.type() == coring::kv::kOk) {
        if (got < acked_before) {
          load.fail(absl::StrFormat("GET %s: version %d older than acknowledged %d", key, got,
                                    acked_before));
        } else if (coring::kv::as_string(f.payload) != load.value(key, got)) {
          load.fail(absl::StrFormat("GET %s: wrong value for version %d", key, got));
        }
      } else if (code != coring::kv::KvError::kNotFound || acked_before > 0) {
        load.fail(absl::StrFormat("GET %s: %s", key, error_text(f)));
      }
    } else {
      ++load.puts;
      if (f.type() == coring::kv::kOk && got == version) {
        load.acked[k] = std::max(load.acked[k], version);
      } else if (code == coring::kv::KvError::kStale && got > version) {
        ++load.stale;  // a newer write of this key got there first: latest wins
      } else {
        load.fail(absl::StrFormat("PUT %s v%d: %s", key, version,
                                  f.type() == coring::kv::kOk ? "wrong version" : error_text(f)));
      }
    }
  }
}

Task<int> load(coring::net::NetContext& net) {
  auto ch = co_await open(net);
  if (!ch.ok()) {
    std::fprintf(stderr, "kv_client: %s\n", ch.status().ToString().c_str());
    co_return 1;
  }
  Load l;
  l.prefix = absl::StrFormat("load-%d-%d-", getpid(), Clock::now().time_since_epoch().count());
  l.value_size = absl::GetFlag(FLAGS_value_size);
  l.get_ratio = absl::GetFlag(FLAGS_get_ratio);
  const size_t keys = absl::GetFlag(FLAGS_keys);
  l.next_version.assign(keys, 0);
  l.acked.assign(keys, 0);
  const Clock::time_point start = Clock::now();
  l.end = start + absl::GetFlag(FLAGS_duration).value;
  std::vector<Task<>> workers;
  const size_t n = absl::GetFlag(FLAGS_concurrency);
  for (size_t i = 0; i < n; ++i) workers.push_back(load_worker(**ch, l, static_cast<uint32_t>(i)));
  co_await coring::when_all(std::move(workers));
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  co_await (*ch)->close();
  const uint64_t ops = l.gets + l.puts;
  const double p50 = static_cast<double>(l.latency.percentile(0.50)) / 1000.0;
  const double p99 = static_cast<double>(l.latency.percentile(0.99)) / 1000.0;
  if (absl::GetFlag(FLAGS_json)) {
    std::printf(
        "{\"ops\":%llu,\"seconds\":%.3f,\"ops_per_sec\":%.0f,\"p50_us\":%.1f,\"p99_us\":%.1f,"
        "\"gets\":%llu,\"puts\":%llu,\"stale\":%llu,\"errors\":%llu}\n",
        static_cast<unsigned long long>(ops), seconds, static_cast<double>(ops) / seconds, p50, p99,
        static_cast<unsigned long long>(l.gets), static_cast<unsigned long long>(l.puts),
        static_cast<unsigned long long>(l.stale), static_cast<unsigned long long>(l.errors));
  } else {
    std::printf("ops %llu in %.2f s: %.0f ops/s, p50 %.1f us, p99 %.1f us\n",
                static_cast<unsigned long long>(ops), seconds, static_cast<double>(ops) / seconds,
                p50, p99);
    std::printf("gets %llu, puts %llu (%llu refused as stale), errors %llu\n",
                static_cast<unsigned long long>(l.gets), static_cast<unsigned long long>(l.puts),
                static_cast<unsigned long long>(l.stale),
                static_cast<unsigned long long>(l.errors));
  }
  if (l.errors > 0) {
    std::fprintf(stderr, "kv_client: load: %llu error(s), first: %s\n",
                 static_cast<unsigned long long>(l.errors), l.first_error.c_str());
    co_return 1;
  }
  co_return 0;
}

}  // namespace

int main(int argc, char** argv) {
  absl::SetProgramUsageMessage(
      "a client of kv_server.\n\n"
      "Usage: kv_client [--host=H] [--port=P] put KEY VALUE [--version=N]\n"
      "       kv_client [--host=H] [--port=P] get KEY\n"
      "       kv_client [--host=H] [--port=P] load [--duration=10s] [--concurrency=64]\n"
      "                 [--keys=N] [--value_size=N] [--get_ratio=F] [--json]\n"
      "Exit 0 on success; 1 on a refused write, a missing key or any load error.");
  std::vector<char*> args = coring::examples::parse_command_line(argc, argv, /*max_positional=*/3);
  if (args.size() < 2) coring::examples::usage_exit(argv[0], "missing command (put, get or load)");
  const std::string command = args[1];
  const size_t want = command == "put" ? 4 : command == "get" ? 3 : command == "load" ? 2 : 0;
  if (want == 0) coring::examples::usage_exit(argv[0], "unknown command '" + command + "'");
  if (args.size() != want) {
    coring::examples::usage_exit(argv[0],
                                 absl::StrFormat("%s takes %d argument(s)", command, want - 2));
  }
  if (command == "load") {
    // (Checked before connecting: with 100 million callers the load had not
    // started after 8 s.)
    const size_t concurrency = absl::GetFlag(FLAGS_concurrency);
    const size_t keys = absl::GetFlag(FLAGS_keys);
    const size_t value_size = absl::GetFlag(FLAGS_value_size);
    const double get_ratio = absl::GetFlag(FLAGS_get_ratio);
    if (concurrency < 1 || concurrency > 65536) {
      coring::examples::usage_exit(argv[0], "--concurrency must be 1..65536");
    }
    if (keys < 1 || keys > 10'000'000) {
      coring::examples::usage_exit(argv[0], "--keys must be 1..10000000");
    }
    if (value_size > coring::sbmp::kDefaultMaxFrame) {
      coring::examples::usage_exit(argv[0], absl::StrFormat("--value_size must be at most %u",
                                                            coring::sbmp::kDefaultMaxFrame));
    }
    if (!(get_ratio >= 0.0 && get_ratio <= 1.0)) {
      coring::examples::usage_exit(argv[0], "--get_ratio must be from 0 to 1");
    }
    if (absl::GetFlag(FLAGS_duration).value <= std::chrono::milliseconds(0)) {
      coring::examples::usage_exit(argv[0], "--duration must be above 0");
    }
  }
  auto loop = coring::EventLoop::create({});
  if (!loop.ok()) {
    std::fprintf(stderr, "kv_client: %s\n", loop.status().ToString().c_str());
    return 1;
  }
  auto net = coring::net::NetContext::create(**loop);
  if (!net.ok()) {
    std::fprintf(stderr, "kv_client: %s\n", net.status().ToString().c_str());
    return 1;
  }
  int rc = 1;
  if (command == "put") {
    rc = (*loop)->block_on(put(**net, args[2], args[3]));
  } else if (command == "get") {
    rc = (*loop)->block_on(get(**net, args[2]));
  } else {
    rc = (*loop)->block_on(load(**net));
  }
  for (int i = 0; i < 10000 && (*net)->live_streams() > 0; ++i) (*loop)->run_once(false);
  net->reset();
  std::fflush(stdout);
  return rc;
}
