// Tests of the send path of net/stream.* on a loop with a registered
// BufferArena: small writes coalesced in a registered buffer and sent with
// WRITE_FIXED, large writes from a receive buffer sent with SEND_ZC +
// IORING_RECVSEND_FIXED_BUF, other large writes with SEND_ZC, the fallbacks
// (no free registered buffer, zero copy off, registered buffers off), and
// tear-down with zero-copy sends awaiting their notification.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "coring/core/timer.h"
#include "coring/core/when_all.h"
#include "coring/net/listener.h"
#include "coring/net/stream.h"
#include "coring/pool/buffer_arena.h"
#include "coring/pool/slab_pool.h"
#include "net_test_support.h"

namespace coring::net {
namespace {

using testing::echo_acceptor;
using testing::pattern;
using testing::read_exactly;
using testing::RegisteredLoop;

// A listening TCP socket on a free loopback port; its port in `port`.
int listen_loopback(int backlog, uint16_t& port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(a);
  EXPECT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
  EXPECT_EQ(::listen(fd, backlog), 0);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  port = ntohs(a.sin_port);
  return fd;
}

// A blocking peer on another thread: reads `n` bytes, then closes.
struct Sink {
  explicit Sink(size_t n) {
    uint16_t port = 0;
    listen_fd = listen_loopback(4, port);
    address = SocketAddress::ipv4_loopback(port);
    reader = std::thread([this, n] {
      const int fd = ::accept(listen_fd, nullptr, nullptr);
      timeval tv{5, 0};
      ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
      std::vector<uint8_t> buf(1 << 16);
      while (got.size() < n) {
        const ssize_t r = ::recv(fd, buf.data(), buf.size(), 0);
        if (r <= 0) break;
        got.insert(got.end(), buf.data(), buf.data() + r);
      }
      ::close(fd);
    });
  }
  ~Sink() {
    if (reader.joinable()) reader.join();
    ::close(listen_fd);
  }
  std::vector<uint8_t> wait() {
    reader.join();
    return got;
  }

  int listen_fd = -1;
  SocketAddress address = SocketAddress::ipv4_loopback(0);
  std::vector<uint8_t> got;
  std::thread reader;
};

TEST(SendPathTest, SmallWritesAreCoalescedIntoOneRegisteredBuffer) {
  RegisteredLoop t;
  constexpr size_t kWrites = 200, kSize = 100;
  const std::vector<uint8_t> all = pattern(kWrites * kSize);
  Sink sink(all.size());
  absl::Status s = t.run([](NetContext& net, SocketAddress a,
                            const std::vector<uint8_t>& bytes) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, a);
    if (!c.ok()) co_return c.status();
    // Each write is copied and returns at once; the first starts a send,
    // the rest pile up behind it in one registered buffer.
    for (size_t i = 0; i < kWrites; ++i) {
      auto w = co_await c->write(absl::MakeConstSpan(bytes).subspan(i * kSize, kSize));
      if (!w.ok()) co_return w;
    }
    co_return co_await c->close();
  }(*t.net, sink.address, all));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(sink.wait(), all);
  const NetStats& st = t.net->stats();
  EXPECT_EQ(st.copied_writes, kWrites);
  EXPECT_EQ(st.sendmsg_sends, 0u) << st.to_string();
  EXPECT_EQ(st.send_buffer_fallbacks, 0u) << st.to_string();
  EXPECT_GE(st.fixed_sends, 1u);
  EXPECT_LE(st.fixed_sends, 4u) << "200 small writes were not coalesced: " << st.to_string();
  EXPECT_EQ(st.bytes_sent, all.size());
}

