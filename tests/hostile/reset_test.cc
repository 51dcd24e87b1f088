// Resets (issue 10, f): HOSTILE_RESET_CONNS (default 1000) connections reset
// (SO_LINGER 0 + close) in the middle of a frame, or in the middle of the
// server's write (after many frames sent without reading). The server
// survives, the victim is served throughout, and what the server holds goes
// back to its baseline: /proc/PID/fd entries and the sockets in its io_uring
// fixed-file tables.
//
// Servers: sbmp_echo_server --threads=1 --idle_timeout=60s; echo_server
// --threads=1.
#include <algorithm>
#include <thread>

#include "coring/codec/frame.h"
#include "hostile_test_support.h"

namespace coring::hostile::testing {
namespace {

class ResetTest : public HostileTest {
 protected:
  struct Held {
    size_t fds = 0;
    std::optional<size_t> fixed_sockets;
    std::string to_string() const {
      return absl::StrFormat("%u fds, %s fixed-file sockets", fds,
                             fixed_sockets ? std::to_string(*fixed_sockets) : "?");
    }
  };
  Held held() const { return {server_->fd_count(), server_->fixed_sockets()}; }

  // What the server holds is back to `base` within `timeout`.
  void expect_back_to(const Held& base, Clock::duration timeout) {
    const auto deadline = Clock::now() + timeout;
    Held now = held();
    auto back = [&] {
      return now.fds <= base.fds &&
             (!base.fixed_sockets || now.fixed_sockets.value_or(SIZE_MAX) <= *base.fixed_sockets);
    };
    while (!back() && Clock::now() < deadline) {
      std::this_thread::sleep_for(100ms);
      now = held();
    }
    note("server holds %s (baseline %s)", now.to_string(), base.to_string());
    EXPECT_LE(now.fds, base.fds) << "fds not back to the baseline";
    if (base.fixed_sockets) {
      EXPECT_LE(now.fixed_sockets.value_or(SIZE_MAX), *base.fixed_sockets)
          << "connections still held in the fixed-file table";
    }
  }

  // Connects HOSTILE_RESET_CONNS peers `batch` at a time, lets `attack` do
  // its worst on each batch, then resets them.
  void reset_in_batches(size_t batch, const ConnectOptions& options,
                        const std::function<void(std::vector<Socket>&)>& attack, bool raw) {
    const size_t n = env_size("HOSTILE_RESET_CONNS", 1000);
    Victim victim({.port = port(), .raw = raw});
    ASSERT_TRUE(victim.wait_for_frames(20, 3s));
    std::this_thread::sleep_for(100ms);
    const Held base = held();
    const auto start = Clock::now();
    for (size_t done = 0; done < n && !victim.failed();) {
      absl::Status error;
      std::vector<Socket> sockets =
          connect_many(port(), std::min(batch, n - done), options, &error);
      ASSERT_TRUE(error.ok()) << error << " after " << done << " resets";
      attack(sockets);
      for (auto& s : sockets) s.reset();
      done += sockets.size();
    }
    note("%u connections reset in %.1f s", n,
         std::chrono::duration<double>(Clock::now() - start).count());
    expect_back_to(base, 3s);
    expect_victim_served(victim.stop(), 100);
    expect_alive_and_serving(raw);
  }

  // Sends frames (raw: bytes) without reading until the server stops taking
  // them (it is then blocked writing to us), at most 2 s per batch. Counts
  // the connections the server was writing to (echoes waiting unread).
  void fill_until_server_blocks(std::vector<Socket>& sockets, bool raw) {
    Bytes wire;  // 1 MiB
    const Bytes one = raw ? pattern(16 << 10, 3) : frame(0x0100, pattern(16 << 10, 3));
    for (int i = 0; i < 64; ++i) wire.insert(wire.end(), one.begin(), one.end());
    std::vector<PushStream> streams;
    for (auto& s : sockets) streams.push_back({.socket = &s, .prefix = &wire});
    push_streams(streams, 100ms, Clock::now() + 2s);
    // Until the server writes to every one (or 1 s passed).
    auto writing = [&] {
      return static_cast<size_t>(std::count_if(sockets.begin(), sockets.end(),
                                               [](const Socket& s) { return s.unread() > 0; }));
    };
    const auto until = Clock::now() + 1s;
    while (writing() < sockets.size() && Clock::now() < until) std::this_thread::sleep_for(5ms);
    mid_write_ += writing();
  }
  size_t mid_write_ = 0;
};

TEST_F(ResetTest, ThousandResetsMidFrame) {
  ASSERT_NE(start_sbmp({"--idle_timeout=60s"}), nullptr);
  // A header claiming 64 KiB and 10 KiB of it, then the reset.
  const Bytes partial =
      concat({header(sbmp::kVersion13, 0, 0x0100, 64 << 10, 0), pattern(10 << 10, 1)});
  reset_in_batches(
      100, {},
      [&](std::vector<Socket>& sockets) {
        for (auto& s : sockets) (void)s.send_all(partial, Clock::now() + 1s);
        std::this_thread::sleep_for(20ms);  // the server reads it
      },
      false);
}

TEST_F(ResetTest, ThousandResetsMidWrite) {
  ASSERT_NE(start_sbmp({"--idle_timeout=60s"}), nullptr);
  reset_in_batches(
      50, {.rcvbuf = 4096},
      [this](std::vector<Socket>& sockets) { fill_until_server_blocks(sockets, false); }, false);
  note("%u connections had echoes waiting when reset (server mid-write)", mid_write_);
}

TEST_F(ResetTest, EchoServerThousandResetsMidWrite) {
  ASSERT_NE(start_echo(), nullptr);
  reset_in_batches(
      50, {.rcvbuf = 4096},
      [this](std::vector<Socket>& sockets) { fill_until_server_blocks(sockets, true); }, true);
  note("%u connections had echoes waiting when reset (server mid-write)", mid_write_);
}

}  // namespace
}  // namespace coring::hostile::testing
