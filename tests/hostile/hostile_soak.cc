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
// when the victim saw an error, an attack was answered otherwise than the
// suite asserts, or the server died.
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
ABSL_FLAG(int, parallel, 3, "attackers running at once");
ABSL_FLAG(std::vector<std::string>, attacks, {},
          "only these attacks (comma-separated; default: all of never_reading, garbage, trickle, "
          "partial_16mib_frames, resets, idle_horde, ping_flood)");
ABSL_FLAG(int, rss_growth_percent, 25,
          "flat RSS: the second half's peak may exceed the first half's by this much "
          "(plus 16 MiB) before the soak fails");

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

// Per attack: rounds run, connections used, and of those whose outcome the
// suite asserts (judged), how many got it.
struct Tally {
  uint64_t rounds = 0;
  uint64_t connections = 0;
  uint64_t judged = 0;
  uint64_t as_expected = 0;
};

// Runs rounds of attacks; several Soaks run at once, on threads of their own.
class Soak {
 public:
  Soak(uint16_t port, uint64_t seed) : port_(port), rng_(seed) {}

  // One round of attack `name` (about a second).
  void run(const std::string& name) {
    Tally& t = tally_[name];
    ++t.rounds;
    if (name == "never_reading") {
      // Judged by the victim only.
      Flooder f({.port = port_, .peers = 8});
      std::this_thread::sleep_for(1s);
      f.stop();
      t.connections += f.connected();
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
        ++t.connections;
        ++t.judged;
        absl::StatusOr<Peer> p = Peer::connect(port_);
        if (!p.ok()) continue;
        (void)p->send(bytes, 1s);
        if (p->read_ending(2s).goaway_and_close(code)) ++t.as_expected;
      }
    } else if (name == "trickle") {
      // One header byte every 250 ms for the round: nothing to judge in a
      // second (the frame timeout is longer).
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
    } else if (name == "partial_16mib_frames") {
      // Judged by the RSS samples.
      absl::Status error;
      std::vector<Socket> s = connect_many(port_, 16, {.sndbuf = 256 << 10}, &error);
      const Bytes head = header(0x13, 0, 0x0100, 16u << 20, 0);
      std::vector<PushStream> streams;
      for (auto& x : s) streams.push_back({.socket = &x, .prefix = &head, .fill = 12u << 20});
      push_streams(streams, 500ms, Clock::now() + 1500ms);
      t.connections += s.size();
      for (auto& x : s) x.reset();
    } else if (name == "resets") {
      // Half mid-frame, half mid-write (after 512 KiB without reading).
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
      for (auto& x : s) x.reset();
    } else if (name == "idle_horde") {
      // 1500 idle connections for a second, then each must get an echo.
      absl::Status error;
      std::vector<Socket> s = connect_many(port_, 1500, {}, &error);
      std::this_thread::sleep_for(1s);
      const Bytes f = frame(0x0100, pattern(16, 3));
      std::vector<Peer> peers;
      for (auto& x : s) {
        (void)x.send_now(f);
        peers.emplace_back(std::move(x));
      }
      const auto deadline = Clock::now() + 3s;
      t.connections += 1500;
      t.judged += 1500;
      for (auto& p : peers) {
        absl::StatusOr<ReceivedFrame> echo = p.read_frame(deadline);
        if (echo.ok() && echo->type() == 0x0100) ++t.as_expected;
      }
    } else if (name == "ping_flood") {
      // PINGs without reading: PONGs, then at most GOAWAY(OVERLOADED).
      absl::StatusOr<Socket> s = Socket::connect(port_, {.rcvbuf = 4096});
      ++t.connections;
      if (s.ok()) {
        Bytes pings;
        for (int i = 0; i < 2048; ++i) {
          const Bytes p = frame(sbmp::kTypePing, pattern(64, i));
          pings.insert(pings.end(), p.begin(), p.end());
        }
        std::vector<PushStream> streams = {{.socket = &*s, .prefix = &pings}};
        push_streams(streams, 300ms, Clock::now() + 1s);
        Peer p(std::move(*s));
        const Ending e = p.read_ending(500ms);
        ++t.judged;
        if (e.kind == Ending::Kind::kSilence || e.goaway_and_close(sbmp::ErrorCode::kOverloaded)) {
          ++t.as_expected;
        }
        p.socket().reset();
      }
    }
  }

  const std::map<std::string, Tally>& tally() const { return tally_; }

 private:
  uint16_t port_;
  std::mt19937_64 rng_;
  std::map<std::string, Tally> tally_;
};