// An echo whose payloads are still in their (registered) receive buffers:
// sent back with SEND_ZC + IORING_RECVSEND_FIXED_BUF, held until the
// notification.
TEST(SendPathTest, EchoedReceiveBuffersGoOutZeroCopyFromRegisteredMemory) {
  NetOptions o;
  o.copy_threshold = 512;
  o.zero_copy_threshold = 1024;
  RegisteredLoop t(o);
  if (!t.net->zero_copy()) GTEST_SKIP() << "no IORING_OP_SEND_ZC";
  auto listener = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(listener.ok());
  spawn(*t.loop, echo_acceptor(**listener, 1));
  // Small: each zero-copy echo waits for its notification, which on
  // loopback comes with the peer's (possibly delayed) ACK.
  const std::vector<uint8_t> msg = pattern(60000, 7);
  absl::Status s = t.run(
      [](NetContext& net, SocketAddress a, const std::vector<uint8_t>& m) -> Task<absl::Status> {
        auto c = co_await Stream::connect(net, a);
        if (!c.ok()) co_return c.status();
        std::vector<uint8_t> got;
        auto writer = [](Stream& s, const std::vector<uint8_t>& m) -> Task<absl::Status> {
          // Written in small pieces (copied), so the echo side sees many chunks.
          for (size_t off = 0; off < m.size(); off += 500) {
            const size_t n = std::min<size_t>(500, m.size() - off);
            if (auto w = co_await s.write(absl::MakeConstSpan(m).subspan(off, n)); !w.ok()) {
              co_return w;
            }
          }
          co_return absl::OkStatus();
        };
        auto [w, r] = co_await when_all(writer(*c, m), read_exactly(*c, m.size(), got));
        if (!w.ok()) co_return w;
        if (!r.ok()) co_return r;
        if (got != m) co_return absl::DataLossError("echo differs");
        co_return co_await c->close();
      }(*t.net, *(*listener)->local_address(), msg));
  ASSERT_TRUE(s.ok()) << s;
  const NetStats& st = t.net->stats();
  EXPECT_GT(st.zc_sends, 0u) << st.to_string();
  EXPECT_GT(st.fixed_sends, 0u) << st.to_string();
  // Loopback: the kernel copies every zero-copy send, and says so.
  EXPECT_GT(st.zc_copied, 0u) << st.to_string();
  EXPECT_LE(st.zc_copied, st.zc_sends);
}

// A large write from ordinary memory: SEND_ZC without a fixed buffer; with
// zero copy off, or registered send buffers off, the other ops carry it.
struct Mode {
  size_t zero_copy_threshold;
  bool registered_send_buffers;
};
class SendModes : public ::testing::TestWithParam<Mode> {};

TEST_P(SendModes, LargeAndSmallWritesArriveInOrder) {
  NetOptions o;
  o.zero_copy_threshold = GetParam().zero_copy_threshold;
  o.registered_send_buffers = GetParam().registered_send_buffers;
  RegisteredLoop t(o);
  std::vector<std::vector<uint8_t>> pieces;
  std::vector<uint8_t> all;
  for (size_t size : {10u, 200000u, 3u, 70000u, 1000u, 9000u, 1u << 20}) {
    pieces.push_back(pattern(size, static_cast<uint32_t>(size)));
    all.insert(all.end(), pieces.back().begin(), pieces.back().end());
  }
  Sink sink(all.size());
  absl::Status s = t.run([](NetContext& net, SocketAddress a,
                            const std::vector<std::vector<uint8_t>>& ps) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, a);
    if (!c.ok()) co_return c.status();
    for (const auto& p : ps) {
      if (auto w = co_await c->write(absl::MakeConstSpan(p)); !w.ok()) co_return w;
    }
    co_return co_await c->close();
  }(*t.net, sink.address, pieces));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(sink.wait(), all);
  const NetStats& st = t.net->stats();
  EXPECT_EQ(st.bytes_sent, all.size());
  if (!t.net->zero_copy()) {
    EXPECT_EQ(st.zc_sends, 0u);
  } else if (GetParam().zero_copy_threshold <= 200000) {
    EXPECT_GT(st.zc_sends, 0u) << st.to_string();
  }
  if (!GetParam().registered_send_buffers) {
    EXPECT_EQ(st.fixed_sends, 0u) << st.to_string();
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, SendModes,
                         ::testing::Values(Mode{64 * 1024, true}, Mode{SIZE_MAX, true},
                                           Mode{64 * 1024, false}, Mode{1, true}));

