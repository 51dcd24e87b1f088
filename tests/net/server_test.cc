// Tests of net/server.*: framed echo over 1, 100 and 1,000 connections, tiny
// socket buffers, a peer that never reads, idle timeout, connection limit,
// graceful shutdown with frames in flight, Unix sockets and a multi-thread
// Runtime.
#include "coring/net/server.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <csignal>
#include <thread>
#include <vector>

#include "coring/core/runtime.h"
#include "coring/core/timer.h"
#include "coring/core/when_all.h"
#include "echo_fixtures.h"
#include "length_prefix_codec.h"
#include "net_test_support.h"

namespace coring::net {
namespace {

using namespace std::chrono_literals;
using testing::LengthPrefixCodec;
using testing::pattern;
using testing::TestLoop;
using Framed = FramedStream<LengthPrefixCodec>;

using testing::echo;
using testing::ServerOnLoop;

using testing::client_echo;

Task<int> many_clients(NetContext& net, SocketAddress addr, int n, std::vector<size_t> sizes) {
  std::vector<Task<absl::Status>> tasks;
  for (int i = 0; i < n; ++i) tasks.push_back(client_echo(net, addr, sizes));
  std::vector<absl::Status> results = co_await when_all(std::move(tasks));
  int ok = 0;
  for (const auto& r : results) {
    if (r.ok()) {
      ++ok;
    } else {
      ADD_FAILURE() << r;
    }
  }
  co_return ok;
}

class ServerConnections : public ::testing::TestWithParam<int> {};

TEST_P(ServerConnections, EchoOnEveryConnection) {
  LoopOptions lo;
  lo.fixed_files = 4096;
  ServerOnLoop s({.host = "127.0.0.1"}, std::move(lo));
  ASSERT_TRUE(s.server.serve<LengthPrefixCodec>(echo).ok());
  const int n = GetParam();
  const std::vector<size_t> sizes =
      n >= 1000 ? std::vector<size_t>{0, 100, 3000} : std::vector<size_t>{0, 1, 100, 20000, 70000};
  EXPECT_EQ(s.t.run(many_clients(*s.t.net, s.address(), n, sizes)), n);
  EXPECT_EQ(s.server.stats().accepted, uint64_t(n));
}

INSTANTIATE_TEST_SUITE_P(Counts, ServerConnections, ::testing::Values(1, 100, 1000));

TEST(ServerTest, TinySocketBuffersForceShortWritesAndPartialReads) {
  ServerOptions o{.host = "127.0.0.1"};
  o.listener.listen.socket.send_buffer = 4096;
  o.listener.listen.socket.receive_buffer = 4096;
  ServerOnLoop s(o);
  ASSERT_TRUE(s.server.serve<LengthPrefixCodec>(echo).ok());
  ConnectOptions co;
  co.socket.send_buffer = 4096;
  co.socket.receive_buffer = 4096;
  std::vector<size_t> sizes = {1 << 20, 5, 300000, 0, 1 << 20};
  absl::Status r = s.t.run(client_echo(*s.t.net, s.address(), sizes, co));
  EXPECT_TRUE(r.ok()) << r;
}

TEST(ServerTest, UnixSocket) {
  const std::string path = absl::StrFormat("/tmp/coring-net-test-%d.sock", getpid());
  ServerOnLoop s({.unix_path = path});
  ASSERT_TRUE(s.server.serve<LengthPrefixCodec>(echo).ok());
  std::vector<size_t> sizes = {1, 50000};
  absl::Status r = s.t.run(client_echo(*s.t.net, s.address(), sizes));
  EXPECT_TRUE(r.ok()) << r;
  s.stop();
  ::unlink(path.c_str());
}

TEST(ServerTest, Ipv6Loopback) {
  ServerOnLoop s({.host = "::1"});
  ASSERT_TRUE(s.server.serve<LengthPrefixCodec>(echo).ok());
  ASSERT_EQ(s.server.address().family(), SocketAddress::Family::kIpv6);
  std::vector<size_t> sizes = {0, 1, 50000};
  absl::Status r = s.t.run(
      client_echo(*s.t.net, SocketAddress::ipv6_loopback(s.server.address().port()), sizes));
  EXPECT_TRUE(r.ok()) << r;
  EXPECT_EQ(s.server.stats().accepted, 1u);
}

// Reads raw bytes until EOF or `limit`.
Task<absl::StatusOr<std::vector<uint8_t>>> read_to_eof(Stream& s) {
  std::vector<uint8_t> all;
  for (;;) {
    auto b = co_await s.read();
    if (!b.ok()) co_return b.status();
    if (b->empty()) co_return all;
    all.insert(all.end(), b->data(), b->data() + b->size());
  }
}

bool ends_with_goodbye(const std::vector<uint8_t>& bytes, absl::StatusCode code) {
  if (bytes.size() < 8) return false;
  const uint8_t* t = bytes.data() + bytes.size() - 8;
  return testing::get_be32(t) == testing::kGoodbye && testing::get_be32(t + 4) == uint32_t(code);
}

TEST(ServerTest, IdleConnectionGetsGoodbyeAndIsClosed) {
  ServerOnLoop s({.host = "127.0.0.1", .idle_timeout = 100ms});
  ASSERT_TRUE(s.server.serve<LengthPrefixCodec>(echo).ok());
  const auto start = std::chrono::steady_clock::now();
  auto r =
      s.t.run([](NetContext& net, SocketAddress a) -> Task<absl::StatusOr<std::vector<uint8_t>>> {
        auto c = co_await Stream::connect(net, a);
        if (!c.ok()) co_return c.status();
        auto all = co_await read_to_eof(*c);  // sends nothing
        (void)co_await c->close();
        co_return all;
      }(*s.t.net, s.address()));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(ends_with_goodbye(*r, absl::StatusCode::kDeadlineExceeded));
  EXPECT_GE(took, 100ms);
  EXPECT_LT(took, 3s);
  EXPECT_EQ(s.server.stats().idle_closed, 1u);
}

TEST(ServerTest, ConnectionLimitRejectsWithGoodbye) {
  ServerOnLoop s({.host = "127.0.0.1", .max_connections = 2});
  ASSERT_TRUE(s.server.serve<LengthPrefixCodec>(echo).ok());
  absl::Status r = s.t.run([](NetContext& net, SocketAddress a) -> Task<absl::Status> {
    auto c1 = co_await Stream::connect(net, a);
    auto c2 = co_await Stream::connect(net, a);
    if (!c1.ok() || !c2.ok()) co_return absl::UnavailableError("connect");
    Framed f1(std::move(*c1), LengthPrefixCodec());
    Framed f2(std::move(*c2), LengthPrefixCodec());
    std::vector<uint8_t> p = pattern(10);
    // Both are accepted and served.
    if (auto st = co_await f1.write_frame(testing::LpFrame{absl::MakeConstSpan(p)}); !st.ok()) {
      co_return st;
    }
    if (auto e = co_await f1.read_frame(); !e.ok()) co_return e.status();
    if (auto st = co_await f2.write_frame(testing::LpFrame{absl::MakeConstSpan(p)}); !st.ok()) {
      co_return st;
    }
    if (auto e = co_await f2.read_frame(); !e.ok()) co_return e.status();
    auto c3 = co_await Stream::connect(net, a);
    if (!c3.ok()) co_return c3.status();
    auto all = co_await read_to_eof(*c3);
    if (!all.ok()) co_return all.status();
    if (!ends_with_goodbye(*all, absl::StatusCode::kResourceExhausted)) {
      co_return absl::DataLossError("third connection: no GOODBYE(ResourceExhausted)");
    }
    (void)co_await c3->close();
    // The first two still work.
    if (auto st = co_await f1.write_frame(testing::LpFrame{absl::MakeConstSpan(p)}); !st.ok()) {
      co_return st;
    }
    auto e = co_await f1.read_frame();
    if (!e.ok()) co_return e.status();
    (void)co_await f1.close();
    (void)co_await f2.close();
    co_return absl::OkStatus();
  }(*s.t.net, s.address()));
  EXPECT_TRUE(r.ok()) << r;
  EXPECT_EQ(s.server.stats().rejected, 1u);
}

TEST(ServerTest, PeerThatNeverReadsKeepsServerMemoryBounded) {
  std::atomic<size_t> max_queued{0};
  std::atomic<int> frames{0};
  ServerOptions o{.host = "127.0.0.1"};
  o.net.max_queued_bytes = 64 * 1024;
  o.listener.listen.socket.send_buffer = 8192;
  ServerOnLoop s(o);
  ASSERT_TRUE(s.server
                  .serve<LengthPrefixCodec>([&](Framed conn) -> Task<> {
                    for (;;) {
                      auto f = co_await conn.read_frame();
                      if (!f.ok()) co_return;
                      ++frames;
                      if (!(co_await conn.write_frame(*f)).ok()) co_return;
                      max_queued = std::max<size_t>(max_queued, conn.stream().queued_bytes());
                    }
                  })
                  .ok());
  // A plain client that only writes (non-blocking) and never reads.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  int small = 4096;
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
  SocketAddress a = s.address();
  ::connect(fd, a.data(), a.size());
  const std::vector<uint8_t> frame = testing::lp_frame(pattern(1000));
  size_t sent = 0;
  for (int round = 0; round < 400; ++round) {
    for (int i = 0; i < 16; ++i) {
      ssize_t n = ::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
      if (n > 0) sent += size_t(n);
      if (n < ssize_t(frame.size())) break;  // full (a partial frame is fine: bytes keep flowing)
    }
    s.t.loop->run_once(false);
  }
  // Echoes are stuck: the server stopped reading once its queue was full.
  EXPECT_GT(frames.load(), 10);
  EXPECT_LT(size_t(frames.load()) * frame.size(), sent + 1);
  EXPECT_LE(max_queued.load(), o.net.max_queued_bytes + frame.size());
  ::close(fd);  // the handler's write fails or its read sees EOF; it ends
}

TEST(ServerTest, GracefulShutdownAnswersFramesInFlight) {
  ServerOnLoop s({.host = "127.0.0.1"});
  ASSERT_TRUE(s.server
                  .serve<LengthPrefixCodec>([](Framed conn) -> Task<> {
                    for (;;) {
                      auto f = co_await conn.read_frame();
                      if (!f.ok()) co_return;
                      (void)co_await sleep_for(20ms);  // slow handler: frames pile up
                      if (!(co_await conn.write_frame(*f)).ok()) co_return;
                    }
                  })
                  .ok());
  auto r = s.t.run([](NetContext& net, SocketAddress a,
                      Server& server) -> Task<absl::StatusOr<std::vector<uint8_t>>> {
    auto c = co_await Stream::connect(net, a);
    if (!c.ok()) co_return c.status();
    std::vector<uint8_t> all;
    for (int i = 0; i < 8; ++i) {
      auto fr = testing::lp_frame(pattern(100, uint32_t(i)));
      all.insert(all.end(), fr.begin(), fr.end());
    }
    if (auto st = co_await c->write(absl::MakeConstSpan(all)); !st.ok()) co_return st;
    (void)co_await sleep_for(10ms);  // the frames reached the server
    server.begin_shutdown();
    auto got = co_await read_to_eof(*c);
    (void)co_await c->close();
    if (!got.ok()) co_return got.status();
    if (got->size() != all.size() + 8 || !std::equal(all.begin(), all.end(), got->begin())) {
      co_return absl::DataLossError("frames in flight were not all answered");
    }
    co_return got;
  }(*s.t.net, s.address(), s.server));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(ends_with_goodbye(*r, absl::StatusCode::kUnavailable));
  s.stop();
  EXPECT_EQ(s.server.stats().aborted_at_shutdown, 0u);
}

TEST(ServerTest, RuntimeWithTwoThreads) {
  Runtime rt({.threads = 2});
  Server server(rt, {.host = "127.0.0.1"});
  ASSERT_TRUE(server.serve<LengthPrefixCodec>(echo).ok());
  {
    TestLoop client;
    SocketAddress a = SocketAddress::ipv4_loopback(server.address().port());
    EXPECT_EQ(client.run(many_clients(*client.net, a, 50, {10, 5000})), 50);
  }
  server.shutdown();
  EXPECT_TRUE(server.finished());
  rt.stop();
}

// A loop that cannot set up (here: a receive ring of 3 buffers, not a power
// of two) makes serve() fail with that loop's reason, instead of a server
// that binds, accepts into its backlog and never answers.
TEST(ServerTest, RuntimeServeReturnsALoopsSetUpError) {
  Runtime rt({.threads = 2});
  ServerOptions options{.host = "127.0.0.1"};
  options.net.recv_buffers = 3;
  Server server(rt, options);
  const absl::Status s = server.serve<LengthPrefixCodec>(echo);
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("power of two")) << s;
  EXPECT_TRUE(server.finished());
  rt.stop();
}

// Other NetOptions a loop cannot serve with are refused the same way, each
// naming the option: a maximum ring (how far it may grow) that is not a
// power of two, a receive share of no buffer.
TEST(ServerTest, RuntimeServeRefusesBadNetOptionsByName) {
  struct Case {
    const char* name;
    void (*set)(NetOptions&);
  };
  const Case cases[] = {
      {"max_recv_buffers", [](NetOptions& o) { o.max_recv_buffers = 3000; }},
      {"recv_share", [](NetOptions& o) { o.recv_share = 0; }},
  };
  for (const Case& c : cases) {
    Runtime rt({.threads = 1});
    ServerOptions options{.host = "127.0.0.1"};
    c.set(options.net);
    Server server(rt, options);
    const absl::Status s = server.serve<LengthPrefixCodec>(echo);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.name << ": " << s;
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr(c.name)) << s;
    EXPECT_TRUE(server.finished()) << c.name;
    rt.stop();
  }
}

