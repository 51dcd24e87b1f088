// Tests of net/stream.* and net/listener.*: echo over loopback TCP and Unix
// sockets, message sizes, many connections, partial reads and short writes,
// backpressure, half-close, resets, fixed-table exhaustion.
#include "coring/net/stream.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "coring/core/fixed_files.h"
#include "coring/core/timer.h"
#include "coring/core/when_all.h"
#include "coring/net/listener.h"
#include "coring/net/unique_fd.h"
#include "net_test_support.h"

namespace coring::net {
namespace {

using namespace std::chrono_literals;
using testing::echo_acceptor;
using testing::handover_handler;
using testing::pattern;
using testing::PlainListener;
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
  EXPECT_EQ(t.net->adopted_buffers(), 0u);
}

// An adopted receive buffer alone in the queue leaves in one SEND, not a
// SENDMSG: the kernel then reads no msghdr or iovec the stream wrote for it
// (with a thousand connections, cold cache lines per message each).
TEST(StreamTest, AnAdoptedBufferAloneLeavesInOneSend) {
  TestLoop t;
  auto listener = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(listener.ok());
  auto addr = (*listener)->local_address();
  spawn(*t.loop, handover_echo(**listener));
  // Above copy_threshold (adopted), one segment on loopback; one at a time.
  constexpr int kRounds = 20;
  absl::Status s = t.run([](NetContext& net, SocketAddress a) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, a);
    if (!c.ok()) co_return c.status();
    for (int i = 0; i < kRounds; ++i) {
      const std::vector<uint8_t> msg = pattern(12000, static_cast<uint32_t>(i));
      if (auto w = co_await c->write(absl::MakeConstSpan(msg)); !w.ok()) co_return w;
      std::vector<uint8_t> got;
      if (auto r = co_await read_exactly(*c, msg.size(), got); !r.ok()) co_return r;
      if (got != msg) co_return absl::DataLossError("echo differs");
    }
    co_return co_await c->close();
  }(*t.net, *addr));
  EXPECT_TRUE(s.ok()) << s;
  t.drain();
  const NetStats& stats = t.net->stats();
  EXPECT_GE(stats.adopted_writes, static_cast<uint64_t>(kRounds)) << stats.to_string();
  EXPECT_EQ(stats.sendmsg_sends, 0u) << stats.to_string();
  EXPECT_EQ(t.net->buffers().outstanding(), 0u);
}

// Accepts one connection, holds its first chunk until the second arrived,
// then hands both to write(RecvBuffer&&) in a row; the stream for more.
// `first`: the first chunk was read (pair_round_trip() then sends the second).
Task<absl::StatusOr<Stream>> echo_pair(Listener& l, bool& first) {
  absl::StatusOr<Stream> s = co_await l.accept();
  if (!s.ok()) co_return s.status();
  absl::StatusOr<RecvBuffer> a = co_await s->read();
  first = true;
  absl::StatusOr<RecvBuffer> b = co_await s->read();
  if (!a.ok() || !b.ok() || a->empty() || b->empty()) co_return absl::InternalError("no pair");
  if (auto w = co_await s->write(std::move(*a)); !w.ok()) co_return w;
  if (auto w = co_await s->write(std::move(*b)); !w.ok()) co_return w;
  co_return s;
}

// echo_pair()'s peer: `one`, then (once echo_pair() read it) `two`, as two
// chunks; both echoed back in order.
Task<absl::Status> pair_round_trip(Stream& c, const std::vector<uint8_t>& one,
                                   const std::vector<uint8_t>& two, const bool& first) {
  if (auto w = co_await c.write(absl::MakeConstSpan(one)); !w.ok()) co_return w;
  while (!first) (void)co_await sleep_for(1ms);  // two chunks, not one
  if (auto w = co_await c.write(absl::MakeConstSpan(two)); !w.ok()) co_return w;
  std::vector<uint8_t> got;
  if (auto r = co_await read_exactly(c, one.size() + two.size(), got); !r.ok()) co_return r;
  std::vector<uint8_t> both = one;
  both.insert(both.end(), two.begin(), two.end());
  if (got != both) co_return absl::DataLossError("echo of the pair differs");
  co_return absl::OkStatus();
}