// Every registered buffer busy: copied writes fall back to slab chunks, and
// still arrive intact.
TEST(SendPathTest, NoFreeRegisteredBufferFallsBackToChunks) {
  RegisteredLoop t({}, /*big_buffers=*/1);
  // Hold every buffer of both classes.
  std::vector<pool::BufferLease> held;
  for (;;) {
    auto l = t.arena->acquire(4096);
    if (!l.ok()) break;
    held.push_back(std::move(*l));
  }
  for (;;) {
    auto l = t.arena->acquire(65536);
    if (!l.ok()) break;
    held.push_back(std::move(*l));
  }
  const std::vector<uint8_t> all = pattern(50 * 1000, 3);
  Sink sink(all.size());
  absl::Status s = t.run([](NetContext& net, SocketAddress a,
                            const std::vector<uint8_t>& bytes) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, a);
    if (!c.ok()) co_return c.status();
    for (size_t off = 0; off < bytes.size(); off += 1000) {
      if (auto w = co_await c->write(absl::MakeConstSpan(bytes).subspan(off, 1000)); !w.ok()) {
        co_return w;
      }
    }
    co_return co_await c->close();
  }(*t.net, sink.address, all));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(sink.wait(), all);
  EXPECT_GT(t.net->stats().send_buffer_fallbacks, 0u);
  EXPECT_EQ(t.net->stats().fixed_sends, 0u);
  held.clear();
}

// Without a free registered buffer, a copied write's buffer comes from the
// slab pool sized to the connection's appetite. A small write on each of
// many connections at once (a reconnect storm's handshake answers) takes
// about a KiB each, not a 16 KiB chunk each (256 connections: 4 MiB); a
// connection that keeps writing gets buffers that double up to the chunk
// size, not one small buffer per write.
TEST(SendPathTest, SlabSendBuffersStartSmallAndGrowWithTheWriter) {
  pool::SlabPool slab;
  LoopOptions lo;
  lo.slab_pool = &slab;
  NetOptions no;
  no.registered_send_buffers = false;
  testing::TestLoop t(std::move(lo), no);
  // A peer that never accepts: the kernel completes the connections and
  // keeps what they send (well under a socket's receive buffer each).
  uint16_t port = 0;
  const int listen_fd = listen_loopback(512, port);
  constexpr size_t kConns = 256;
  struct Result {
    uint64_t reserved_growth = 0;  // slab bytes mapped for one small write per connection
    uint64_t busy_allocs = 0;      // slab blocks for 40 writes of 1,000 bytes on one
  } r;
  absl::Status s = t.run(
      [](NetContext& net, SocketAddress a, pool::SlabPool& slab, Result& r) -> Task<absl::Status> {
        std::vector<Stream> streams;
        for (size_t i = 0; i < kConns; ++i) {
          auto c = co_await Stream::connect(net, a);
          if (!c.ok()) co_return c.status();
          streams.push_back(std::move(*c));
        }
        // Copied writes complete at once; nothing is sent until the loop turns.
        const std::vector<uint8_t> small = pattern(60, 1);
        const uint64_t reserved = slab.stats().bytes_reserved;
        for (Stream& c : streams) {
          if (auto w = co_await c.write(absl::MakeConstSpan(small)); !w.ok()) co_return w;
        }
        r.reserved_growth = slab.stats().bytes_reserved - reserved;
        const std::vector<uint8_t> big = pattern(40 * 1000, 2);
        const uint64_t allocs = slab.stats().allocs_total;
        for (size_t off = 0; off < big.size(); off += 1000) {
          auto w = co_await streams[0].write(absl::MakeConstSpan(big).subspan(off, 1000));
          if (!w.ok()) co_return w;
        }
        r.busy_allocs = slab.stats().allocs_total - allocs;
        if (net.stats().copied_writes != kConns + 40) co_return absl::InternalError("not copied");
        co_return absl::OkStatus();  // the streams linger until their bytes are sent
      }(*t.net, SocketAddress::ipv4_loopback(port), slab, r));
  ASSERT_TRUE(s.ok()) << s;
  // The pool maps 2 MiB at a time: 256 chunks of 16 KiB needed two more.
  EXPECT_LE(r.reserved_growth, 2u << 20);
  // 1, 2, 4, 8, then 16 KiB buffers and their headers: about a dozen
  // blocks (one buffer per write would be 80).
  EXPECT_LE(r.busy_allocs, 24u);
  t.drain();
  ::close(listen_fd);
}

