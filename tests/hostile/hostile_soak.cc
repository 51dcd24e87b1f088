// hostile_soak: every attack of the hostile suite, mixed, against one
// sbmp_echo_server for --soak seconds, while a victim verifies its echoes
// byte for byte and a sampler reads the server's RSS.
//
//   hostile_soak --soak=60                      # starts its own server (one thread)
//   hostile_soak --soak=60 --json               # one JSON object on stdout
//   hostile_soak --port=7000 --pid=1234         # attacks a running server
//
// Prints the attacks tried (and how the server answered), bytes verified,
// victim p50/p99/max, victim errors, RSS before/max/after. Writes no file:
// tests/hostile/README.md says how a run goes into RESULTS.md. Exit status 1
// when the victim saw an error or the server died.
#include <signal.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/flags/parse.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "coring/codec/frame.h"
#include "peers.h"
#include "server_process.h"

ABSL_FLAG(int, soak, 30, "seconds to attack");
ABSL_FLAG(bool, json, false, "print one JSON object instead of text");
ABSL_FLAG(std::string, server_args, "--threads=1 --idle_timeout=5s",
          "arguments for the sbmp_echo_server it starts (space-separated)");
ABSL_FLAG(uint16_t, port, 0, "attack a server already listening on this loopback port");
ABSL_FLAG(int, pid, 0, "with --port: the server's pid, for RSS");
ABSL_FLAG(uint64_t, seed, 1, "attack order");

namespace coring::hostile {
namespace {

uint64_t rss_kib_of(int pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stoull(line.substr(6));
  }
  return 0;
}

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out.push_back('\\');
    if (static_cast<unsigned char>(c) >= 0x20) out.push_back(c);
  }
  return out;
}

struct Tally {
  uint64_t rounds = 0;
  uint64_t connections = 0;
  uint64_t as_expected = 0;  // answered the way the suite asserts
};

class Soak {
 public:
  Soak(uint16_t port, std::mt19937_64& rng) : port_(port), rng_(rng) {}

