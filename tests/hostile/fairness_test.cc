// Fairness (issue 10, a): peers that send as fast as the server takes it and
// never read must not stall the other connections of the same thread. The
// victim echoes throughout the attack (HOSTILE_ATTACK_SECONDS, default 3)
// and must see no error and a p99 under HOSTILE_P99_MS (default 200).
//
// Servers: sbmp_echo_server --threads=1; echo_server --threads=1 (raw bytes).
#include <thread>

#include "coring/codec/frame.h"
#include "hostile_test_support.h"

namespace coring::hostile::testing {
namespace {

class FairnessTest : public HostileTest {
 protected:
  // Floods with `peers` never-reading peers (frames of `payload` bytes, one
  // per send) while the victim echoes.
  void flood_while_victim_echoes(size_t peers, size_t payload, bool raw) {
    Victim early({.port = port(), .raw = raw});
    ASSERT_TRUE(early.wait_for_frames(20, 3s)) << "victim not served before the attack";
    Flooder flood({.port = port(), .peers = peers, .payload = payload, .raw = raw});
    ASSERT_EQ(flood.connected(), peers);
    const auto attack = std::chrono::seconds(env_size("HOSTILE_ATTACK_SECONDS", 3));
    const auto start = Clock::now();
    std::this_thread::sleep_for(attack / 3);
    // A second victim arrives once the attack is under way.
    Victim late({.port = port(), .raw = raw, .seed = 2});
    while (Clock::now() < start + attack && !early.failed() && !late.failed()) {
      std::this_thread::sleep_for(50ms);
    }
    flood.stop();
    note("%u never-reading peers (%u-byte %s) pushed %u KiB in %d s", peers, payload,
         raw ? "writes" : "frames", flood.bytes_sent() >> 10, static_cast<int>(attack.count()));
    // At least one echo per 10 ms of attack on average.
    expect_victim_served(early.stop(), 20 + attack / 10ms);
    expect_victim_served(late.stop(), (attack * 2 / 3) / 10ms);
    expect_alive_and_serving(raw);
  }
};

TEST_F(FairnessTest, OneNeverReadingPeerDoesNotStallTheVictim) {
  ASSERT_NE(start_sbmp(), nullptr);
  flood_while_victim_echoes(1, 100, false);
}

TEST_F(FairnessTest, ManyNeverReadingPeersDoNotStallTheVictim) {
  ASSERT_NE(start_sbmp(), nullptr);
  flood_while_victim_echoes(env_size("HOSTILE_FLOOD_PEERS", 64), 100, false);
}

// Frames larger than a receive buffer (the decoder reassembles them).
TEST_F(FairnessTest, ManyNeverReadingPeersWithLargeFramesDoNotStallTheVictim) {
  ASSERT_NE(start_sbmp(), nullptr);
  flood_while_victim_echoes(env_size("HOSTILE_FLOOD_PEERS", 64), 64 << 10, false);
}

TEST_F(FairnessTest, EchoServerNeverReadingPeersDoNotStallTheVictim) {
  ASSERT_NE(start_echo(), nullptr);
  flood_while_victim_echoes(env_size("HOSTILE_FLOOD_PEERS", 64), 100, true);
}

// PINGs without ever reading the PONGs: the server may stop reading that peer
// or close it with GOAWAY(OVERLOADED), but the victim goes on, and what the
// peer finally reads is PONGs and, at most, that GOAWAY.
TEST_F(FairnessTest, PingFloodWithoutReadingLeavesTheVictimAlone) {
  ASSERT_NE(start_sbmp(), nullptr);
  Victim victim({.port = port()});
  ASSERT_TRUE(victim.wait_for_frames(20, 3s));
  absl::StatusOr<Socket> s = Socket::connect(port(), {.rcvbuf = 4096});
  ASSERT_TRUE(s.ok()) << s.status();
  Bytes pings;
  for (int i = 0; i < 1024; ++i) {
    const Bytes p = frame(sbmp::kTypePing, pattern(64, i));
    pings.insert(pings.end(), p.begin(), p.end());
  }
  std::vector<PushStream> streams = {{.socket = &*s, .prefix = &pings, .fill = 0}};
  uint64_t sent = 0;
  const auto end = Clock::now() + 2s;
  while (Clock::now() < end && !victim.failed()) {
    streams[0].sent = 0;
    streams[0].done = streams[0].stalled = false;
    push_streams(streams, 200ms, end);
    sent += streams[0].sent;
    if (streams[0].closed) break;
  }
  note("PING flood: %u KiB of PINGs taken", sent >> 10);
  expect_victim_served(victim.stop(), 100);
  Peer flooder(std::move(*s));
  const Ending e = flooder.read_ending(2s);
  note("PING flooder, reading at last: %s", e.to_string());
  EXPECT_TRUE(e.kind == Ending::Kind::kSilence || e.goaway_and_close(sbmp::ErrorCode::kOverloaded))
      << e.to_string();
  expect_alive_and_serving();
}

}  // namespace
}  // namespace coring::hostile::testing