// A copied write larger than one send buffer (its parts cut across buffer
// boundaries) is split over several pool-sized ones: from the slab pool
// here (every registered buffer is held), never as one heap block, and it
// arrives intact.
TEST(SendPathTest, CopiedWriteLargerThanASendBufferIsSplitAcrossBuffers) {
  pool::SlabPool slab;
  auto arena = pool::BufferArena::create(
      {.name = "coring.net_send_test.v1", .classes = {{4096, 2}, {65536, 1}}});
  ASSERT_TRUE(arena.ok()) << arena.status();
  std::vector<pool::BufferLease> held;
  for (size_t size : {4096, 4096, 65536}) held.push_back(std::move(*arena->acquire(size)));
  LoopOptions lo;
  lo.slab_pool = &slab;
  lo.arena = &*arena;
  testing::TestLoop t(std::move(lo));
  const std::vector<uint8_t> all = pattern(7 + 70000 + 3 + 100000 + 1, 9);
  Sink sink(all.size());
  uint64_t slab_blocks = 0;  // taken by the write itself
  absl::Status s = t.run([](NetContext& net, SocketAddress a, const std::vector<uint8_t>& bytes,
                            pool::SlabPool& slab, uint64_t& blocks) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, a);
    if (!c.ok()) co_return c.status();
    const absl::Span<const uint8_t> b = absl::MakeConstSpan(bytes);
    const absl::Span<const uint8_t> parts[] = {b.subspan(0, 7),          b.subspan(7, 70000),
                                               b.subspan(70007, 3),      b.subspan(70010, 0),
                                               b.subspan(70010, 100000), b.subspan(170010, 1)};
    const uint64_t before = slab.stats().allocs_total;
    if (auto w = co_await c->write_copy(parts); !w.ok()) co_return w;
    blocks = slab.stats().allocs_total - before;
    co_return co_await c->close();
  }(*t.net, sink.address, all, slab, slab_blocks));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(sink.wait(), all);
  EXPECT_EQ(t.net->stats().copied_writes, 1u);
  // 170,011 bytes in buffers of at most 64 KiB: three of them and their
  // headers, from the slab (one heap block of 170 KB and its header: 1).
  EXPECT_GE(slab_blocks, 6u);
  t.drain();
  held.clear();
}

// write(parts, owner): the parts inside `owner` are sent from it (no copy),
// the others copied; the write completes without waiting for the send. The
// buffer stays readable until release_taken(); once also sent, it comes back
// from spare_buffer() as it was - the same memory, so a stream of such
// writes reuses one buffer.
TEST(SendPathTest, TakenOverBufferIsSentFromAndKeptForReuse) {
  testing::TestLoop t;
  const std::vector<uint8_t> head = pattern(5, 1), body = pattern(40000, 2);
  std::vector<uint8_t> all = head;
  all.insert(all.end(), body.begin(), body.end());
  all.insert(all.end(), body.begin(), body.end());
  Sink sink(all.size());
  absl::Status s = t.run([](NetContext& net, SocketAddress a, const std::vector<uint8_t>& head,
                            const std::vector<uint8_t>& body) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, a);
    if (!c.ok()) co_return c.status();
    if (!c->spare_buffer().empty()) co_return absl::InternalError("a spare before any write");
    std::vector<uint8_t> owner = body;
    const uint8_t* const memory = owner.data();
    const absl::Span<const uint8_t> parts[] = {absl::MakeConstSpan(head),
                                               absl::MakeConstSpan(owner)};
    auto w = c->write(parts, std::move(owner));
    if (!w.await_ready()) co_return absl::InternalError("the write waited for its send");
    if (absl::Status st = w.await_resume(); !st.ok()) co_return st;
    if (net.stats().taken_writes != 1 || net.stats().copied_writes != 0) {
      co_return absl::InternalError(net.stats().to_string());
    }
    if (auto f = co_await c->flush(); !f.ok()) co_return f;
    if (!c->spare_buffer().empty()) co_return absl::InternalError("reused before released");
    if (memory[0] != body[0]) co_return absl::InternalError("changed before released");
    c->release_taken();
    std::vector<uint8_t> again = c->spare_buffer();
    if (again.data() != memory || again.size() != body.size()) {
      co_return absl::InternalError("the sent buffer did not come back as it was");
    }
    if (!c->spare_buffer().empty()) co_return absl::InternalError("one buffer came back twice");
    const absl::Span<const uint8_t> second[] = {absl::MakeConstSpan(again)};
    if (auto w2 = co_await c->write(second, std::move(again)); !w2.ok()) co_return w2;
    co_return co_await c->close();
  }(*t.net, sink.address, head, body));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(sink.wait(), all);
  EXPECT_EQ(t.net->stats().taken_writes, 2u);
  t.drain();
}