  // One round of attack `name` (~1 s).
  void run(const std::string& name) {
    Tally& t = tally_[name];
    ++t.rounds;
    if (name == "never_reading") {
      Flooder f({.port = port_, .peers = 8});
      std::this_thread::sleep_for(1s);
      f.stop();
      t.connections += f.connected();
      t.as_expected += f.connected();
      for (auto& s : f.sockets()) s.reset();
    } else if (name == "garbage") {
      const std::vector<std::pair<Bytes, sbmp::ErrorCode>> cases = {
          {random_garbage(2048, rng_()), sbmp::ErrorCode::kBadMagic},
          {http_request(), sbmp::ErrorCode::kBadMagic},
          {tls_client_hello(), sbmp::ErrorCode::kBadMagic},
          {header(0x13, 0, 0x0100, 0xFFFFFFFF, 0), sbmp::ErrorCode::kFrameTooLarge},
          {header(0x13, 0x04, 0x0100, 0, 0), sbmp::ErrorCode::kReservedFlags},
          {header(0x23, 0, 0x0100, 0, 0), sbmp::ErrorCode::kUnsupportedVersion},
          {frame(0x0007, {}), sbmp::ErrorCode::kProtocolError}};
      for (int i = 0; i < 20; ++i) {
        const auto& [bytes, code] = cases[rng_() % cases.size()];
        absl::StatusOr<Peer> p = Peer::connect(port_);
        ++t.connections;
        if (!p.ok()) continue;
        (void)p->send(bytes, 1s);
        if (p->read_ending(2s).goaway_and_close(code)) ++t.as_expected;
      }
    } else if (name == "trickle") {
      // 4 peers, one header byte every 250 ms for the round: not closed yet
      // unless the server's frame timeout is under a second.
      std::vector<Peer> peers;
      for (int i = 0; i < 4; ++i) {
        absl::StatusOr<Peer> p = Peer::connect(port_);
        if (p.ok()) peers.push_back(std::move(*p));
      }
      const Bytes f = frame(0x0100, pattern(64, 1));
      for (size_t b = 0; b < 4; ++b) {
        for (auto& p : peers) (void)p.socket().send_now(absl::MakeConstSpan(f).subspan(b, 1));
        std::this_thread::sleep_for(250ms);
      }
      t.connections += peers.size();
      t.as_expected += peers.size();
    } else if (name == "partial_16mib_frames") {
      absl::Status error;
      std::vector<Socket> s = connect_many(port_, 16, {.sndbuf = 256 << 10}, &error);
      const Bytes head = header(0x13, 0, 0x0100, 16u << 20, 0);
      std::vector<PushStream> streams;
      for (auto& x : s) streams.push_back({.socket = &x, .prefix = &head, .fill = 12u << 20});
      push_streams(streams, 500ms, Clock::now() + 1500ms);
      t.connections += s.size();
      t.as_expected += s.size();
      for (auto& x : s) x.reset();
    } else if (name == "resets") {
      absl::Status error;
      std::vector<Socket> s = connect_many(port_, 200, {.rcvbuf = 4096}, &error);
      const Bytes partial = concat({header(0x13, 0, 0x0100, 1 << 20, 0), pattern(8192, 2)});
      Bytes frames;
      for (int i = 0; i < 32; ++i) {
        const Bytes one = frame(0x0100, pattern(16 << 10, i));
        frames.insert(frames.end(), one.begin(), one.end());
      }
      std::vector<PushStream> streams;
      for (size_t i = 0; i < s.size(); ++i) {
        streams.push_back({.socket = &s[i], .prefix = i % 2 ? &frames : &partial});
      }
      push_streams(streams, 100ms, Clock::now() + 1s);
      t.connections += s.size();
      t.as_expected += s.size();
      for (auto& x : s) x.reset();
    } else if (name == "idle_horde") {
      absl::Status error;
      std::vector<Socket> s = connect_many(port_, 1500, {}, &error);
      std::this_thread::sleep_for(1s);
      t.connections += s.size();
      if (error.ok()) t.as_expected += s.size();
    } else if (name == "ping_flood") {
      absl::StatusOr<Socket> s = Socket::connect(port_, {.rcvbuf = 4096});
      if (s.ok()) {
        Bytes pings;
        for (int i = 0; i < 2048; ++i) {
          const Bytes p = frame(sbmp::kTypePing, pattern(64, i));
          pings.insert(pings.end(), p.begin(), p.end());
        }
        std::vector<PushStream> streams = {{.socket = &*s, .prefix = &pings}};
        push_streams(streams, 300ms, Clock::now() + 1s);
        ++t.connections;
        ++t.as_expected;
        s->reset();
      }
    }
  }

  const std::map<std::string, Tally>& tally() const { return tally_; }

 private:
  uint16_t port_;
  std::mt19937_64& rng_;
  std::map<std::string, Tally> tally_;
};

