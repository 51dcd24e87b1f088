// Tests of the socket awaitables (core/accept.h, connect.h, recv.h, send.h,
// close.h), cancellation (cancel.h) and per-op deadlines (timer.h): loopback
// TCP and socket pairs only.
#include <gtest/gtest.h>

#include <array>
#include <chrono>
#include <cstring>
#include <string>
#include <vector>

#include "coring/core/accept.h"
#include "coring/core/close.h"
#include "coring/core/connect.h"
#include "coring/core/recv.h"
#include "coring/core/send.h"
#include "coring/core/spawn.h"
#include "coring/core/task.h"
#include "coring/core/timer.h"
#include "test_loop_util.h"

namespace coring {
namespace {

using namespace std::chrono_literals;
using testing::Fd;
using testing::make_loop;
using testing::run_until;

absl::Span<const uint8_t> bytes(const std::string& s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

Task<std::string> client(uint16_t port, std::string message) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr = testing::loopback_addr(port);
  absl::Status c = co_await coring::connect(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  if (!c.ok()) co_return "connect: " + c.ToString();
  absl::StatusOr<size_t> n = co_await send(s.fd, bytes(message));
  if (!n.ok()) co_return "send: " + n.status().ToString();
  std::array<uint8_t, 256> buf{};
  std::string reply;
  while (reply.size() < message.size()) {
    absl::StatusOr<size_t> r = co_await recv(s.fd, absl::MakeSpan(buf));
    if (!r.ok()) co_return "recv: " + r.status().ToString();
    if (*r == 0) break;
    reply.append(reinterpret_cast<char*>(buf.data()), *r);
  }
  co_return reply;
}

Task<> echo_once(int listener) {
  absl::StatusOr<int> conn = co_await accept(listener);
  EXPECT_TRUE(conn.ok()) << conn.status();
  if (!conn.ok()) co_return;
  std::array<uint8_t, 256> buf{};
  absl::StatusOr<size_t> n = co_await recv(*conn, absl::MakeSpan(buf));
  EXPECT_TRUE(n.ok());
  if (n.ok()) {
    absl::StatusOr<size_t> w = co_await send(*conn, absl::MakeConstSpan(buf.data(), *n));
    EXPECT_TRUE(w.ok());
  }
  absl::Status c = co_await close(*conn);
  EXPECT_TRUE(c.ok()) << c;
}

TEST(SocketOpsTest, AcceptConnectSendRecvOverLoopbackTcp) {
  auto loop = make_loop();
  uint16_t port = 0;
  Fd listener = testing::listen_loopback(&port);
  spawn(*loop, echo_once(listener.fd));
  EXPECT_EQ(loop->block_on(client(port, "hello coring")), "hello coring");
  EXPECT_EQ(loop->stats().stale_cqes, 0u);
}

TEST(SocketOpsTest, ConnectRefusedIsUnavailableWithErrnoName) {
  auto loop = make_loop();
  uint16_t port = 0;
  { Fd l = testing::listen_loopback(&port); }  // closed: nobody listens there now
  std::string result = loop->block_on(client(port, "x"));
  EXPECT_NE(result.find("ECONNREFUSED"), std::string::npos) << result;
  EXPECT_NE(result.find("UNAVAILABLE"), std::string::npos) << result;
}

// --- A recv whose coroutine is destroyed mid-flight --------------------------

struct ReaderState {
  bool started = false;
  bool resumed = false;
};

Task<> frame_buffer_reader(int fd, ReaderState* state) {
  std::array<uint8_t, 4096> frame_buffer;  // lives in the coroutine frame
  state->started = true;
  absl::StatusOr<size_t> n = co_await recv(fd, absl::MakeSpan(frame_buffer));
  state->resumed = true;  // never reached: the frame is destroyed first
  (void)n;
}

Task<std::string> read_some(int fd) {
  std::array<uint8_t, 64> buf{};
  absl::StatusOr<size_t> n = co_await recv(fd, absl::MakeSpan(buf));
  if (!n.ok()) co_return n.status().ToString();
  co_return std::string(reinterpret_cast<char*>(buf.data()), *n);
}

TEST(SocketOpsTest, RecvCancelledMidFlightNeverWritesTheFreedBuffer) {
  auto loop = make_loop();
  auto [a, b] = testing::socket_pair();
  ReaderState state;
  {
    Task<> reader = frame_buffer_reader(a.fd, &state);
    loop->schedule(reader.handle());
    loop->run_once(false);
    ASSERT_TRUE(state.started);
    ASSERT_EQ(loop->stats().ops_in_flight, 1u);
    // `reader` is destroyed here, suspended in the recv: the frame (and the
    // buffer the kernel was given) is freed.
  }
  // Data arriving now must not land in the freed frame (ASan would see it),
  // and must not be consumed by the dead recv either.
  ASSERT_EQ(::write(b.fd, "after", 5), 5);
  for (int i = 0; i < 5; ++i) loop->run_once(false);
  EXPECT_FALSE(state.resumed);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
  // The slot is reused by the next op; the old generation's CQE (if any)
  // went nowhere.
  EXPECT_EQ(loop->block_on(read_some(a.fd)), "after");
  EXPECT_EQ(loop->stats().stale_cqes, 0u);
}

// --- Deadlines ----------------------------------------------------------------

Task<absl::Status> recv_with_deadline(int fd, std::chrono::milliseconds d) {
  std::array<uint8_t, 16> buf{};
  absl::StatusOr<size_t> n = co_await recv(fd, absl::MakeSpan(buf)).timeout(d);
  co_return n.status();
}

TEST(SocketOpsTest, LinkedTimeoutCancelsARecvThatNeverCompletes) {
  auto loop = make_loop();
  auto [a, b] = testing::socket_pair();
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = loop->block_on(recv_with_deadline(a.fd, 50ms));
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_GE(std::chrono::steady_clock::now() - start, 50ms);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
}

TEST(SocketOpsTest, LinkedTimeoutDoesNotFireWhenDataArrives) {
  auto loop = make_loop();
  auto [a, b] = testing::socket_pair();
  ASSERT_EQ(::write(b.fd, "x", 1), 1);
  absl::Status s = loop->block_on(recv_with_deadline(a.fd, 5s));
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);  // the timeout's CQE came in too
}

// --- Stop tokens --------------------------------------------------------------

Task<> pending_recv(int fd, std::vector<absl::StatusCode>* results) {
  std::array<uint8_t, 8> buf{};
  absl::StatusOr<size_t> n = co_await recv(fd, absl::MakeSpan(buf));
  results->push_back(n.status().code());
}

TEST(SocketOpsTest, StopTokenCancelsAThousandPendingOps) {
  LoopOptions options;
  options.ring.sq_entries = 64;  // the 1,000 cancels overflow the SQ many times
  auto loop = make_loop(std::move(options));
  auto [a, b] = testing::socket_pair();
  std::stop_source stop;
  std::vector<absl::StatusCode> results;
  constexpr int kOps = 1000;
  for (int i = 0; i < kOps; ++i) {
    Task<> t = pending_recv(a.fd, &results);
    t.set_stop_token(stop.get_token());
    spawn(*loop, std::move(t));
  }
  for (int i = 0; i < 5; ++i) loop->run_once(false);
  ASSERT_EQ(loop->stats().ops_in_flight, static_cast<uint64_t>(kOps));
  const uint64_t sq_full_before = loop->stats().sq_full;
  stop.request_stop();
  ASSERT_TRUE(run_until(*loop, [&] { return results.size() == kOps; }));
  EXPECT_GT(loop->stats().sq_full, sq_full_before);
  for (absl::StatusCode c : results) ASSERT_EQ(c, absl::StatusCode::kCancelled);
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);
}

TEST(SocketOpsTest, StopFromAnotherThreadCancels) {
  auto loop = make_loop();
  auto [a, b] = testing::socket_pair();
  std::stop_source stop;
  std::vector<absl::StatusCode> results;
  Task<> t = pending_recv(a.fd, &results);
  t.set_stop_token(stop.get_token());
  spawn(*loop, std::move(t));
  loop->run_once(false);
  std::thread other([&] { stop.request_stop(); });
  other.join();
  ASSERT_TRUE(run_until(*loop, [&] { return results.size() == 1; }));
  EXPECT_EQ(results[0], absl::StatusCode::kCancelled);
}

// --- Multishot accept into fixed files ---------------------------------------

Task<std::vector<uint32_t>> accept_n(int listener, int n) {
  AcceptStream accepts = accept_multishot_direct(listener);
  std::vector<uint32_t> slots;
  for (int i = 0; i < n; ++i) {
    absl::StatusOr<uint32_t> slot = co_await accepts.next();
    EXPECT_TRUE(slot.ok()) << slot.status();
    if (!slot.ok()) break;
    slots.push_back(*slot);
  }
  co_return slots;
}

Task<std::string> recv_fixed_file(uint32_t slot) {
  std::array<uint8_t, 64> buf{};
  absl::StatusOr<size_t> n = co_await recv(FileRef::fixed_index(slot), absl::MakeSpan(buf));
  if (!n.ok()) co_return n.status().ToString();
  absl::StatusOr<size_t> w =
      co_await send(FileRef::fixed_index(slot), absl::MakeConstSpan(buf.data(), *n));
  if (!w.ok()) co_return w.status().ToString();
  absl::Status c = co_await close_direct(slot);
  if (!c.ok()) co_return c.ToString();
  co_return std::string(reinterpret_cast<char*>(buf.data()), *n);
}

TEST(SocketOpsTest, MultishotAcceptDirectYieldsFixedFileSlots) {
  auto loop = make_loop();
  uint16_t port = 0;
  Fd listener = testing::listen_loopback(&port);
  std::vector<Fd> clients;
  for (int i = 0; i < 3; ++i) {
    clients.emplace_back(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in addr = testing::loopback_addr(port);
    ASSERT_EQ(::connect(clients.back().fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  }
  std::vector<uint32_t> slots = loop->block_on(accept_n(listener.fd, 3));
  ASSERT_EQ(slots.size(), 3u);
  EXPECT_NE(slots[0], slots[1]);
  ASSERT_EQ(::write(clients[1].fd, "fixed", 5), 5);
  EXPECT_EQ(loop->block_on(recv_fixed_file(slots[1])), "fixed");
  char echo[8] = {};
  ASSERT_EQ(::read(clients[1].fd, echo, sizeof(echo)), 5);
  EXPECT_STREQ(echo, "fixed");
  EXPECT_EQ(loop->stats().ops_in_flight, 0u);  // the destroyed stream's op is gone
}

}  // namespace
}  // namespace coring