// A write of a frame buffer FramedStream traded (Writer::traded) is held to
// NetOptions::max_queued_traded_bytes, not max_queued_bytes (the loop
// bounds those buffers already): with 4 KiB and 64 KiB, three 20,000-byte
// traded buffers written in one turn are all queued at once, and a fourth,
// which would take the queue past 64 KiB, waits for room. An application's
// own write(parts, owner) keeps to max_queued_bytes: two such wait, each
// for the write before it to be sent. Everything arrives, in order.
TEST(SendPathTest, TradedWritesHaveTheirOwnQueueBound) {
  NetOptions no;
  no.max_queued_bytes = 4096;
  no.max_queued_traded_bytes = 64 * 1024;
  testing::TestLoop t({}, no);
  constexpr int kTraded = 4, kWrites = 6;
  constexpr size_t kSize = 20000;
  std::vector<uint8_t> all;
  for (int i = 0; i < kWrites; ++i) {
    const std::vector<uint8_t> p = pattern(kSize, uint32_t(i + 1));
    all.insert(all.end(), p.begin(), p.end());
  }
  Sink sink(all.size());
  absl::Status s = t.run([](NetContext& net, SocketAddress a) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, a);
    if (!c.ok()) co_return c.status();
    for (int i = 0; i < kWrites; ++i) {
      std::vector<uint8_t> owner = pattern(kSize, uint32_t(i + 1));
      const absl::Span<const uint8_t> parts[] = {absl::MakeConstSpan(owner)};
      if (i < kTraded) {
        Stream::WriteAwaiter w(c->state(), parts, std::move(owner), /*traded=*/true);
        if (absl::Status st = co_await w; !st.ok()) co_return st;
      } else {
        if (auto w = co_await c->write(parts, std::move(owner)); !w.ok()) co_return w;
      }
      // (The first three went without a turn: nothing was sent yet.)
      if (i == 2 && (net.stats().writer_waits != 0 || net.stats().sends != 0)) {
        co_return absl::InternalError("a write within the bound waited: " +
                                      net.stats().to_string());
      }
      if (i == kTraded - 1 && net.stats().writer_waits != 1) {
        co_return absl::InternalError("the fourth should have waited, alone: " +
                                      net.stats().to_string());
      }
    }
    // (Each of those two found the write before it still queued: over 4 KiB.)
    if (net.stats().writer_waits != 3 || net.stats().taken_writes != kWrites) {
      co_return absl::InternalError("the fifth and sixth should have waited too: " +
                                    net.stats().to_string());
    }
    co_return co_await c->close();
  }(*t.net, sink.address));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(sink.wait(), all);
  t.drain();
}

// share_received() + write_shared(), as an echo of records uses them: each
// record's body is sent from the receive buffer it arrived in, and so is its
// header when it equals the bytes before the body (encoded as received): the
// echoes are then one run of the buffer (one WRITE_FIXED). A header that
// differs is copied. The buffer goes back to the ring only once the reader
// released it and its bytes are sent, in either order.
struct SharedEcho {
  absl::Status status;
  uint32_t adopted_after_share = 0, adopted_after_send = 0, adopted_after_release = 0;
  uint32_t adopted_released_unsent = 0, adopted_at_end = 0;
  uint64_t sendmsg_first = 0, shared = 0, fixed_sends_second = 0, sends_second = 0;
  bool done = false;
};

// Runs `t`'s loop until `done` (at most 5 s).
void run_until(RegisteredLoop& t, const bool& done) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  while (!done && std::chrono::steady_clock::now() < until) {
    t.loop->run_once(false);
    std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}
constexpr size_t kRecords = 8, kRecordBody = 60, kRecord = 4 + kRecordBody;

std::vector<uint8_t> records(uint8_t tag) {
  std::vector<uint8_t> all;
  for (size_t i = 0; i < kRecords; ++i) {
    const std::vector<uint8_t> body = pattern(kRecordBody, static_cast<uint32_t>(i + tag));
    all.insert(all.end(), {'R', static_cast<uint8_t>(i), tag, kRecordBody});
    all.insert(all.end(), body.begin(), body.end());
  }
  return all;
}

