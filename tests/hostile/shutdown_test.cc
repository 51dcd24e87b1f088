// SIGTERM under load (issue 10, g): frames already sent are answered, every
// peer - never-reading, idle and mid-frame ones too - gets GOAWAY(SHUTDOWN)
// or a close, and the server exits within its shutdown deadline + 3 s and
// leaves no process behind. Exit status 0 is asserted only when no peer
// misbehaved (with never-reading peers the server may have to abort some).
//
// Servers: sbmp_echo_server --threads=1 --idle_timeout=60s --stats, with
// --shutdown_deadline=2s once it has the flag (until then its built-in 5 s);
// echo_server --threads=1 (built-in 5 s).
#include <signal.h>
#include <sys/stat.h>

#include <thread>

#include "coring/codec/frame.h"
#include "hostile_test_support.h"

namespace coring::hostile::testing {
namespace {

using sbmp::ErrorCode;

constexpr int kPipelined = 16;
constexpr int kFramesEach = 40;
constexpr size_t kFrameSize = 4096;
constexpr auto kBuiltInDeadline = 5s;  // net::ServerOptions::shutdown_deadline

class ShutdownTest : public HostileTest {
 protected:
  // Starts sbmp_echo_server; the deadline it will keep.
  Clock::duration start_with_deadline() {
    std::vector<std::string> args = {"--idle_timeout=60s", "--stats"};
    Clock::duration deadline = kBuiltInDeadline;
    if (missing_flags(example_binary("sbmp_echo_server"), {"shutdown_deadline"}).empty()) {
      args.push_back("--shutdown_deadline=2s");
      deadline = 2s;
    } else {
      note("sbmp_echo_server has no --shutdown_deadline yet: its built-in 5 s applies");
    }
    if (start_sbmp(args) == nullptr) return {};
    return deadline;
  }

  // Peers with kFramesEach frames in flight (REQUEST_ID = index).
  std::vector<Peer> pipelined(int n) {
    std::vector<Peer> peers;
    for (int c = 0; c < n; ++c) {
      absl::StatusOr<Peer> p = Peer::connect(port());
      if (!p.ok()) {
        ADD_FAILURE() << p.status();
        break;
      }
      Bytes wire;
      for (int i = 0; i < kFramesEach; ++i) {
        const Bytes f = frame(0x0100, pattern(kFrameSize, c * 1000 + i), request_id_ext(i));
        wire.insert(wire.end(), f.begin(), f.end());
      }
      EXPECT_TRUE(p->send(wire).ok());
      peers.push_back(std::move(*p));
    }
    return peers;
  }

  // Frames `first`.. of peer `c` answered, in order, then GOAWAY(SHUTDOWN)
  // and close.
  static void expect_answered_then_goaway(Peer& p, int c, int first = 0) {
    for (int i = first; i < kFramesEach; ++i) {
      absl::StatusOr<ReceivedFrame> f = p.read_frame(Clock::now() + 3s);
      ASSERT_TRUE(f.ok()) << "peer " << c << " frame " << i << ": " << f.status();
      ASSERT_EQ(f->type(), 0x0100) << "peer " << c << " frame " << i;
      EXPECT_EQ(f->ext, request_id_ext(i));
      EXPECT_EQ(f->payload, pattern(kFrameSize, c * 1000 + i));
    }
    const Ending e = p.read_ending(3s);
    EXPECT_TRUE(e.goaway_and_close(ErrorCode::kShutdown)) << "peer " << c << ": " << e.to_string();
  }

