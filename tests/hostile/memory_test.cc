// Memory (issue 10, c): partial frames must not let peers grow the server.
// HOSTILE_MEMORY_CONNS (default 250) connections each send a header claiming
// a 16 MiB frame and 15 MiB of its body, never the rest; the server's RSS
// (/proc/PID/status VmRSS) must stay within HOSTILE_RSS_BOUND_MIB (300) of
// its baseline - the server answers GOAWAY(OVERLOADED) or stops reading -
// and the victim is served throughout. Headers alone claiming 16 MiB must
// not allocate anything either. What peers that never read made the server
// hold goes back to the system once they leave.
//
// Server: sbmp_echo_server --threads=1 --idle_timeout=60s (max_frame 16 MiB).
#include <algorithm>
#include <thread>

#include "coring/codec/frame.h"
#include "hostile_test_support.h"

namespace coring::hostile::testing {
namespace {

using sbmp::ErrorCode;

class MemoryTest : public HostileTest {
 protected:
  void SetUp() override {
#ifdef HOSTILE_SANITIZED
    GTEST_SKIP() << "RSS bounds mean nothing for a sanitized server";
#endif
  }

  static uint64_t growth(uint64_t max_kib, uint64_t baseline) {
    return max_kib > baseline ? max_kib - baseline : 0;
  }