Task<> shared_echo(Listener& l, SharedEcho* r) {
  NetContext& net = l.context();
  auto fail = [r](std::string why) { r->status = absl::InternalError(why); };
  auto s = co_await l.accept();
  if (!s.ok()) co_return fail("accept");
  for (int round = 0; round < 2; ++round) {
    auto buf = co_await s->read();
    if (!buf.ok() || buf->size() != kRecords * kRecord) co_return fail("not all records at once");
    const absl::Span<const uint8_t> bytes = buf->span();
    if (!s->share_received(*buf) || !buf->empty()) co_return fail("not shared");
    if (round == 0) r->adopted_after_share = net.adopted_buffers();
    const uint64_t sendmsgs = net.stats().sendmsg_sends, fixed = net.stats().fixed_sends,
                   sends = net.stats().sends;
    for (size_t i = 0; i < kRecords; ++i) {
      const absl::Span<const uint8_t> record = bytes.subspan(i * kRecord, kRecord);
      uint8_t header[4] = {record[0], record[1], record[2], record[3]};
      if (round == 0 && i == 3) header[0] = 'X';  // differs: copied
      const absl::Span<const uint8_t> parts[] = {absl::MakeConstSpan(header), record.subspan(4)};
      auto w = s->write_shared(parts);
      if (!w.await_ready()) co_return fail("a shared write waited for its send");
      if (absl::Status st = w.await_resume(); !st.ok()) co_return fail(st.ToString());
    }
    if (round == 0) {
      if (auto f = co_await s->flush(); !f.ok()) co_return fail(f.ToString());
      r->sendmsg_first = net.stats().sendmsg_sends - sendmsgs;
      r->adopted_after_send = net.adopted_buffers();  // the reader still holds it
      s->release_shared();
      r->adopted_after_release = net.adopted_buffers();
    } else {
      s->release_shared();  // before the send: it waits for the send
      r->adopted_released_unsent = net.adopted_buffers();
      if (auto f = co_await s->flush(); !f.ok()) co_return fail(f.ToString());
      r->adopted_at_end = net.adopted_buffers();
      r->fixed_sends_second = net.stats().fixed_sends - fixed;
      r->sends_second = net.stats().sends - sends;
    }
  }
  r->shared = net.stats().shared_writes;
  (void)co_await s->close();
  r->done = true;
}

TEST(SendPathTest, SharedReceiveBufferIsSentFromUntilReleasedAndSent) {
  SharedEcho r;  // written by the server: outlives the loop
  RegisteredLoop t;
  auto listener = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(listener.ok());
  spawn(*t.loop, shared_echo(**listener, &r));
  absl::Status s = t.run([](NetContext& net, SocketAddress a) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, a);
    if (!c.ok()) co_return c.status();
    for (uint8_t round = 0; round < 2; ++round) {
      const std::vector<uint8_t> sent = records(round);
      std::vector<uint8_t> expected = sent;
      if (round == 0) expected[3 * kRecord] = 'X';
      if (auto w = co_await c->write(absl::MakeConstSpan(sent)); !w.ok()) co_return w;
      std::vector<uint8_t> got;
      if (auto rd = read_exactly(*c, sent.size(), got); !(co_await rd).ok()) {
        co_return absl::DataLossError("echo cut short");
      }
      if (got != expected) co_return absl::DataLossError("echo differs");
    }
    co_return co_await c->close();
  }(*t.net, *(*listener)->local_address()));
  ASSERT_TRUE(s.ok()) << s;
  run_until(t, r.done);
  ASSERT_TRUE(r.done);
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_EQ(r.shared, 2 * kRecords);
  // Three pieces (the run before the header that differs, its copy, the
  // rest), in one sendmsg; the client saw the copy's 'X'.
  EXPECT_EQ(r.sendmsg_first, 1u);
  EXPECT_EQ(r.adopted_after_share, 1u);
  EXPECT_EQ(r.adopted_after_send, 1u);
  EXPECT_EQ(r.adopted_after_release, 0u);
  EXPECT_EQ(r.adopted_released_unsent, 1u);
  EXPECT_EQ(r.adopted_at_end, 0u);
  EXPECT_EQ(r.sends_second, 1u);
  EXPECT_EQ(r.fixed_sends_second, 1u) << "the echoes were not one run of the buffer";
}