  // Waits for the exit; checks the time and that nothing is left behind.
  // Returns the exit code (-1: did not exit).
  int expect_exit_within(Clock::time_point sigterm, Clock::duration deadline) {
    const pid_t pid = server_->pid();
    const auto limit = deadline + 3s;
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::max<Clock::duration>(0s, sigterm + limit - Clock::now()));
    const std::optional<int> code = server_->wait(left);
    const auto took = Clock::now() - sigterm;
    note("exit after SIGTERM: %s after %.2f s (deadline %.1f s + 3 s)",
         code ? "status " + std::to_string(*code) : std::string("none"),
         std::chrono::duration<double>(took).count(),
         std::chrono::duration<double>(deadline).count());
    EXPECT_TRUE(code.has_value()) << "server still running " << limit / 1ms << " ms after SIGTERM";
    if (!code) return -1;
    EXPECT_LE(took, limit);
    // With --stats: the counters it printed at exit (aborted_at_shutdown).
    const std::string out = server_->read_output(1s);
    if (size_t at = out.find("connections:"); at != std::string::npos) {
      note("%s", out.substr(at, out.find('\n', at) - at));
    }
    struct stat st;
    EXPECT_NE(::stat(("/proc/" + std::to_string(pid)).c_str(), &st), 0)
        << "process " << pid << " still there";
    return *code;
  }
};

TEST_F(ShutdownTest, SigtermUnderHostileLoadAnswersFramesAndExitsInTime) {
  const Clock::duration deadline = start_with_deadline();
  ASSERT_NE(server_, nullptr);
  std::vector<Peer> busy = pipelined(kPipelined);
  std::vector<Peer> idle, mid_frame;
  for (int i = 0; i < 8; ++i) {
    absl::StatusOr<Peer> a = Peer::connect(port());
    absl::StatusOr<Peer> b = Peer::connect(port());
    ASSERT_TRUE(a.ok() && b.ok());
    ASSERT_TRUE(a->echo(0x0100, pattern(10, i)).ok());
    ASSERT_TRUE(
        b->send(concat({header(sbmp::kVersion13, 0, 0x0100, 1000, 0), pattern(10, i)})).ok());
    idle.push_back(std::move(*a));
    mid_frame.push_back(std::move(*b));
  }
  Flooder flood({.port = port(), .peers = 8});
  ASSERT_EQ(flood.connected(), 8u);
  for (size_t c = 0; c < busy.size(); ++c) {  // the server is at work on each
    absl::StatusOr<ReceivedFrame> f = busy[c].read_frame(Clock::now() + 3s);
    ASSERT_TRUE(f.ok()) << f.status();
  }
  std::this_thread::sleep_for(500ms);  // the flooders fill up
  flood.stop();

  const auto sigterm = Clock::now();
  ASSERT_TRUE(server_->signal(SIGTERM));
  for (size_t c = 0; c < busy.size(); ++c) {  // (their first echo was read above)
    expect_answered_then_goaway(busy[c], static_cast<int>(c), 1);
  }
  for (auto& p : idle) {
    const Ending e = p.read_ending(3s);
    EXPECT_TRUE(e.goaway_and_close(ErrorCode::kShutdown)) << "idle: " << e.to_string();
  }
  for (auto& p : mid_frame) {
    const Ending e = p.read_ending(3s);
    EXPECT_TRUE(e.goaway_and_close(ErrorCode::kShutdown) || e.kind == Ending::Kind::kEof ||
                e.kind == Ending::Kind::kReset)
        << "mid-frame: " << e.to_string();
  }
  // The never-reading peers are read only after the server is gone.
  const int code = expect_exit_within(sigterm, deadline);
  size_t goaway = 0;
  for (auto& s : flood.sockets()) {
    if (!s.valid()) continue;
    Peer p(std::move(s));
    const Ending e = p.read_ending(3s);
    EXPECT_TRUE(e.closed()) << "never-reading: " << e.to_string();
    if (e.kind == Ending::Kind::kGoaway) {
      EXPECT_EQ(e.code, static_cast<uint32_t>(ErrorCode::kShutdown)) << e.to_string();
      ++goaway;
    }
  }
  note("never-reading peers: %u of 8 found GOAWAY(SHUTDOWN), the rest a close; exit status %d",
       goaway, code);
}

TEST_F(ShutdownTest, SigtermWithWellBehavedPeersAnswersAllAndExitsZero) {
  const Clock::duration deadline = start_with_deadline();
  ASSERT_NE(server_, nullptr);
  std::vector<Peer> busy = pipelined(kPipelined);
  std::vector<Peer> idle;
  for (int i = 0; i < 8; ++i) {
    absl::StatusOr<Peer> p = Peer::connect(port());
    ASSERT_TRUE(p.ok());
    ASSERT_TRUE(p->echo(0x0100, pattern(10, i)).ok());
    idle.push_back(std::move(*p));
  }
  const auto sigterm = Clock::now();
  ASSERT_TRUE(server_->signal(SIGTERM));
  for (size_t c = 0; c < busy.size(); ++c) {
    expect_answered_then_goaway(busy[c], static_cast<int>(c));
    busy[c].socket().close();  // a well-behaved peer closes after GOAWAY
  }
  for (auto& p : idle) {
    const Ending e = p.read_ending(3s);
    EXPECT_TRUE(e.goaway_and_close(ErrorCode::kShutdown)) << "idle: " << e.to_string();
    p.socket().close();
  }
  EXPECT_EQ(expect_exit_within(sigterm, deadline), 0) << "no connection had to be aborted";
}

TEST_F(ShutdownTest, EchoServerSigtermWithNeverReadingPeersExitsInTime) {
  ASSERT_NE(start_echo(), nullptr);
  Victim victim({.port = port(), .raw = true});
  ASSERT_TRUE(victim.wait_for_frames(20, 3s));
  Flooder flood({.port = port(), .peers = 8, .raw = true});
  std::this_thread::sleep_for(500ms);
  flood.stop();
  victim.stop();
  const auto sigterm = Clock::now();
  ASSERT_TRUE(server_->signal(SIGTERM));
  expect_exit_within(sigterm, kBuiltInDeadline);
}

}  // namespace
}  // namespace coring::hostile::testing