int soak_main() {
  std::vector<std::string> attacks = {
      "never_reading", "garbage",    "trickle",   "partial_16mib_frames",
      "resets",        "idle_horde", "ping_flood"};
  if (const std::vector<std::string> only = absl::GetFlag(FLAGS_attacks); !only.empty()) {
    for (const std::string& a : only) {
      if (std::find(attacks.begin(), attacks.end(), a) == attacks.end()) {
        std::fprintf(stderr, "hostile_soak: --attacks: no attack named \"%s\"\n", a.c_str());
        return 2;
      }
    }
    attacks = only;
  }
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
  const auto start = Clock::now();
  const auto half = start + std::chrono::seconds(absl::GetFlag(FLAGS_soak)) / 2;
  // Peak RSS of each half of the soak: every attack runs in both (a cycle
  // takes a few seconds), so a server that keeps what it once used is flat
  // and one that leaks is not.
  uint64_t half_max[2] = {rss_before, 0};
  std::thread sampler([&] {
    while (!done.load()) {
      if (pid > 0) {
        const uint64_t r = rss_kib_of(pid);
        if (r > rss_max.load()) rss_max = r;
        uint64_t& m = half_max[Clock::now() < half ? 0 : 1];
        m = std::max(m, r);
      }
      std::this_thread::sleep_for(100ms);
    }
  });

  const uint64_t seed = absl::GetFlag(FLAGS_seed);
  const auto end = Clock::now() + std::chrono::seconds(absl::GetFlag(FLAGS_soak));
  // Attackers on threads of their own, each going through every attack once
  // per cycle in a shuffled order; so the attacks overlap.
  std::vector<std::unique_ptr<Soak>> soaks;
  std::vector<std::thread> attackers;
  for (int i = 0; i < absl::GetFlag(FLAGS_parallel); ++i) {
    soaks.push_back(std::make_unique<Soak>(port, seed * 1000 + i));
    attackers.emplace_back([&, i, soak = soaks.back().get()] {
      std::mt19937_64 rng(seed * 2000 + i);
      while (Clock::now() < end) {
        std::vector<std::string> order = attacks;
        std::shuffle(order.begin(), order.end(), rng);
        for (const auto& a : order) {
          if (Clock::now() >= end) break;
          soak->run(a);
        }
      }
    });
  }
  // The victim: a failure is recorded and a new one takes over, so that
  // what happens after a stall is measured too.
  VictimReport victim;  // all victims' echoes together
  uint64_t victim_restarts = 0;
  auto victim_options = [&] { return VictimOptions{.port = port, .seed = seed + victim_restarts}; };
  auto fold = [&](VictimReport r) {
    victim.frames += r.frames;
    victim.bytes_verified += r.bytes_verified;
    victim.errors += r.errors;
    if (victim.first_error.empty()) victim.first_error = r.first_error;
    victim.latencies_us.insert(victim.latencies_us.end(), r.latencies_us.begin(),
                               r.latencies_us.end());
  };
  auto v = std::make_unique<Victim>(victim_options());
  while (Clock::now() < end) {
    std::this_thread::sleep_for(50ms);
    if (v->failed()) {
      fold(v->stop());
      ++victim_restarts;
      v = std::make_unique<Victim>(victim_options());
    }
  }
  for (auto& t : attackers) t.join();
  fold(v->stop());
  std::this_thread::sleep_for(500ms);
  done = true;
  sampler.join();
  const uint64_t rss_after = pid > 0 ? rss_kib_of(pid) : 0;
  const uint64_t flat_limit =
      half_max[0] * (100 + absl::GetFlag(FLAGS_rss_growth_percent)) / 100 + 16 * 1024;
  const bool rss_flat = pid <= 0 || half_max[1] <= flat_limit;
  const bool alive = own ? own->alive() : (pid <= 0 || ::kill(pid, 0) == 0);

  std::map<std::string, Tally> tally;
  for (const auto& soak : soaks) {
    for (const auto& [name, t] : soak->tally()) {
      Tally& sum = tally[name];
      sum.rounds += t.rounds;
      sum.connections += t.connections;
      sum.judged += t.judged;
      sum.as_expected += t.as_expected;
    }
  }
  std::vector<std::string> parts;
  uint64_t tried = 0;
  for (const auto& [name, t] : tally) {
    tried += t.rounds;
    parts.push_back(
        absl::GetFlag(FLAGS_json)
            ? absl::StrFormat(R"("%s":{"rounds":%u,"connections":%u,"judged":%u,"as_expected":%u})",
                              name, t.rounds, t.connections, t.judged, t.as_expected)
            : absl::StrFormat("  %-22s %4u rounds, %6u connections, %s", name, t.rounds,
                              t.connections,
                              t.judged == 0 ? std::string("judged by the victim and RSS")
                                            : absl::StrFormat("%u of %u answered as the suite "
                                                              "asserts",
                                                              t.as_expected, t.judged)));
  }
  if (absl::GetFlag(FLAGS_json)) {
    absl::PrintF(
        R"({"server":"%s","seconds":%d,"attacks_tried":%u,"attacks":{%s},)"
        R"("victim":{"echoes":%u,"bytes_verified":%u,"p50_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f,)"
        R"("errors":%u,"restarts":%u,"first_error":"%s"},)"
        R"("rss_kib":{"before":%u,"max":%u,"first_half_max":%u,"second_half_max":%u,"after":%u,)"
        R"("flat":%s},"server_alive":%s})"
        "\n",
        command, absl::GetFlag(FLAGS_soak), tried, absl::StrJoin(parts, ","), victim.frames,
        victim.bytes_verified, victim.p50_ms(), victim.p99_ms(), victim.max_ms(), victim.errors,
        victim_restarts, json_escape(victim.first_error), rss_before, rss_max.load(), half_max[0],
        half_max[1], rss_after, rss_flat ? "true" : "false", alive ? "true" : "false");
  } else {
    absl::PrintF("hostile_soak: %d s against %s\n", absl::GetFlag(FLAGS_soak), command);
    absl::PrintF("attacks tried: %u\n%s\n", tried, absl::StrJoin(parts, "\n"));
    absl::PrintF("%s; victim restarts: %u\n", victim.to_string(), victim_restarts);
    absl::PrintF(
        "RSS: before %u KiB, max %u KiB, after %u KiB; peak of the first half %u KiB, of the "
        "second %u KiB: %s\nserver: %s\n",
        rss_before, rss_max.load(), rss_after, half_max[0], half_max[1],
        rss_flat ? "flat" : absl::StrFormat("GROWING (limit %u KiB)", flat_limit),
        alive ? "alive" : "DEAD");
  }
  std::fflush(stdout);
  if (own) {
    own->signal(SIGTERM);
    own->wait(10s);
  }
  uint64_t unexpected = 0;
  for (const auto& [name, t] : tally) unexpected += t.judged - t.as_expected;
  return victim.errors == 0 && unexpected == 0 && alive && rss_flat ? 0 : 1;
}

}  // namespace
}  // namespace coring::hostile

int main(int argc, char** argv) {
  absl::ParseCommandLine(argc, argv);
  return coring::hostile::soak_main();
}
