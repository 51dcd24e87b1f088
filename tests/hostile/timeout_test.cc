// Timeouts (issue 10, d): a peer that trickles a frame one byte every 2 s is
// never idle, so only --frame_timeout can end it: GOAWAY and close once it
// passes (3 s here). A silent peer - connected, after an echo, or in the
// middle of a header - gets GOAWAY(IDLE_TIMEOUT) after --idle_timeout (2 s),
// and one that also never reads is closed all the same. The victim, busy all
// along, is never closed.
//
// Server: sbmp_echo_server --threads=1 with --idle_timeout=2s, or
// --frame_timeout=3s --idle_timeout=60s (skipped while --frame_timeout is
// missing).
#include <poll.h>

#include <thread>

#include "coring/codec/frame.h"
#include "hostile_test_support.h"

namespace coring::hostile::testing {
namespace {

using sbmp::ErrorCode;

constexpr auto kFrameTimeout = 3s;
constexpr auto kIdleTimeout = 2s;

// Sends `bytes` one at a time every `every` until the server answers (or
// the bytes run out, or `limit` passes); then reads how it ended. `elapsed`
// in the result counts from the first byte.
Ending trickle(Peer& peer, const Bytes& bytes, Clock::duration every, Clock::duration limit) {
  const auto start = Clock::now();
  for (size_t i = 0; i < bytes.size() && Clock::now() - start < limit; ++i) {
    if (!peer.socket().send_now(absl::MakeConstSpan(bytes).subspan(i, 1)).ok()) break;
    pollfd p{peer.socket().fd(), POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(every / 1ms)) > 0) break;  // the server spoke
  }
  Ending e = peer.read_ending(std::max<Clock::duration>(1ms, limit - (Clock::now() - start)));
  e.elapsed = Clock::now() - start;
  return e;
}

class TimeoutTest : public HostileTest {
 protected:
  // Sends `at_once`, then trickles `rest`; expects GOAWAY and close once
  // --frame_timeout passed, and the victim served meanwhile.
  void expect_trickle_closed_after_frame_timeout(const Bytes& at_once, const Bytes& rest) {
    ASSERT_NE(start_sbmp({"--frame_timeout=3s", "--idle_timeout=60s"}), nullptr);
    Victim victim({.port = port()});
    ASSERT_TRUE(victim.wait_for_frames(20, 3s));
    absl::StatusOr<Peer> peer = Peer::connect(port());
    ASSERT_TRUE(peer.ok()) << peer.status();
    if (!at_once.empty()) {
      ASSERT_TRUE(peer->send(at_once).ok());
    }
    const auto every = std::chrono::milliseconds(env_size("HOSTILE_TRICKLE_MS", 2000));
    const Ending e = trickle(*peer, rest, every, kFrameTimeout + 4s);
    note("%u bytes at once, then 1 byte every %d ms: %s", at_once.size(),
         static_cast<int>(every.count()), e.to_string());
    EXPECT_TRUE(e.kind == Ending::Kind::kGoaway && e.closed_after)
        << "wanted GOAWAY and close, got " << e.to_string();
    EXPECT_GE(e.elapsed, kFrameTimeout - 500ms) << "closed before --frame_timeout";
    EXPECT_LE(e.elapsed, kFrameTimeout + 3s) << "not closed in time after --frame_timeout";
    expect_victim_served(victim.stop(), 100);
  }
};

TEST_F(TimeoutTest, TricklingHeaderIsClosedAfterFrameTimeout) {
  HOSTILE_REQUIRE_FLAGS("frame_timeout");
  expect_trickle_closed_after_frame_timeout({}, frame(0x0100, pattern(48, 1)));
}

TEST_F(TimeoutTest, TricklingBodyIsClosedAfterFrameTimeout) {
  HOSTILE_REQUIRE_FLAGS("frame_timeout");
  const Bytes f = frame(0x0100, pattern(1000, 2));
  const auto body = f.begin() + sbmp::kHeaderSize;
  expect_trickle_closed_after_frame_timeout(Bytes(f.begin(), body), Bytes(body, f.end()));
}

TEST_F(TimeoutTest, SilentPeersGetGoawayIdleTimeoutBusyVictimDoesNot) {
  ASSERT_NE(start_sbmp({"--idle_timeout=2s"}), nullptr);
  Victim victim({.port = port()});
  ASSERT_TRUE(victim.wait_for_frames(20, 3s));
  const auto start = Clock::now();
  absl::StatusOr<Peer> mute = Peer::connect(port());
  absl::StatusOr<Peer> after_echo = Peer::connect(port());
  absl::StatusOr<Peer> mid_header = Peer::connect(port());
  ASSERT_TRUE(mute.ok() && after_echo.ok() && mid_header.ok());
  ASSERT_TRUE(after_echo->echo(0x0100, pattern(100, 1)).ok());
  Bytes seven = frame(0x0100, pattern(10, 1));
  seven.resize(7);
  ASSERT_TRUE(mid_header->send(seven).ok());
  for (auto [name, peer] :
       {std::pair{"silent from the start", &*mute}, std::pair{"silent after an echo", &*after_echo},
        std::pair{"silent mid-header", &*mid_header}}) {
    const Ending e = peer->read_ending(kIdleTimeout + 3s);
    const auto since_connect = Clock::now() - start;
    note("%s: %s, %.1f s after connecting", name, e.to_string(),
         std::chrono::duration<double>(since_connect).count());
    EXPECT_TRUE(e.goaway_and_close(ErrorCode::kIdleTimeout)) << name << ": " << e.to_string();
    EXPECT_GE(since_connect, kIdleTimeout - 600ms) << name << ": closed before the idle timeout";
  }
  // Several idle timeouts later the busy victim is still being served.
  std::this_thread::sleep_for(kIdleTimeout);
  expect_victim_served(victim.stop(), 200);
}

// Floods without reading, then falls silent: the idle timeout cannot deliver
// its GOAWAY to a peer that does not read, so the server must close the
// connection anyway (reset or FIN) within twice the timeout or so.
TEST_F(TimeoutTest, NeverReadingSilentPeerIsClosedAfterIdleTimeout) {
  ASSERT_NE(start_sbmp({"--idle_timeout=2s"}), nullptr);
  Flooder flood({.port = port(), .peers = 1});
  ASSERT_EQ(flood.connected(), 1u);
  std::this_thread::sleep_for(1s);
  flood.stop();  // silent from here on, and still not reading
  const auto silent_since = Clock::now();
  Socket& s = flood.sockets()[0];
  while (s.valid() && !s.peer_gone() && Clock::now() - silent_since < 2 * kIdleTimeout + 3s) {
    std::this_thread::sleep_for(50ms);
  }
  const auto waited = Clock::now() - silent_since;
  note("never-reading peer silent for %.1f s: %s", std::chrono::duration<double>(waited).count(),
       !s.valid() || s.peer_gone() ? "closed by the server" : "still open");
  EXPECT_TRUE(!s.valid() || s.peer_gone()) << "a silent never-reading peer was never closed";
  // (Whether others are served during the flood is FairnessTest's business.)
  expect_alive_and_serving();
}

}  // namespace
}  // namespace coring::hostile::testing