// DESIGN.md's `return rt.run_until_signal();`: the server's shutdown hook
// drains it (the peer gets the goodbye for Unavailable, SBMP's
// GOAWAY(SHUTDOWN)) before the loops stop, and run_until_signal() returns 0.
TEST(ServerTest, RuntimeRunUntilSignalDrainsTheServer) {
  Runtime rt({.threads = 2});
  Server server(rt, {.host = "127.0.0.1"});
  ASSERT_TRUE(server.serve<LengthPrefixCodec>(echo).ok());
  const SocketAddress a = SocketAddress::ipv4_loopback(server.address().port());
  std::vector<uint8_t> received;
  bool echoed = false;
  // Started after the Runtime, so SIGTERM is blocked here too: only the
  // Runtime's signalfd takes it.
  std::thread client([&] {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    timeval tv{5, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    if (::connect(fd, a.data(), a.size()) == 0) {
      const std::vector<uint8_t> frame = testing::lp_frame(pattern(100));
      (void)::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL);
      uint8_t buf[4096];
      while (received.size() < frame.size()) {
        const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) break;
        received.insert(received.end(), buf, buf + n);
      }
      echoed = received == frame;
      ::kill(::getpid(), SIGTERM);
      for (;;) {  // the goodbye, then EOF
        const ssize_t n = ::recv(fd, buf, sizeof(buf), 0);
        if (n <= 0) break;
        received.insert(received.end(), buf, buf + n);
      }
    }
    ::close(fd);
  });
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(rt.run_until_signal(), 0);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 10s);
  client.join();
  EXPECT_TRUE(echoed);
  EXPECT_TRUE(ends_with_goodbye(received, absl::StatusCode::kUnavailable));
  EXPECT_TRUE(server.finished());
  EXPECT_EQ(server.stats().aborted_at_shutdown, 0u);
}

}  // namespace
}  // namespace coring::net