// A small received buffer handed over with nothing queued or being sent is
// sent from the ring buffer (a copy would buy nothing); one handed over
// behind queued bytes is copied, to leave with them from one send buffer.
TEST(StreamTest, ASmallEchoAloneIsAdoptedAndOneBehindQueuedBytesCopied) {
  TestLoop t;
  auto listener = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(listener.ok());
  auto addr = (*listener)->local_address();
  bool got_first = false;
  // Holds the first chunk until the second arrived, then echoes both in a
  // row; then echoes chunk by chunk.
  spawn(*t.loop, [](Listener& l, bool& first) -> Task<> {
    absl::StatusOr<Stream> s = co_await echo_pair(l, first);
    if (s.ok()) co_await handover_handler(std::move(*s));
  }(**listener, got_first));
  constexpr int kRounds = 10;
  absl::Status s = t.run([](NetContext& net, SocketAddress a, bool& first) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, a);
    if (!c.ok()) co_return c.status();
    if (auto p = co_await pair_round_trip(*c, pattern(100, 1), pattern(100, 2), first); !p.ok()) {
      co_return p;
    }
    std::vector<uint8_t> got;
    for (int i = 0; i < kRounds; ++i) {  // one at a time
      const std::vector<uint8_t> msg = pattern(100, static_cast<uint32_t>(10 + i));
      if (auto w = co_await c->write(absl::MakeConstSpan(msg)); !w.ok()) co_return w;
      got.clear();
      if (auto r = co_await read_exactly(*c, msg.size(), got); !r.ok()) co_return r;
      if (got != msg) co_return absl::DataLossError("echo differs");
    }
    co_return co_await c->close();
  }(*t.net, *addr, got_first));
  EXPECT_TRUE(s.ok()) << s;
  t.drain();
  const NetStats& stats = t.net->stats();
  // The client's writes (2 + kRounds, small: copied) count in the same
  // context; of the echo's, only the one behind queued bytes.
  EXPECT_EQ(stats.copied_writes, (2u + kRounds) + 1u) << stats.to_string();
  EXPECT_EQ(stats.adopted_writes, 1u + kRounds) << stats.to_string();
  EXPECT_EQ(t.net->buffers().outstanding(), 0u);
  EXPECT_EQ(t.net->adopted_buffers(), 0u);
}

// write(RecvBuffer&&) that the send queue cannot take at once (past the
// stream's share of adopted buffers and above copy_threshold: borrowed, the
// writer waits until it is sent; on a stream closed for writing: the error)
// is made as any other write: no byte lost or reordered, the buffer back in
// the ring once sent.
TEST(StreamTest, AReceivedBufferNotTakenAtOnceIsWrittenAsAnyOther) {
  NetOptions options;
  options.send_share = 1;        // one adopted buffer at a time
  options.copy_threshold = 100;  // the chunks are above it: never copied
  TestLoop t({}, options);
  auto listener = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(listener.ok());
  auto addr = (*listener)->local_address();
  bool got_first = false;
  absl::Status after_shutdown;
  // Holds the first chunk until the second arrived, echoes both in a row
  // (the first adopted, the second borrowed), then one more after
  // shutdown_write().
  spawn(*t.loop, [](Listener& l, bool& first, absl::Status& late) -> Task<> {
    absl::StatusOr<Stream> s = co_await echo_pair(l, first);
    if (!s.ok()) co_return;
    absl::StatusOr<RecvBuffer> c = co_await s->read();
    if (!c.ok() || c->empty()) co_return;
    if (!(co_await s->shutdown_write()).ok()) co_return;
    late = co_await s->write(std::move(*c));
    (void)co_await s->close();
  }(**listener, got_first, after_shutdown));
  absl::Status s = t.run([](NetContext& net, SocketAddress a, bool& first) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, a);
    if (!c.ok()) co_return c.status();
    if (auto p = co_await pair_round_trip(*c, pattern(1000, 1), pattern(1000, 2), first); !p.ok()) {
      co_return p;
    }
    const std::vector<uint8_t> three = pattern(1000, 3);
    if (auto w = co_await c->write(absl::MakeConstSpan(three)); !w.ok()) co_return w;
    // The server shut its side: end of stream, and no echo of the third.
    auto end = co_await c->read();
    if (!end.ok()) co_return end.status();
    if (!end->empty()) co_return absl::DataLossError("bytes after shutdown_write()");
    co_return co_await c->close();
  }(*t.net, *addr, got_first));
  EXPECT_TRUE(s.ok()) << s;
  t.drain();
  EXPECT_TRUE(absl::IsFailedPrecondition(after_shutdown)) << after_shutdown;
  const NetStats& stats = t.net->stats();
  // The echo's second write, and the client's three (also above the
  // threshold, in the same context).
  EXPECT_EQ(stats.adopted_writes, 1u) << stats.to_string();
  EXPECT_EQ(stats.borrowed_writes, 1u + 3u) << stats.to_string();
  EXPECT_EQ(t.net->buffers().outstanding(), 0u);
  EXPECT_EQ(t.net->adopted_buffers(), 0u);
}

