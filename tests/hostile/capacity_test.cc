// Capacity (issue 10, b): thousands of idle connections and a victim are all
// served by one thread, with RLIMIT_NOFILE at the hard limit (20000 here);
// over --max_connections, or over the limit the server derives from
// RLIMIT_NOFILE, a new connection gets GOAWAY(OVERLOADED) and a close within
// 2 s - never silence in the backlog.
//
// Server: sbmp_echo_server --threads=1 --idle_timeout=60s and
// --max_connections=0 (derived), 64 or HOSTILE_LIMIT_CONNS (2000); one run
// with RLIMIT_NOFILE 512.
#include <thread>

#include "coring/codec/frame.h"
#include "hostile_test_support.h"

namespace coring::hostile::testing {
namespace {

using sbmp::ErrorCode;

// What became of connections that each sent one frame.
struct Served {
  size_t echoed = 0;
  size_t overloaded = 0;  // GOAWAY(OVERLOADED) and close
  size_t other = 0;       // silence, another code, garbage
  std::string first_other;
};

// Sends one small frame on every peer, then reads each one's answer; all
// answers must come by `deadline`.
Served send_one_frame_each(std::vector<Peer>& peers, Clock::time_point deadline) {
  const Bytes payload = pattern(32, 1);
  for (auto& p : peers) (void)p.socket().send_now(frame(0x0100, payload));
  Served s;
  for (auto& p : peers) {
    absl::StatusOr<ReceivedFrame> f = p.read_frame(deadline);
    if (f.ok() && f->type() == 0x0100 && f->payload == payload) {
      ++s.echoed;
      continue;
    }
    std::string what =
        f.ok() ? absl::StrFormat("a frame of type 0x%04x", f->type()) : f.status().ToString();
    if (f.ok() && goaway_code(*f) == static_cast<uint32_t>(ErrorCode::kOverloaded)) {
      const Ending rest = p.read_ending(1s);
      if (rest.kind == Ending::Kind::kEof || rest.kind == Ending::Kind::kReset) {
        ++s.overloaded;
        continue;
      }
      what = "GOAWAY(OVERLOADED) not followed by a close: " + rest.to_string();
    }
    if (s.first_other.empty()) s.first_other = what;
    ++s.other;
  }
  return s;
}

using CapacityTest = HostileTest;

std::vector<Peer> as_peers(std::vector<Socket> sockets) {
  std::vector<Peer> peers;
  peers.reserve(sockets.size());
  for (auto& s : sockets) peers.emplace_back(std::move(s));
  return peers;
}

TEST_F(CapacityTest, ThreeThousandIdleConnectionsAndAVictimAreAllServed) {
  const size_t n = env_size("HOSTILE_IDLE_CONNS", 3000);
  const uint64_t nofile = raise_nofile_limit();
  ASSERT_GE(nofile, n + 500) << "RLIMIT_NOFILE hard limit too low for " << n << " connections";
  ASSERT_NE(start_sbmp({"--idle_timeout=60s", "--max_connections=0"}), nullptr);
  absl::Status error;
  std::vector<Peer> idle = as_peers(connect_many(port(), n, {}, &error));
  note("%u of %u idle connections completed the handshake (%s)", idle.size(), n, error.ToString());
  EXPECT_TRUE(error.ok()) << error;
  // The victim comes last: it must not be left in the backlog.
  VictimReport victim = echo_round({.port = port()}, 200);
  expect_victim_served(victim, 200);
  const Served s = send_one_frame_each(idle, Clock::now() + 5s);
  note("idle connections: %u echoed, %u GOAWAY(OVERLOADED), %u neither (%s); server RSS %u KiB",
       s.echoed, s.overloaded, s.other, s.first_other, server_->rss_kib());
  EXPECT_EQ(s.echoed, n) << "first not served: " << s.first_other;
  expect_alive_and_serving();
}

// Split payloads (sbmp_echo_server's default, FramedOptions::split_payloads):
// peers that each send a frame and the start of one more - its header and
// part of a payload whose rest would fit one receive buffer - and stop must
// not take the receive ring (1024 buffers) from the others. Their readers
// keep at most half of it waiting for the rest and copy past that; with no
// bound, 1,500 such peers would hold more buffers than the ring has. The
// victim is served meanwhile, and every frame is echoed once its rest comes.
TEST_F(CapacityTest, ThousandsStoppedMidFrameDoNotTakeTheRing) {
  const size_t n = env_size("HOSTILE_STALLED_CONNS", 1500);
  const uint64_t nofile = raise_nofile_limit();
  ASSERT_GE(nofile, n + 500) << "RLIMIT_NOFILE hard limit too low for " << n << " connections";
  ASSERT_NE(start_sbmp({"--idle_timeout=60s", "--max_connections=0"}), nullptr);
  absl::Status error;
  std::vector<Peer> peers = as_peers(connect_many(port(), n, {}, &error));
  ASSERT_TRUE(error.ok()) << error;
  const Bytes small = pattern(100, 1);
  const Bytes large = pattern(12000, 2);
  const Bytes wire = concat({frame(0x0100, small), frame(0x0100, large)});
  const size_t cut = wire.size() - 4000;
  for (auto& p : peers) {
    ASSERT_TRUE(p.socket().send_all(absl::MakeConstSpan(wire).first(cut), Clock::now() + 5s).ok());
  }
  size_t first = 0;
  for (auto& p : peers) {
    absl::StatusOr<ReceivedFrame> f = p.read_frame(Clock::now() + 10s);
    first += f.ok() && f->payload == small;
  }
  EXPECT_EQ(first, n) << "the frame before the stopped one not echoed";
  VictimReport victim = echo_round({.port = port()}, 200);
  expect_victim_served(victim, 200);
  for (auto& p : peers) {
    ASSERT_TRUE(
        p.socket().send_all(absl::MakeConstSpan(wire).subspan(cut), Clock::now() + 5s).ok());
  }
  size_t second = 0;
  for (auto& p : peers) {
    absl::StatusOr<ReceivedFrame> f = p.read_frame(Clock::now() + 10s);
    second += f.ok() && f->payload == large;
  }
  note("%u peers stopped mid-frame, then went on: %u of their frames echoed", n, second);
  EXPECT_EQ(second, n);
  expect_alive_and_serving();
}

// Over --max_connections: GOAWAY(OVERLOADED) then close; once some leave,
// there is room again.
TEST_F(CapacityTest, OverMaxConnectionsNewPeersGetGoawayOverloaded) {
  constexpr size_t kLimit = 64;
  ASSERT_NE(start_sbmp({"--idle_timeout=60s", "--max_connections=" + std::to_string(kLimit)}),
            nullptr);
  Victim victim({.port = port()});
  ASSERT_TRUE(victim.wait_for_frames(10, 3s));
  absl::Status error;
  std::vector<Peer> served = as_peers(connect_many(port(), kLimit - 1, {}, &error));
  ASSERT_TRUE(error.ok()) << error;
  const Served in = send_one_frame_each(served, Clock::now() + 5s);
  EXPECT_EQ(in.echoed, kLimit - 1) << in.first_other;
  for (int i = 0; i < 10; ++i) {
    absl::StatusOr<Peer> extra = Peer::connect(port());
    ASSERT_TRUE(extra.ok()) << extra.status();
    const Ending e = extra->read_ending(2s);
    EXPECT_TRUE(e.goaway_and_close(ErrorCode::kOverloaded))
        << "extra " << i << ": " << e.to_string();
  }
  // Room again once ten leave.
  served.erase(served.end() - 10, served.end());
  std::this_thread::sleep_for(300ms);
  VictimReport again = echo_round({.port = port(), .seed = 5}, 20);
  EXPECT_EQ(again.frames, 20u) << "no room after peers left: " << again.first_error;
  expect_victim_served(victim.stop(), 10);
}

// The same past a limit far above a thousand connections.
TEST_F(CapacityTest, OverALargeMaxConnectionsNewPeersGetGoawayNotSilence) {
  const size_t limit = env_size("HOSTILE_LIMIT_CONNS", 2000);
  ASSERT_GE(raise_nofile_limit(), limit + 500);
  ASSERT_NE(start_sbmp({"--idle_timeout=60s", "--max_connections=" + std::to_string(limit)}),
            nullptr);
  absl::Status error;
  std::vector<Peer> peers = as_peers(connect_many(port(), limit, {}, &error));
  EXPECT_TRUE(error.ok()) << error;
  const Served in = send_one_frame_each(peers, Clock::now() + 5s);
  note("%u connections up to the limit of %u: %u echoed, %u neither (%s)", peers.size(), limit,
       in.echoed, in.other, in.first_other);
  EXPECT_EQ(in.echoed, limit) << in.first_other;
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<Peer> extra = Peer::connect(port());
    if (!extra.ok()) {
      ADD_FAILURE() << "extra " << i << ": " << extra.status();
      continue;
    }
    const Ending e = extra->read_ending(2s);
    note("connection %u over the limit: %s", limit + i + 1, e.to_string());
    EXPECT_TRUE(e.goaway_and_close(ErrorCode::kOverloaded)) << e.to_string();
  }
}

// --max_connections=0 with RLIMIT_NOFILE 512: whatever the derived limit,
// every connection is either served or told GOAWAY(OVERLOADED), and the
// victim, which came first, is served throughout.
TEST_F(CapacityTest, DerivedLimitFromALowFileLimitAnswersTheOverflowWithGoaway) {
#ifdef CORING_SANITIZED
  // The sanitizer runtime checks that memory is readable by writing it to a
  // pipe: in a process with no descriptor left, UBSan's vptr check fails on
  // sound objects ("invalid vptr ... memory cannot be printed").
  GTEST_SKIP() << "descriptor exhaustion makes the sanitizer runtime report false errors";
#endif
  constexpr uint64_t kNofile = 512;
  constexpr size_t kConns = 800;
  ASSERT_NE(start_sbmp({"--idle_timeout=60s", "--max_connections=0"}, {.nofile = kNofile}),
            nullptr);
  Victim victim({.port = port()});
  ASSERT_TRUE(victim.wait_for_frames(10, 3s));
  absl::Status error;
  std::vector<Peer> peers = as_peers(connect_many(port(), kConns, {}, &error, 64));
  EXPECT_TRUE(error.ok()) << error;
  const Served s = send_one_frame_each(peers, Clock::now() + 5s);
  note("RLIMIT_NOFILE %u, %u connections: %u echoed, %u GOAWAY(OVERLOADED), %u neither (%s)",
       kNofile, peers.size(), s.echoed, s.overloaded, s.other, s.first_other);
  EXPECT_EQ(s.other, 0u) << "left unanswered: " << s.first_other;
  EXPECT_EQ(s.echoed + s.overloaded, kConns);
  EXPECT_GT(s.echoed, kNofile / 4) << "the derived limit serves too few";
  expect_victim_served(victim.stop(), 10);
}

}  // namespace
}  // namespace coring::hostile::testing
