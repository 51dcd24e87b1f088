// Tests of silent sends (Ring::silent_send(), EventLoop::expect_silent()):
// a send nothing waits on posts no CQE when it sends every byte, and the
// loop takes it for sent after the submit that took it. Checked here: echo
// replies go silently and every byte arrives; a peer that stops reading
// makes them find the socket full (a CQE: -EAGAIN or the bytes that went),
// after which the rest is sent, once, in order; streams reset or aborted
// with a silent send just taken end cleanly; and a loop that may not send
// silently sends as before.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <optional>
#include <thread>
#include <vector>

#include "coring/core/timer.h"
#include "coring/net/listener.h"
#include "coring/net/stream.h"
#include "coring/net/unique_fd.h"
#include "net_test_support.h"

namespace coring::net {
namespace {

using namespace std::chrono_literals;
using testing::echo_acceptor;
using testing::handover_handler;
using testing::pattern;
using testing::PlainListener;
using testing::TestLoop;

// `rounds` messages of `size` bytes, one at a time, each echo compared.
Task<absl::Status> ping_pong(NetContext& net, SocketAddress addr, int rounds, size_t size) {
  absl::StatusOr<Stream> c = co_await Stream::connect(net, addr);
  if (!c.ok()) co_return c.status();
  for (int i = 0; i < rounds; ++i) {
    const std::vector<uint8_t> msg = pattern(size, static_cast<uint32_t>(i) + 1);
    if (absl::Status w = co_await c->write(absl::MakeConstSpan(msg)); !w.ok()) co_return w;
    std::vector<uint8_t> got;
    if (absl::Status r = co_await testing::read_exactly(*c, size, got); !r.ok()) co_return r;
    if (got != msg) co_return absl::DataLossError("echo differs");
  }
  co_return co_await c->close();
}

// `rounds` 64-byte round trips to a hand-over echo on t's loop, and its
// stats before and after them.
void echo_rounds(TestLoop& t, int rounds, LoopStats& before, LoopStats& after) {
  auto listener = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(listener.ok()) << listener.status();
  auto addr = (*listener)->local_address();
  ASSERT_TRUE(addr.ok());
  spawn(*t.loop, echo_acceptor(**listener, 1, handover_handler));
  before = t.loop->stats();
  absl::Status s = t.run(ping_pong(*t.net, *addr, rounds, 64));
  ASSERT_TRUE(s.ok()) << s;
  t.drain();
  after = t.loop->stats();
}

// Every ring mode (RingMode: 0 DEFER_TASKRUN, 1 COOP_TASKRUN, 2 plain): in
// the last two the kernel posts CQEs whenever it likes, not only inside
// io_uring_enter.
class SilentSendTest : public ::testing::TestWithParam<int> {
 protected:
  static LoopOptions options() {
    LoopOptions o;
    o.ring.allow_defer_taskrun = GetParam() == 0;
    o.ring.allow_coop_taskrun = GetParam() <= 1;
    return o;
  }
};

TEST_P(SilentSendTest, EchoRepliesGoSilentlyAndPostNoCqe) {
  TestLoop t(options());
  ASSERT_EQ(static_cast<int>(t.loop->ring().mode()), GetParam());
  if (!t.loop->silent_sends()) GTEST_SKIP() << "this kernel cannot send silently";
  constexpr int kRounds = 200;
  LoopStats before, after;
  echo_rounds(t, kRounds, before, after);
  if (HasFatalFailure()) return;
  // Both ends' sends: each request and each echo.
  EXPECT_GE(after.silent_sends - before.silent_sends, uint64_t{2 * kRounds});
  // A round trip's CQEs are its two receives: with a CQE per send there
  // would be four.
  EXPECT_LT(after.cqes - before.cqes, uint64_t{3 * kRounds});
  EXPECT_EQ(t.net->stats().silent_sends_full, 0u);
  EXPECT_EQ(after.stale_cqes, 0u);
}

TEST_P(SilentSendTest, ALoopThatMayNotSendSilentlySendsAsBefore) {
  LoopOptions o = options();
  o.ring.allow_silent_send = false;
  TestLoop t(std::move(o));
  EXPECT_FALSE(t.loop->silent_sends());
  EXPECT_FALSE(t.loop->ring().silent_send());
  constexpr int kRounds = 50;
  LoopStats before, after;
  echo_rounds(t, kRounds, before, after);
  if (HasFatalFailure()) return;
  EXPECT_EQ(after.silent_sends, 0u);
  EXPECT_GE(after.cqes - before.cqes, uint64_t{4 * kRounds});
}

// The peer does not read at first (its receive buffer is small): copied
// writes of 4 KiB fill the socket, silent sends find it full, and the rest
// goes in sends that wait for room. Then it reads everything: every byte
// once, in order.
TEST_P(SilentSendTest, AFullSocketTurnsTheRestIntoASendThatWaitsAndNoByteIsLostOrRepeated) {
  TestLoop t(options());
  if (!t.loop->silent_sends()) GTEST_SKIP() << "this kernel cannot send silently";
  PlainListener peer;
  const int small = 4096;
  ASSERT_EQ(::setsockopt(peer.fd.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
  constexpr size_t kChunk = 4096;
  constexpr size_t kTotal = 4 << 20;
  const std::vector<uint8_t> bytes = pattern(kTotal, 7);
  std::atomic<bool> go{false};
  std::vector<uint8_t> got;
  std::thread reader([&] {
    UniqueFd fd = peer.accept();
    timeval tv{10, 0};
    ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    // Not reading for a while; a writer waiting for room in its queue
    // cannot tell us when it is full.
    const auto until = std::chrono::steady_clock::now() + 300ms;
    while (!go.load() && std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(1ms);
    std::vector<uint8_t> buf(1 << 16);
    for (;;) {
      const ssize_t n = ::recv(fd.get(), buf.data(), buf.size(), 0);
      if (n <= 0) break;
      got.insert(got.end(), buf.data(), buf.data() + n);
    }
  });
  // A plain socket with a small send buffer (autotuned, loopback's would
  // take all of it), connected, then adopted.
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &small, sizeof(small)), 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  to.sin_port = htons(peer.address.port());
  ASSERT_EQ(::connect(fd, reinterpret_cast<const sockaddr*>(&to), sizeof(to)), 0);
  absl::Status s = t.run([](NetContext& net, int fd, const std::vector<uint8_t>& all,
                            std::atomic<bool>& go) -> Task<absl::Status> {
    std::optional<Stream> c(Stream::adopt(net, FileRef(fd)));
    // Small copied writes, one per turn of the loop, each the only thing
    // queued: sent silently until the socket is full.
    size_t off = 0;
    for (; off < kTotal / 16; off += kChunk) {
      const absl::Span<const uint8_t> part(all.data() + off, kChunk);
      if (absl::Status w = co_await c->write_copy({&part, 1}); !w.ok()) co_return w;
      (void)co_await sleep_for(100us);
    }
    go.store(true);
    for (; off < kTotal; off += kChunk) {
      const absl::Span<const uint8_t> part(all.data() + off, kChunk);
      if (absl::Status w = co_await c->write_copy({&part, 1}); !w.ok()) co_return w;
    }
    co_return co_await c->close();
  }(*t.net, fd, bytes, go));
  go.store(true);
  reader.join();
  ASSERT_TRUE(s.ok()) << s;
  t.drain();
  EXPECT_GT(t.net->stats().silent_sends_full, 0u) << "the socket never filled up";
  EXPECT_GT(t.loop->stats().silent_sends, 0u);
  ASSERT_EQ(got.size(), bytes.size());
  EXPECT_TRUE(got == bytes) << "bytes lost, repeated or reordered";
}

// Peers that reset right after their echo, and a handler that aborts its
// stream right after a reply: a silent send may be just taken, or not
// delivered yet, when its stream goes. Nothing leaks, hangs or is
// delivered to a stream that is gone (ASan), and the loop ends with no op
// in flight.
TEST_P(SilentSendTest, StreamsResetOrAbortedWithASilentSendTakenEndCleanly) {
  TestLoop t(options());
  auto listener = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(listener.ok()) << listener.status();
  auto addr = (*listener)->local_address();
  ASSERT_TRUE(addr.ok());
  constexpr int kConns = 40;
  // Even connections: echo until the peer resets. Odd ones: reply once,
  // then abort at once (the reply's send still queued or in flight).
  spawn(*t.loop, [](Listener& l) -> Task<> {
    for (int i = 0; i < kConns; ++i) {
      absl::StatusOr<Stream> s = co_await l.accept();
      if (!s.ok()) co_return;
      if (i % 2 == 0) {
        spawn(l.context().loop(), handover_handler(std::move(*s)));
        continue;
      }
      spawn(l.context().loop(), [](Stream s) -> Task<> {
        absl::StatusOr<RecvBuffer> buf = co_await s.read();
        if (buf.ok() && !buf->empty()) {
          (void)co_await s.write(std::move(*buf));
          s.abort(absl::CancelledError("test"));
        }
      }(std::move(*s)));
    }
  }(**listener));
  for (int i = 0; i < kConns; ++i) {
    absl::Status s = t.run([](NetContext& net, SocketAddress a, int i) -> Task<absl::Status> {
      absl::StatusOr<Stream> c = co_await Stream::connect(net, a);
      if (!c.ok()) co_return c.status();
      const std::vector<uint8_t> msg = pattern(512, static_cast<uint32_t>(i));
      if (absl::Status w = co_await c->write(absl::MakeConstSpan(msg)); !w.ok()) co_return w;
      // The echo, or (aborted) part of it or nothing: either is fine here.
      (void)co_await c->read();
      c->abort(absl::CancelledError("reset"));
      co_return absl::OkStatus();
    }(*t.net, *addr, i));
    EXPECT_TRUE(s.ok()) << s;
  }
  t.drain();
  EXPECT_EQ(t.loop->stats().stale_cqes, 0u);
  // Every op still in flight is the listener's accept.
  EXPECT_LE(t.loop->stats().ops_in_flight, 2u);
}

INSTANTIATE_TEST_SUITE_P(RingModes, SilentSendTest, ::testing::Values(0, 1, 2));

}  // namespace
}  // namespace coring::net