  // Samples RSS until `until`, returning the largest.
  uint64_t max_rss_until(Clock::time_point until) {
    uint64_t max_kib = server_->rss_kib();
    while (Clock::now() < until) {
      std::this_thread::sleep_for(50ms);
      max_kib = std::max(max_kib, server_->rss_kib());
    }
    return max_kib;
  }
};

TEST_F(MemoryTest, PartialSixteenMebibyteFramesDoNotGrowRss) {
  const size_t n = env_size("HOSTILE_MEMORY_CONNS", 250);
  const uint64_t bound_kib = env_size("HOSTILE_RSS_BOUND_MIB", 300) << 10;
  constexpr uint32_t kLength = 16u << 20;  // the default max_frame: legal
  constexpr uint64_t kSent = 15ull << 20;  // of its body
  ASSERT_NE(start_sbmp({"--idle_timeout=60s"}), nullptr);
  Victim victim({.port = port()});
  ASSERT_TRUE(victim.wait_for_frames(50, 3s));
  const uint64_t baseline = max_rss_until(Clock::now() + 200ms);

  absl::Status error;
  // A modest send buffer: what waits in the kernel is not the server's.
  std::vector<Socket> sockets = connect_many(port(), n, {.sndbuf = 256 << 10}, &error);
  ASSERT_TRUE(error.ok()) << error;
  const Bytes head = header(sbmp::kVersion13, 0, 0x0100, kLength, 0);
  std::vector<PushStream> streams;
  for (auto& s : sockets) streams.push_back({.socket = &s, .prefix = &head, .fill = kSent});
  uint64_t max_kib = baseline;
  const auto start = Clock::now();
  // Stops once the bound is clearly broken: no need to eat the machine.
  const PushResult pushed = push_streams(streams, 2s, start + 30s, [&] {
    max_kib = std::max(max_kib, server_->rss_kib());
    return max_kib < baseline + bound_kib + (64 << 10) && server_->alive();
  });
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  max_kib = std::max(max_kib, max_rss_until(Clock::now() + 500ms));
  note(
      "%u peers pushed %u MiB in %.1f s (%u sent all, %u stalled: server stopped reading, "
      "%u closed%s); RSS baseline %u MiB, max %u MiB (+%u MiB, bound +%u MiB)",
      n, pushed.bytes >> 20, seconds, pushed.done, pushed.stalled, pushed.closed,
      pushed.stopped_early ? "; stopped early: bound broken" : "", baseline >> 10, max_kib >> 10,
      growth(max_kib, baseline) >> 10, bound_kib >> 10);
  ASSERT_TRUE(server_->alive()) << "server died (OOM?), exit " << server_->exit_code().value_or(-1);
  EXPECT_LE(growth(max_kib, baseline), bound_kib) << "partial frames grew the server";

  // What each attacker got: GOAWAY(OVERLOADED), or nothing yet (not read).
  size_t overloaded = 0, quiet = 0;
  std::string first_other;
  for (auto& s : sockets) {
    Peer p(std::move(s));
    const Ending e = p.read_ending(10ms, 1s);
    if (e.goaway_and_close(ErrorCode::kOverloaded)) {
      ++overloaded;
    } else if (e.kind == Ending::Kind::kSilence) {
      ++quiet;
    } else if (first_other.empty()) {
      first_other = e.to_string();
    }
  }
  note("attackers: %u GOAWAY(OVERLOADED), %u not answered (reading stopped)", overloaded, quiet);
  EXPECT_EQ(overloaded + quiet, n) << "first other: " << first_other;
  expect_victim_served(victim.stop(), 50);
  expect_alive_and_serving();
}

// What peers that never read made the server hold goes back to the system
// once they are gone: each opens with a 4 MiB frame whose echo it never
// reads, and the server keeps it (queued, and reassembled) until they leave.
// glibc's adaptive mmap threshold would serve such blocks from the heap
// after the first was freed, and keep them there; the server pins it
// (--heap_mmap_threshold). HOSTILE_FLOOD_PEERS (24) peers.
TEST_F(MemoryTest, NeverReadingPeersMemoryGoesBackOnceTheyLeave) {
  const size_t peers = env_size("HOSTILE_FLOOD_PEERS", 24);
  ASSERT_NE(start_sbmp({"--idle_timeout=60s"}), nullptr);
  Victim victim({.port = port()});
  ASSERT_TRUE(victim.wait_for_frames(50, 3s));
  const uint64_t baseline = max_rss_until(Clock::now() + 200ms);
  uint64_t peak = baseline;
  // In rounds, as attackers come and go: each round's blocks are freed
  // before the next round allocates its own.
  for (int round = 0; round < 3; ++round) {
    Flooder flood({.port = port(), .peers = peers});
    peak = std::max(peak, max_rss_until(Clock::now() + 1500ms));
    flood.stop();
    for (auto& s : flood.sockets()) s.reset();  // they leave
    std::this_thread::sleep_for(300ms);
  }
  // The attack must have cost the server memory, or this test shows nothing.
  ASSERT_GE(growth(peak, baseline), 32u << 10) << "the floods took no memory";
  // Closed connections give back what they held within a few idle sweeps.
  uint64_t after = server_->rss_kib();
  const auto deadline = Clock::now() + 10s;
  while (growth(after, baseline) > (24u << 10) && Clock::now() < deadline) {
    std::this_thread::sleep_for(100ms);
    after = server_->rss_kib();
  }
  note(
      "3 rounds of %u never-reading peers: RSS baseline %u MiB, peak %u MiB, %u MiB after they "
      "left",
      peers, baseline >> 10, peak >> 10, after >> 10);
  EXPECT_LE(growth(after, baseline), 24u << 10) << "the floods' memory stayed with the server";
  expect_victim_served(victim.stop(), 50);
  expect_alive_and_serving();
}

TEST_F(MemoryTest, HeadersClaimingSixteenMebibytesAllocateNothing) {
  const size_t n = env_size("HOSTILE_HEADER_BOMBS", 500);
  ASSERT_NE(start_sbmp({"--idle_timeout=60s"}), nullptr);
  Victim victim({.port = port()});
  ASSERT_TRUE(victim.wait_for_frames(50, 3s));
  const uint64_t baseline = max_rss_until(Clock::now() + 200ms);
  absl::Status error;
  std::vector<Socket> sockets = connect_many(port(), n, {}, &error);
  ASSERT_TRUE(error.ok()) << error;
  const Bytes bomb = concat({header(sbmp::kVersion13, 0, 0x0100, 16u << 20, 0), Bytes(1)});
  for (auto& s : sockets) EXPECT_TRUE(s.send_all(bomb, Clock::now() + 2s).ok());
  const uint64_t max_kib = max_rss_until(Clock::now() + 1s);
  note("%u headers claiming 16 MiB: RSS baseline %u KiB, max %u KiB (+%u KiB, %u B per peer)", n,
       baseline, max_kib, growth(max_kib, baseline), (growth(max_kib, baseline) << 10) / n);
  // Per connection a few KiB of state at most, no frame buffer.
  EXPECT_LE(growth(max_kib, baseline), 64u << 10);
  expect_victim_served(victim.stop(), 50);
}

}  // namespace
}  // namespace coring::hostile::testing