// Shares two receive buffers the server reads in turn with the send queue
// (share_received()), the second while the first is still shared: whether
// the first and the second were taken, and the ring's adopted buffers once
// the reader let go.
struct SharedTwo {
  bool first = false, second = false;
  size_t adopted_after_release = ~size_t{0};
};
SharedTwo share_two(const NetOptions& o) {
  SharedTwo r;
  absl::Status server_status = absl::UnknownError("not run");  // outlives the loop
  bool done = false;
  RegisteredLoop t(o);
  auto listener = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  EXPECT_TRUE(listener.ok());
  if (!listener.ok()) return r;
  spawn(*t.loop, [](Listener& l, SharedTwo* r, absl::Status* out, bool* done) -> Task<> {
    auto s = co_await l.accept();
    if (!s.ok()) co_return;
    auto first = co_await s->read();
    auto second = co_await s->read();
    if (!first.ok() || !second.ok() || first->empty() || second->empty()) {
      *out = absl::InternalError("two reads");
      *done = true;
      co_return;
    }
    const size_t size = second->size();
    r->first = s->share_received(*first);
    r->second = s->share_received(*second);
    // (A buffer shared is taken out of the RecvBuffer; one refused is left as it was.)
    *out = r->second || second->size() == size
               ? absl::OkStatus()
               : absl::InternalError("the second buffer, refused, changed");
    s->release_shared();
    r->adopted_after_release = l.context().adopted_buffers();
    (void)co_await s->close();
    *done = true;
  }(**listener, &r, &server_status, &done));
  absl::Status s = t.run([](NetContext& net, SocketAddress a) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, a);
    if (!c.ok()) co_return c.status();
    const std::vector<uint8_t> one = pattern(100, 1), two = pattern(100, 2);
    if (auto w = co_await c->write(absl::MakeConstSpan(one)); !w.ok()) co_return w;
    if (auto w = co_await c->flush(); !w.ok()) co_return w;
    // Apart: the server reads them as two receive buffers.
    if (auto z = co_await sleep_for(std::chrono::milliseconds(20)); !z.ok()) co_return z;
    if (auto w = co_await c->write(absl::MakeConstSpan(two)); !w.ok()) co_return w;
    auto eof = co_await c->read();  // the server closes
    (void)eof;
    co_return co_await c->close();
  }(*t.net, *(*listener)->local_address()));
  EXPECT_TRUE(s.ok()) << s;
  run_until(t, done);
  EXPECT_TRUE(server_status.ok()) << server_status;
  return r;
}

// A stream shares at most NetOptions::send_share receive buffers at once.
TEST(SendPathTest, SharingStopsAtTheStreamsSendShare) {
  NetOptions o;
  o.send_share = 1;
  const SharedTwo r = share_two(o);
  EXPECT_TRUE(r.first);
  EXPECT_FALSE(r.second) << "a second buffer was shared past send_share";
  EXPECT_EQ(r.adopted_after_release, 0u) << "not given back";
}

// The send share is not the receive share: a stream whose recv pauses at
// one unread chunk still shares (and adopts) up to its send share.
TEST(SendPathTest, TheSendShareIsNotTheReceiveShare) {
  NetOptions o;
  o.recv_share = 1;
  o.send_share = 2;
  const SharedTwo r = share_two(o);
  EXPECT_TRUE(r.first);
  EXPECT_TRUE(r.second) << "the receive share bounded the send queue";
  EXPECT_EQ(r.adopted_after_release, 0u) << "not given back";
}

// A send share of 0: nothing received is held by the send queue.
TEST(SendPathTest, ASendShareOfZeroSharesNothing) {
  NetOptions o;
  o.send_share = 0;
  const SharedTwo r = share_two(o);
  EXPECT_FALSE(r.first);
  EXPECT_FALSE(r.second);
  EXPECT_EQ(r.adopted_after_release, 0u);
}