// Peers that send and never read: their echoes' send queues adopt receive
// buffers (each up to its share, 8) until, together, they hold three
// quarters of the ring - never more, however low the ring runs - and a
// well-behaved client is still echoed meanwhile.
TEST(StreamTest, SendQueuesTogetherAdoptAtMostThreeQuartersOfTheRing) {
  NetOptions options;
  options.recv_buffers = 64;
  TestLoop t({}, options);
  auto listener = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(listener.ok());
  const SocketAddress addr = *(*listener)->local_address();
  constexpr int kPeers = 8;  // 8 x a share of 8 = all 64 buffers, were there no cap
  spawn(*t.loop, echo_acceptor(**listener, kPeers + 1, handover_handler));
  std::vector<UniqueFd> peers;
  for (int i = 0; i < kPeers; ++i) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0));
    const int small = 2048;  // a small window: the echoes back up soon
    ASSERT_EQ(::setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
    const int r = ::connect(fd.get(), addr.data(), addr.size());
    ASSERT_TRUE(r == 0 || errno == EINPROGRESS);
    peers.push_back(std::move(fd));
  }
  const std::vector<uint8_t> chunk = pattern(16 * 1024);
  uint32_t most = 0;
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(3);
  int quiet = 0;  // rounds in which no peer could write
  while (std::chrono::steady_clock::now() < until && quiet < 200) {
    bool wrote = false;
    for (UniqueFd& fd : peers) {
      if (::send(fd.get(), chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL) > 0) {
        wrote = true;
      }
    }
    quiet = wrote ? 0 : quiet + 1;
    t.loop->run_once(false);
    most = std::max(most, t.net->adopted_buffers());
  }
  EXPECT_EQ(most, 48u) << "3/4 of 64 buffers: reached, and never passed";
  // A fourth client still gets its echo.
  absl::Status s = t.run(round_trip(*t.net, addr, pattern(100000)));
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_LE(t.net->adopted_buffers(), 48u);
  peers.clear();  // reset: the stuck echoes end
  t.drain();
  EXPECT_EQ(t.net->adopted_buffers(), 0u);
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

// A connected loopback TCP pair of plain blocking sockets: {ours, peer's}.
std::pair<UniqueFd, UniqueFd> tcp_pair() {
  PlainListener listener(1);
  UniqueFd peer(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!peer || ::connect(peer.get(), listener.address.data(), listener.address.size()) != 0) {
    return {};
  }
  return {listener.accept(), std::move(peer)};
}

int socket_int(int fd, int name) {
  int value = -1;
  socklen_t len = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, name, &value, &len) != 0) return -1;
  return value;
}

