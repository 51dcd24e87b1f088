// Tests of net/stream.* and net/listener.*: echo over loopback TCP and Unix
// sockets, message sizes, many connections, partial reads and short writes,
// backpressure, half-close, resets, fixed-table exhaustion.
#include "coring/net/stream.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "coring/core/timer.h"
#include "coring/core/when_all.h"
#include "coring/net/listener.h"
#include "net_test_support.h"

namespace coring::net {
namespace {

using namespace std::chrono_literals;
using testing::echo_acceptor;
using testing::pattern;
using testing::read_exactly;
using testing::TestLoop;

// Sends `msg` and reads the echo back; for sizes beyond the socket buffers
// the write and the read run concurrently.
Task<absl::Status> round_trip(NetContext& net, SocketAddress addr, std::vector<uint8_t> msg) {
  absl::StatusOr<Stream> c = co_await Stream::connect(net, addr);
  if (!c.ok()) co_return c.status();
  std::vector<uint8_t> got;
  auto writer = [](Stream& s, const std::vector<uint8_t>& m) -> Task<absl::Status> {
    co_return co_await s.write(absl::MakeConstSpan(m));
  };
  auto [w, r] = co_await when_all(writer(*c, msg), read_exactly(*c, msg.size(), got));
  if (!w.ok()) co_return w;
  if (!r.ok()) co_return r;
  if (got != msg) co_return absl::DataLossError("echo differs");
  co_return co_await c->close();
}

class StreamEcho : public ::testing::TestWithParam<size_t> {};

TEST_P(StreamEcho, EchoesEveryByte) {
  TestLoop t;
  auto listener = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(listener.ok()) << listener.status();
  auto addr = (*listener)->local_address();
  ASSERT_TRUE(addr.ok());
  spawn(*t.loop, echo_acceptor(**listener, 1));
  absl::Status s = t.run(round_trip(*t.net, *addr, pattern(GetParam())));
  EXPECT_TRUE(s.ok()) << s;
  t.drain();
}

INSTANTIATE_TEST_SUITE_P(Sizes, StreamEcho,
                         ::testing::Values(1, 100, 8192, 8193, 65536, 300000, 1 << 20));

TEST(StreamTest, ZeroByteWriteCompletes) {
  TestLoop t;
  auto listener = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(listener.ok());
  auto addr = (*listener)->local_address();
  spawn(*t.loop, echo_acceptor(**listener, 1));
  absl::Status s = t.run([](NetContext& net, SocketAddress a) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, a);
    if (!c.ok()) co_return c.status();
    if (auto w = co_await c->write(absl::Span<const uint8_t>()); !w.ok()) co_return w;
    co_return co_await c->close();
  }(*t.net, *addr));
  EXPECT_TRUE(s.ok()) << s;
  t.drain();
}

// Echoes by handing each received buffer to the send queue.
Task<> handover_echo(Listener& listener) {
  absl::StatusOr<Stream> s = co_await listener.accept();
  if (!s.ok()) co_return;
  for (;;) {
    absl::StatusOr<RecvBuffer> buf = co_await s->read();
    if (!buf.ok() || buf->empty()) break;
    if (!(co_await s->write(std::move(*buf))).ok()) break;
  }
  (void)co_await s->close();
}

// write(RecvBuffer&&): the send queue sends from a large receive buffer
// itself and gives it back once sent - no copy, every byte in order, and the
// ring whole afterwards.
TEST(StreamTest, HandedOverReceiveBuffersAreSentWithoutACopy) {
  TestLoop t;
  auto listener = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(listener.ok());
  auto addr = (*listener)->local_address();
  spawn(*t.loop, handover_echo(**listener));
  absl::Status s = t.run(round_trip(*t.net, *addr, pattern(300000)));
  EXPECT_TRUE(s.ok()) << s;
  t.drain();
  const NetStats& stats = t.net->stats();
  EXPECT_GT(stats.adopted_writes, 0u);
  EXPECT_EQ(t.net->buffers().outstanding(), 0u);
}

// The fixed-file table fills up: the listener backs off instead of failing
// or spinning, the connections it already has keep working, and waiting
// connections are served once slots free up.
TEST(ListenerTest, AFullFixedFileTableFallsBackToPlainFds) {
  LoopOptions lo;
  lo.fixed_files = 16;
  TestLoop t(std::move(lo));
  ListenerOptions options;
  options.reserved_slots = 4;  // at most 12 accepted streams at a time
  auto listener = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0), options);
  ASSERT_TRUE(listener.ok());
  const SocketAddress addr = *(*listener)->local_address();
  std::stop_source stop;
  Task<> acceptor = echo_acceptor(**listener, 1000);
  acceptor.set_stop_token(stop.get_token());
  spawn(*t.loop, std::move(acceptor));

  std::atomic<bool> done{false};
  std::atomic<bool> fresh_served{false};
  std::atomic<int> first_round{0}, second_round{0};
  // Plain blocking sockets on another thread: they use no fixed slots.
  std::thread clients([&] {
    constexpr int kClients = 20;
    std::vector<int> fds;
    auto echo_once = [](int fd, int timeout_ms) {
      timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      char c = 0;
      return ::recv(fd, &c, 1, 0) == 1 && c == 'x';
    };
    for (int i = 0; i < kClients; ++i) {
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      if (::connect(fd, addr.data(), addr.size()) == 0) ::send(fd, "x", 1, 0);
      fds.push_back(fd);
    }
    std::vector<bool> served(kClients, false);
    for (int i = 0; i < kClients; ++i) {
      served[i] = echo_once(fds[i], 300);
      first_round += served[i];
    }
    // Free slots: close every connection that was served.
    for (int i = 0; i < kClients; ++i) {
      if (served[i]) ::close(std::exchange(fds[i], -1));
    }
    for (int i = 0; i < kClients; ++i) {
      if (fds[i] >= 0) second_round += echo_once(fds[i], 5000);
    }
    for (int fd : fds) {
      if (fd >= 0) ::close(fd);
    }
    // Once the burst is over, a new connection is served as usual.
    int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    if (::connect(fd, addr.data(), addr.size()) == 0 && ::send(fd, "x", 1, 0) == 1) {
      fresh_served = echo_once(fd, 5000);
    }
    ::close(fd);
    done = true;
  });
  t.run([](std::atomic<bool>& d) -> Task<> {
    while (!d.load()) (void)co_await sleep_for(1ms);
  }(done));
  clients.join();
  // The table is a speed-up, not a limit: it has no room for a whole
  // backlog, so the listener accepts plain fds, and every connection is
  // served at once (none is dropped by a multishot accept into a full table).
  EXPECT_EQ(first_round.load(), 20);
  EXPECT_EQ(second_round.load(), 0);
  EXPECT_TRUE(fresh_served.load());
  EXPECT_EQ((*listener)->plain_accepts(), 21u);
  EXPECT_EQ((*listener)->backoffs(), 0u);
  t.drain();
  stop.request_stop();  // the acceptor ends before the listener goes
  for (int i = 0; i < 10; ++i) t.loop->run_once(false);
}

}  // namespace
}  // namespace coring::net