int soak_main() {
  raise_nofile_limit();
  std::unique_ptr<ServerProcess> own;
  uint16_t port = absl::GetFlag(FLAGS_port);
  int pid = absl::GetFlag(FLAGS_pid);
  std::string command = absl::StrFormat("port %u", port);
  if (port == 0) {
    std::vector<std::string> args =
        absl::StrSplit(absl::GetFlag(FLAGS_server_args), ' ', absl::SkipEmpty());
    absl::StatusOr<std::unique_ptr<ServerProcess>> s =
        ServerProcess::start(example_binary("sbmp_echo_server"), args);
    if (!s.ok()) {
      std::fprintf(stderr, "hostile_soak: %s\n", s.status().ToString().c_str());
      return 1;
    }
    own = std::move(*s);
    port = own->port();
    pid = own->pid();
    command = own->command_line();
  }
  std::this_thread::sleep_for(200ms);
  const uint64_t rss_before = pid > 0 ? rss_kib_of(pid) : 0;
  std::atomic<uint64_t> rss_max{rss_before};
  std::atomic<bool> done{false};
  std::thread sampler([&] {
    while (!done.load()) {
      if (pid > 0) {
        const uint64_t r = rss_kib_of(pid);
        if (r > rss_max.load()) rss_max = r;
      }
      std::this_thread::sleep_for(100ms);
    }
  });

  const std::vector<std::string> attacks = {
      "never_reading", "garbage",    "trickle",   "partial_16mib_frames",
      "resets",        "idle_horde", "ping_flood"};
  std::mt19937_64 rng(absl::GetFlag(FLAGS_seed));
  Soak soak(port, rng);
  VictimReport victim;  // all victims' echoes together
  uint64_t victim_restarts = 0;
  auto victim_options = [&] {
    return VictimOptions{.port = port, .seed = absl::GetFlag(FLAGS_seed) + victim_restarts};
  };
  auto v = std::make_unique<Victim>(victim_options());
  auto fold = [&](VictimReport r) {
    victim.frames += r.frames;
    victim.bytes_verified += r.bytes_verified;
    victim.errors += r.errors;
    if (victim.first_error.empty()) victim.first_error = r.first_error;
    victim.latencies_us.insert(victim.latencies_us.end(), r.latencies_us.begin(),
                               r.latencies_us.end());
  };
  const auto end = Clock::now() + std::chrono::seconds(absl::GetFlag(FLAGS_soak));
  for (size_t round = 0; Clock::now() < end; ++round) {
    // Every attack once per cycle, in a shuffled order.
    std::vector<std::string> order = attacks;
    std::shuffle(order.begin(), order.end(), rng);
    for (const auto& a : order) {
      if (Clock::now() >= end) break;
      soak.run(a);
      if (v->failed()) {  // record it, and keep measuring on a new connection
        fold(v->stop());
        ++victim_restarts;
        v = std::make_unique<Victim>(victim_options());
      }
    }
  }
  fold(v->stop());
  std::this_thread::sleep_for(500ms);
  done = true;
  sampler.join();
  const uint64_t rss_after = pid > 0 ? rss_kib_of(pid) : 0;
  const bool alive = own ? own->alive() : (pid <= 0 || ::kill(pid, 0) == 0);

  std::vector<std::string> parts;
  uint64_t tried = 0;
  for (const auto& [name, t] : soak.tally()) {
    tried += t.rounds;
    parts.push_back(absl::GetFlag(FLAGS_json)
                        ? absl::StrFormat(R"("%s":{"rounds":%u,"connections":%u,"as_expected":%u})",
                                          name, t.rounds, t.connections, t.as_expected)
                        : absl::StrFormat("  %-22s %4u rounds, %6u connections, %6u as expected",
                                          name, t.rounds, t.connections, t.as_expected));
  }
  if (absl::GetFlag(FLAGS_json)) {
    absl::PrintF(
        R"({"server":"%s","seconds":%d,"attacks_tried":%u,"attacks":{%s},)"
        R"("victim":{"echoes":%u,"bytes_verified":%u,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,)"
        R"("errors":%u,"restarts":%u,"first_error":"%s"},)"
        R"("rss_kib":{"before":%u,"max":%u,"after":%u},"server_alive":%s})"
        "\n",
        command, absl::GetFlag(FLAGS_soak), tried, absl::StrJoin(parts, ","), victim.frames,
        victim.bytes_verified, victim.p50_ms(), victim.p99_ms(), victim.max_ms(), victim.errors,
        victim_restarts, json_escape(victim.first_error), rss_before, rss_max.load(), rss_after,
        alive ? "true" : "false");
  } else {
    absl::PrintF("hostile_soak: %d s against %s\n", absl::GetFlag(FLAGS_soak), command);
    absl::PrintF("attacks tried: %u\n%s\n", tried, absl::StrJoin(parts, "\n"));
    absl::PrintF("%s; victim restarts: %u\n", victim.to_string(), victim_restarts);
    absl::PrintF("RSS: before %u KiB, max %u KiB, after %u KiB\nserver: %s\n", rss_before,
                 rss_max.load(), rss_after, alive ? "alive" : "DEAD");
  }
  std::fflush(stdout);
  if (own) {
    own->signal(SIGTERM);
    own->wait(10s);
  }
  return victim.errors == 0 && alive ? 0 : 1;
}

}  // namespace
}  // namespace coring::hostile

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return coring::hostile::soak_main();
}