// Accepts one connection on loopback, reads once (some bytes arrived), then
// resets it (SO_LINGER 0).
class ResettingPeer {
 public:
  ResettingPeer() {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    if (::bind(lfd_, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0 || ::listen(lfd_, 1) != 0 ||
        ::getsockname(lfd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      return;
    }
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([fd = lfd_] {
      const int c = ::accept(fd, nullptr, nullptr);
      char buf[4096];
      (void)::recv(c, buf, sizeof(buf), 0);
      linger l{1, 0};
      ::setsockopt(c, SOL_SOCKET, SO_LINGER, &l, sizeof(l));
      ::close(c);
    });
  }
  ~ResettingPeer() {
    ::shutdown(lfd_, SHUT_RDWR);  // a test that failed before connecting: accept() returns
    join();
    ::close(lfd_);
  }
  bool listening() const { return port_ != 0; }
  SocketAddress address() const { return SocketAddress::ipv4_loopback(port_); }
  void join() {
    if (thread_.joinable()) thread_.join();
  }

 private:
  int lfd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  uint16_t port_ = 0;
  std::thread thread_;
};

// The peer resets while zero-copy and fixed sends are queued: writes fail
// with a status (EPIPE/ECONNRESET, never SIGPIPE), every buffer comes back
// (checked by ~RegisteredLoop), nothing is touched after it is freed (ASan).
TEST(SendPathTest, PeerResetWithZeroCopySendsInFlight) {
  NetOptions o;
  o.zero_copy_threshold = 4096;
  RegisteredLoop t(o);
  ResettingPeer peer;
  ASSERT_TRUE(peer.listening());
  absl::Status s = t.run([](NetContext& net, SocketAddress a) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, a);
    if (!c.ok()) co_return c.status();
    const std::vector<uint8_t> big = pattern(256 * 1024);
    const std::vector<uint8_t> small = pattern(100);
    absl::Status last;
    for (int i = 0; i < 200 && last.ok(); ++i) {
      last = co_await c->write(absl::MakeConstSpan(small));
      if (last.ok()) last = co_await c->write(absl::MakeConstSpan(big));
    }
    (void)co_await c->close();
    co_return last;
  }(*t.net, peer.address()));
  peer.join();
  EXPECT_FALSE(s.ok()) << "writes to a reset peer kept succeeding";
}

// Small writes coalesce into one registered send buffer and leave with one
// send from it; sent to a reset peer they fail with a status. Nothing
// blocks or ignores SIGPIPE here (WRITE_FIXED, used for them before, is a
// write(2) and raised it: the process died unless NetContext blocked it).
TEST(SendPathTest, CoalescedWritesToAResetPeerFailWithAStatusAndRaiseNoSignal) {
  sigset_t blocked;
  ASSERT_EQ(pthread_sigmask(SIG_BLOCK, nullptr, &blocked), 0);
  ASSERT_EQ(sigismember(&blocked, SIGPIPE), 0);
  struct sigaction old_action {};
  ASSERT_EQ(::sigaction(SIGPIPE, nullptr, &old_action), 0);
  ASSERT_EQ(old_action.sa_handler, SIG_DFL);
  RegisteredLoop t;
  ResettingPeer peer;
  ASSERT_TRUE(peer.listening());
  absl::Status s = t.run([](NetContext& net, SocketAddress a) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, a);
    if (!c.ok()) co_return c.status();
    const std::vector<uint8_t> small = pattern(100);
    absl::Status last = co_await c->write(absl::MakeConstSpan(small));
    if (!last.ok()) co_return absl::InternalError("first write: " + last.ToString());
    // The read takes the reset (ECONNRESET): a write after it gets EPIPE.
    absl::StatusOr<RecvBuffer> r = co_await c->read();
    if (r.ok()) co_return absl::InternalError("the read did not see the reset");
    for (int i = 0; i < 1000 && last.ok(); ++i) {
      last = co_await c->write(absl::MakeConstSpan(small));
      if (i % 16 == 15) (void)co_await sleep_for(std::chrono::milliseconds(1));
    }
    (void)co_await c->close();
    co_return last;
  }(*t.net, peer.address()));
  peer.join();
  EXPECT_FALSE(s.ok()) << "writes to a reset peer kept succeeding";
  EXPECT_GT(t.net->stats().fixed_sends, 0u);
  EXPECT_EQ(t.net->stats().sendmsg_sends, 0u);
}

}  // namespace
}  // namespace coring::net