// Half of net.ipv4.tcp_rmem's maximum: the most a low-water mark asks for.
int rcvlowat_cap() {
  std::FILE* f = std::fopen("/proc/sys/net/ipv4/tcp_rmem", "r");
  if (f == nullptr) return -1;
  long min = 0, def = 0, max = 0;
  const int n = std::fscanf(f, "%ld %ld %ld", &min, &def, &max);
  std::fclose(f);
  return n == 3 ? static_cast<int>(max / 2) : -1;
}

// reserve_receive_buffer() grows the socket's receive buffer (seen through
// a second fd of the same socket) and leaves SO_RCVLOWAT at 1: a single
// byte is still read at once. Through the ring (a fixed file) and through a
// plain fd.
class ReserveReceiveBuffer : public ::testing::TestWithParam<bool> {};

TEST_P(ReserveReceiveBuffer, GrowsTheBufferAndLeavesTheLowWaterMarkAtOne) {
  const bool fixed = GetParam();
  TestLoop t;
  auto [ours, peer] = tcp_pair();
  ASSERT_TRUE(ours && peer);
  const int cap = rcvlowat_cap();
  ASSERT_GT(cap, 0);
  const int want = std::min(3 << 20, cap);
  const int before = socket_int(ours.get(), SO_RCVBUF);
  ASSERT_LT(before, want) << "the default receive buffer is as large already";
  absl::Status s =
      t.run([](NetContext& net, int fd, bool fixed, int want, int peer) -> Task<absl::Status> {
        FileRef file(::dup(fd));
        if (fixed) {
          absl::StatusOr<uint32_t> slot = co_await install_file(file.fd);
          ::close(file.fd);
          if (!slot.ok()) co_return slot.status();
          file = FileRef::fixed_index(*slot);
        }
        Stream stream = Stream::adopt(net, file);
        if (absl::Status r = co_await stream.reserve_receive_buffer(want); !r.ok()) co_return r;
        if (socket_int(fd, SO_RCVBUF) < want) {
          co_return absl::InternalError(absl::StrCat("SO_RCVBUF ", socket_int(fd, SO_RCVBUF)));
        }
        if (socket_int(fd, SO_RCVLOWAT) != 1) {
          co_return absl::InternalError(absl::StrCat("SO_RCVLOWAT ", socket_int(fd, SO_RCVLOWAT)));
        }
        if (net.stats().receive_buffers_reserved != 1) co_return absl::InternalError("not counted");
        if (::send(peer, "x", 1, 0) != 1) co_return absl::InternalError("send");
        // (Readable only once the low-water mark's bytes are in: bounds the read.)
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, 5000) != 1)
          co_return absl::DeadlineExceededError("one byte not readable");
        absl::StatusOr<RecvBuffer> got = co_await stream.read();
        if (!got.ok()) co_return got.status();
        if (got->size() != 1 || got->data()[0] != 'x')
          co_return absl::DataLossError("not the byte");
        co_return co_await stream.close();
      }(*t.net, ours.get(), fixed, want, peer.get()));
  EXPECT_TRUE(s.ok()) << s;
  t.drain();
}

INSTANTIATE_TEST_SUITE_P(FixedOrPlain, ReserveReceiveBuffer, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "FixedFile" : "PlainFd";
                         });

TEST(StreamTest, ReserveReceiveBufferRefusesANonPositiveSize) {
  TestLoop t;
  auto [ours, peer] = tcp_pair();
  ASSERT_TRUE(ours && peer);
  absl::Status s = t.run([](NetContext& net, int fd) -> Task<absl::Status> {
    Stream stream = Stream::adopt(net, FileRef(::dup(fd)));
    absl::Status r = co_await stream.reserve_receive_buffer(0);
    (void)co_await stream.close();
    co_return r;
  }(*t.net, ours.get()));
  EXPECT_TRUE(absl::IsInvalidArgument(s)) << s;
  t.drain();
}

}  // namespace
}  // namespace coring::net
