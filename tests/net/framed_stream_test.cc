// Tests of net/framed_stream.h with a test-only length-prefix codec
// (length_prefix_codec.h): echo of frames 0 B..1 MiB, frames split into
// single bytes, keep-alives answered by the transport, protocol errors
// answered with the codec's goodbye, graceful close, peer reset mid-frame,
// and a steady-state echo that allocates no slab block per message.
#include "coring/net/framed_stream.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <vector>

#include "coring/core/timer.h"
#include "coring/core/when_all.h"
#include "coring/net/listener.h"
#include "coring/pool/buffer_arena.h"
#include "coring/pool/slab_pool.h"
#include "echo_fixtures.h"
#include "length_prefix_codec.h"
#include "net_test_support.h"

namespace coring::net {
namespace {

using namespace std::chrono_literals;
using testing::LengthPrefixCodec;
using testing::lp_frame;
using testing::pattern;
using testing::TestLoop;
using Framed = FramedStream<LengthPrefixCodec>;

// Echoes frames until reading stops; records why.
template <class Codec>
Task<> frame_echo(FramedStream<Codec> conn, absl::Status* why) {
  for (;;) {
    auto f = co_await conn.read_frame();
    if (!f.ok()) {
      *why = f.status();
      co_return;
    }
    absl::Status written = co_await conn.write_frame(*f);
    if (!written.ok()) co_return;
  }
}

Task<> accept_framed(Listener& l, int count, std::vector<absl::Status>* whys,
                     FramedOptions options = {}) {
  whys->resize(count);
  for (int i = 0; i < count; ++i) {
    auto s = co_await l.accept();
    if (!s.ok()) co_return;
    spawn(l.context().loop(),
          frame_echo(Framed(std::move(*s), LengthPrefixCodec(), options), &(*whys)[i]));
  }
}

// One connection whose codec trades its reassembly buffers.
Task<> accept_trading(Listener& l, testing::TradeCounts* counts, absl::Status* why) {
  auto s = co_await l.accept();
  if (!s.ok()) co_return;
  spawn(l.context().loop(), frame_echo(FramedStream<testing::TradingCodec>(
                                           std::move(*s), testing::TradingCodec(counts)),
                                       why));
}

struct Fixture {
  Fixture() {
    auto l = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
    EXPECT_TRUE(l.ok()) << l.status();
    listener = std::move(*l);
    addr = *listener->local_address();
  }
  ~Fixture() {
    t.drain();
    listener.reset();
  }
  std::vector<absl::Status> whys;  // written by handlers: outlives the loop
  TestLoop t;
  std::unique_ptr<Listener> listener;
  SocketAddress addr = SocketAddress::ipv4_loopback(0);
};

using testing::client_echo;

TEST(FramedStreamTest, EchoesFramesOfEverySize) {
  Fixture f;
  spawn(*f.t.loop, accept_framed(*f.listener, 1, &f.whys));
  std::vector<size_t> sizes = {0, 1, 2, 100, 4095, 8192, 8193, 65536, 100000, 1 << 20, 3, 0};
  absl::Status s = f.t.run(client_echo(*f.t.net, f.addr, sizes));
  EXPECT_TRUE(s.ok()) << s;
  for (int i = 0; i < 20 && f.whys[0].ok(); ++i) f.t.loop->run_once(false);
  // The client's close() said goodbye (OK) -> the server saw it.
  EXPECT_TRUE(absl::IsAborted(f.whys[0])) << f.whys[0];
}

// Echoes alternating small (copied) and large (borrowed) frames; after a
// warm-up, counts the slab allocations of the rest (both ends share the pool).
Task<absl::Status> echo_counting(NetContext& net, SocketAddress addr, pool::SlabPool& slab,
                                 uint64_t* steady_allocs) {
  auto c = co_await Stream::connect(net, addr);
  if (!c.ok()) co_return c.status();
  Framed conn(std::move(*c), LengthPrefixCodec());
  const std::vector<uint8_t> small = pattern(64, 3);
  const std::vector<uint8_t> large = pattern(16 * 1024, 4);
  uint64_t before = 0;
  for (int i = 0; i < 300; ++i) {
    if (i == 100) before = slab.stats().allocs_total;
    const std::vector<uint8_t>& msg = i % 2 == 0 ? small : large;
    const testing::LpFrame out{absl::MakeConstSpan(msg)};
    if (auto s = co_await conn.write_frame(out); !s.ok()) co_return s;
    auto f = co_await conn.read_frame();
    if (!f.ok()) co_return f.status();
    if (!std::equal(msg.begin(), msg.end(), f->payload.begin(), f->payload.end())) {
      co_return absl::DataLossError("echoed frame differs");
    }
  }
  *steady_allocs = slab.stats().allocs_total - before;
  (void)co_await conn.close();
  co_return absl::OkStatus();
}

// DESIGN.md: steady state allocates nothing per message. read_frame() and
// write_frame() make no coroutine frame per call, and copied writes lease
// their buffer from the loop's arena, reusing the connection's spare header.
TEST(FramedStreamTest, SteadyStateEchoAllocatesNoSlabBlocks) {
  pool::SlabPool slab;
  auto arena = pool::BufferArena::create({});
  ASSERT_TRUE(arena.ok()) << arena.status();
  std::vector<absl::Status> whys;
  LoopOptions options;
  options.slab_pool = &slab;
  options.arena = &*arena;
  TestLoop t(std::move(options));
  auto l = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(l.ok()) << l.status();
  std::unique_ptr<Listener> listener = std::move(*l);
  spawn(*t.loop, accept_framed(*listener, 1, &whys));
  uint64_t steady_allocs = ~uint64_t{0};
  absl::Status s = t.run(echo_counting(*t.net, *listener->local_address(), slab, &steady_allocs));
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_EQ(steady_allocs, 0u) << "slab allocations in 200 echoes";
  t.drain();
  EXPECT_TRUE(absl::IsAborted(whys[0])) << whys[0];  // the client's goodbye
}

// 16 frames arrive in one chunk; the server answers each with its own
// write_frame(). The answers must leave in one send (the stream starts its
// send just before the loop's next submit), not one send per frame.
Task<absl::Status> burst_of_frames(NetContext& net, SocketAddress addr, uint64_t* sends) {
  auto c = co_await Stream::connect(net, addr);
  if (!c.ok()) co_return c.status();
  constexpr int kFrames = 16;
  std::vector<uint8_t> burst;
  for (int i = 0; i < kFrames; ++i) {
    const std::vector<uint8_t> frame = lp_frame(pattern(24, static_cast<uint32_t>(i)));
    burst.insert(burst.end(), frame.begin(), frame.end());
  }
  const uint64_t before = net.stats().sends;
  if (auto s = co_await c->write(absl::MakeConstSpan(burst)); !s.ok()) co_return s;
  std::vector<uint8_t> echoed;
  while (echoed.size() < burst.size()) {
    auto b = co_await c->read();
    if (!b.ok()) co_return b.status();
    if (b->empty()) co_return absl::DataLossError("EOF before every echo arrived");
    echoed.insert(echoed.end(), b->data(), b->data() + b->size());
  }
  *sends = net.stats().sends - before;  // the client's one send and the server's
  if (echoed != burst) co_return absl::DataLossError("echoed bytes differ");
  (void)co_await c->close();
  co_return absl::OkStatus();
}

TEST(FramedStreamTest, EchoesOfTheFramesOfOneChunkLeaveInOneSend) {
  Fixture f;
  spawn(*f.t.loop, accept_framed(*f.listener, 1, &f.whys));
  uint64_t sends = 0;
  absl::Status s = f.t.run(burst_of_frames(*f.t.net, f.addr, &sends));
  ASSERT_TRUE(s.ok()) << s;
  // The client's one send and the server's one: the burst (448 bytes, one
  // send on loopback) arrives as one chunk. Starting a send at the first
  // echo made it 3 (the first echo alone, then the 15 queued behind it).
  EXPECT_EQ(sends, 2u);
}

// Writes `burst` at once, then reads until `expected` came back.
Task<absl::Status> burst_and_echoes(Stream& c, const std::vector<uint8_t>& burst,
                                    const std::vector<uint8_t>& expected) {
  if (auto s = co_await c.write(absl::MakeConstSpan(burst)); !s.ok()) co_return s;
  std::vector<uint8_t> echoed;
  if (auto s = co_await testing::read_exactly(c, expected.size(), echoed); !s.ok()) co_return s;
  if (echoed != expected) co_return absl::DataLossError("echoed bytes differ");
  co_return absl::OkStatus();
}

// Large frames, each split across receive buffers (reassembled by the
// codec), arrive back to back (a pipelining peer), or one at a time.
constexpr size_t kLargeFrame = 30000;  // over copy_threshold, under copy_pipelined_up_to
// `echoed`: the stats once every echo is in, before the goodbye.
// Pipelined: `bursts` times, all frames in one write, then all echoes.
Task<absl::Status> large_frames(NetContext& net, SocketAddress addr, bool pipelined,
                                NetStats* echoed_stats, int bursts = 1) {
  auto c = co_await Stream::connect(net, addr);
  if (!c.ok()) co_return c.status();
  constexpr int kFrames = 16;
  std::vector<uint8_t> all;
  for (int i = 0; i < kFrames; ++i) {
    const std::vector<uint8_t> frame = lp_frame(pattern(kLargeFrame, static_cast<uint32_t>(i)));
    if (!pipelined) {
      if (auto s = co_await burst_and_echoes(*c, frame, frame); !s.ok()) co_return s;
    }
    all.insert(all.end(), frame.begin(), frame.end());
  }
  for (int b = 0; pipelined && b < bursts; ++b) {
    if (auto s = co_await burst_and_echoes(*c, all, all); !s.ok()) co_return s;
  }
  *echoed_stats = net.stats();
  (void)co_await c->close();
  co_return absl::OkStatus();
}

// Borrowing such a frame's echo would hold the reader until it is sent: one
// send and one wait per frame. With more input waiting, the echo is copied
// instead, the next frames are read meanwhile, and the echoes share sends.
TEST(FramedStreamTest, PipelinedFramesFromTheReassemblyBufferAreCopiedNotWaitedFor) {
  Fixture f;
  spawn(*f.t.loop, accept_framed(*f.listener, 1, &f.whys));
  NetStats st;
  absl::Status s = f.t.run(large_frames(*f.t.net, f.addr, /*pipelined=*/true, &st));
  ASSERT_TRUE(s.ok()) << s;
  // The client's one write is borrowed; of the server's 16 echoes at most
  // the last (nothing left to read by then) is.
  EXPECT_GE(st.copied_writes, 15u) << st.to_string();
  EXPECT_LE(st.borrowed_writes, 2u) << st.to_string();
}

// Frames over FramedOptions::copy_pipelined_up_to are borrowed even then.
TEST(FramedStreamTest, PipelinedFramesOverTheCopyLimitAreBorrowed) {
  Fixture f;
  spawn(*f.t.loop,
        accept_framed(*f.listener, 1, &f.whys, {.copy_pipelined_up_to = kLargeFrame - 1}));
  NetStats st;
  absl::Status s = f.t.run(large_frames(*f.t.net, f.addr, /*pipelined=*/true, &st));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(st.copied_writes, 0u) << st.to_string();
  EXPECT_EQ(st.borrowed_writes, 17u) << st.to_string();
}

// A frame at a time: nothing else to read while the echo is sent, so it is
// borrowed (no copy), as before.
TEST(FramedStreamTest, FramesOneAtATimeAreBorrowedNotCopied) {
  Fixture f;
  spawn(*f.t.loop, accept_framed(*f.listener, 1, &f.whys));
  NetStats st;
  absl::Status s = f.t.run(large_frames(*f.t.net, f.addr, /*pipelined=*/false, &st));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(st.copied_writes, 0u) << st.to_string();
  EXPECT_EQ(st.borrowed_writes, 32u) << st.to_string();  // 16 writes, 16 echoes
}

// Small frames, `bursts` times all in one write (a pipelining peer): each
// burst's echoes are checked. `st`: the stats once every echo is in.
Task<absl::Status> small_frame_bursts(NetContext& net, SocketAddress addr, int bursts,
                                      int echoes_per_frame, NetStats* st) {
  auto c = co_await Stream::connect(net, addr);
  if (!c.ok()) co_return c.status();
  for (int b = 0; b < bursts; ++b) {
    std::vector<uint8_t> all, expected;
    for (int i = 0; i < 64; ++i) {
      const std::vector<uint8_t> frame = lp_frame(pattern(100, static_cast<uint32_t>(b * 64 + i)));
      all.insert(all.end(), frame.begin(), frame.end());
      for (int e = 0; e < echoes_per_frame; ++e) {
        expected.insert(expected.end(), frame.begin(), frame.end());
      }
    }
    if (auto s = co_await burst_and_echoes(*c, all, expected); !s.ok()) co_return s;
  }
  *st = net.stats();
  (void)co_await c->close();
  co_return absl::OkStatus();
}

// Pipelined small frames are echoed from the receive buffer they arrived in
// (StreamState::share_received): not copied, not waited for, and each
// buffer's echoes leave as one run of it.
TEST(FramedStreamTest, PipelinedSmallFramesAreSentFromTheReceiveBuffer) {
  Fixture f;
  spawn(*f.t.loop, accept_framed(*f.listener, 1, &f.whys));
  NetStats st;
  absl::Status s = f.t.run(small_frame_bursts(*f.t.net, f.addr, 3, 1, &st));
  ASSERT_TRUE(s.ok()) << s;
  // 192 echoes. A burst (6.6 KB, one write) usually arrives as one buffer;
  // a frame split across two is reassembled and copied, and so is a frame
  // read while nothing else waits and its buffer was not shared yet.
  EXPECT_GE(st.shared_writes, 150u) << st.to_string();
  EXPECT_LE(st.copied_writes, 3u + 3u * 3u) << st.to_string();  // 3 client writes
}

// Echoes frames, appending `id` to `order` for each frame read.
Task<> echo_recording(Framed conn, int id, std::vector<int>* order, absl::Status* why) {
  for (;;) {
    auto f = co_await conn.read_frame();
    if (!f.ok()) {
      *why = f.status();
      co_return;
    }
    order->push_back(id);
    if (!(co_await conn.write_frame(*f)).ok()) co_return;
  }
}

Task<> accept_recording(Listener& l, std::vector<int>* order, std::vector<absl::Status>* whys) {
  for (int i = 0; i < static_cast<int>(whys->size()); ++i) {
    auto s = co_await l.accept();
    if (!s.ok()) co_return;
    spawn(l.context().loop(),
          echo_recording(Framed(std::move(*s), LengthPrefixCodec()), i, order, &(*whys)[i]));
  }
}

// A plain blocking client socket connected to `addr`.
int connect_plain(const SocketAddress& addr) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  EXPECT_GE(fd, 0);
  EXPECT_EQ(::connect(fd, addr.data(), addr.size()), 0) << errno;
  return fd;
}

// One connection's input waiting in the loop is read at most
// FramedOptions::frames_per_turn frames per turn: another connection's frame
// is read in between, not after all of it (600 frames, four receive
// buffers, would otherwise be decoded and echoed in one go).
TEST(FramedStreamTest, APipeliningPeerLetsOthersGoAfterItsFramesPerTurn) {
  Fixture f;
  std::vector<int> order;
  f.whys.resize(2);
  spawn(*f.t.loop, accept_recording(*f.listener, &order, &f.whys));
  const int a = connect_plain(f.addr);
  const int b = connect_plain(f.addr);
  for (int i = 0; i < 200 && f.t.net->live_streams() < 2; ++i) f.t.loop->run_once(false);
  ASSERT_EQ(f.t.net->live_streams(), 2u);
  for (int i = 0; i < 5; ++i) f.t.loop->run_once(false);  // both readers wait
  constexpr int kFrames = 600;
  std::vector<uint8_t> burst;
  for (int i = 0; i < kFrames; ++i) {
    const std::vector<uint8_t> frame = lp_frame(pattern(100, static_cast<uint32_t>(i)));
    burst.insert(burst.end(), frame.begin(), frame.end());
  }
  const std::vector<uint8_t> one = lp_frame(pattern(100, 9999));
  // Both arrive before the loop runs again (loopback: each send lands in the
  // server's socket at once).
  ASSERT_EQ(::send(a, burst.data(), burst.size(), MSG_DONTWAIT),
            static_cast<ssize_t>(burst.size()));
  ASSERT_EQ(::send(b, one.data(), one.size(), MSG_DONTWAIT), static_cast<ssize_t>(one.size()));
  for (int i = 0; i < 2000 && order.size() < kFrames + 1u; ++i) f.t.loop->run_once(false);
  ASSERT_EQ(order.size(), kFrames + 1u);
  const auto b_at = static_cast<size_t>(std::find(order.begin(), order.end(), 1) - order.begin());
  const uint32_t per_turn = FramedOptions{}.frames_per_turn;
  EXPECT_GE(per_turn, 1u);
  EXPECT_LE(b_at, 2u * per_turn) << "frames of the pipelining peer read before the other's one";
  // Every echo arrives, in order.
  std::vector<uint8_t> back(burst.size());
  size_t got = 0;
  for (int i = 0; i < 2000 && got < back.size(); ++i) {
    f.t.loop->run_once(false);
    const ssize_t n = ::recv(a, back.data() + got, back.size() - got, MSG_DONTWAIT);
    if (n > 0) got += static_cast<size_t>(n);
  }
  EXPECT_EQ(back, burst);
  ::close(a);
  ::close(b);
}

// Echoes each frame twice, the second time once the first was sent.
Task<> echo_twice_after_send_lp(Listener& l, absl::Status* why) {
  auto s = co_await l.accept();
  if (!s.ok()) co_return;
  Framed conn(std::move(*s), LengthPrefixCodec());
  for (;;) {
    auto f = co_await conn.read_frame();
    if (!f.ok()) {
      *why = f.status();
      co_return;
    }
    absl::Status w = co_await conn.write_frame(*f);
    if (w.ok()) w = co_await conn.stream().flush();
    if (w.ok()) w = co_await conn.write_frame(*f);
    if (!w.ok()) co_return;
  }
}

// The frame just read stays valid until the next read_frame(), also once
// the receive buffer it lies in was shared and its echo sent: the reader's
// hold keeps the buffer from going back to the ring (which would receive
// the next bytes into it).
TEST(FramedStreamTest, AFrameInASharedBufferStaysValidUntilTheNextRead) {
  Fixture f;
  f.whys.resize(1);
  spawn(*f.t.loop, echo_twice_after_send_lp(*f.listener, &f.whys[0]));
  NetStats st;
  absl::Status s = f.t.run(small_frame_bursts(*f.t.net, f.addr, 3, 2, &st));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_GT(st.shared_writes, 0u) << st.to_string();
}

// Echoes frames, counting those read in place (views into the receive
// buffer, not reassembled by the codec).
Task<> echo_counting_in_place(Listener& l, int* in_place, absl::Status* why) {
  auto s = co_await l.accept();
  if (!s.ok()) co_return;
  Framed conn(std::move(*s), LengthPrefixCodec());
  for (;;) {
    auto f = co_await conn.read_frame();
    if (!f.ok()) {
      *why = f.status();
      co_return;
    }
    if (!conn.codec().owns(f->payload.data())) ++*in_place;
    if (!(co_await conn.write_frame(*f)).ok()) co_return;
  }
}

// With the default receive buffers (NetOptions::recv_buffer_size), a message
// of 16 KiB with up to 512 bytes of framing sent at once arrives in one
// buffer and is read in place: no reassembly copy. (With buffers of exactly
// 16 KiB, every such frame was split across two.)
TEST(FramedStreamTest, SixteenKiBMessagesWithTheirFramingAreReadInPlace) {
  int in_place = 0;  // written by the handler: outlives the loop
  Fixture f;
  f.whys.resize(1);
  spawn(*f.t.loop, echo_counting_in_place(*f.listener, &in_place, &f.whys[0]));
  constexpr int kFrames = 8;
  absl::Status s = f.t.run([](NetContext& net, SocketAddress addr) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, addr);
    if (!c.ok()) co_return c.status();
    for (int i = 0; i < kFrames; ++i) {
      // 4 bytes of length prefix + 16 KiB + 508: 16 KiB + 512 on the wire.
      const std::vector<uint8_t> frame = lp_frame(pattern(16 * 1024 + 508, i));
      if (auto e = co_await burst_and_echoes(*c, frame, frame); !e.ok()) co_return e;
    }
    co_return co_await c->close();
  }(*f.t.net, f.addr));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(in_place, kFrames);
}

// large_frames() against one connection whose codec trades its buffers
// (counted in `counts`, which must outlive `f`'s loop).
absl::Status large_frames_to_trading_codec(Fixture& f, testing::TradeCounts& counts, bool pipelined,
                                           NetStats* st, int bursts = 1) {
  f.whys.resize(1);  // written by the handler: must outlive the loop
  spawn(*f.t.loop, accept_trading(*f.listener, &counts, &f.whys[0]));
  return f.t.run(large_frames(*f.t.net, f.addr, pipelined, st, bursts));
}

// A codec that trades its reassembly buffer (exchange_buffer()): the echo
// of a pipelined split frame is sent from the buffer it was reassembled in,
// neither copied nor waited for, and the codec gets a buffer sent before in
// exchange - after the first burst, one it used already.
TEST(FramedStreamTest, PipelinedFramesOfATradingCodecAreSentFromItsBuffer) {
  testing::TradeCounts counts;  // the handler's codec counts: outlives the loop
  Fixture f;
  NetStats st;
  absl::Status s = large_frames_to_trading_codec(f, counts, /*pipelined=*/true, &st, /*bursts=*/2);
  ASSERT_TRUE(s.ok()) << s;
  // Of each burst's 16 echoes, at most the last (nothing left to read by
  // then) is borrowed, as is the client's one write per burst. One that
  // finds the queue full (256 KiB: 8 frames) is copied instead of traded.
  EXPECT_GE(st.taken_writes, 16u) << st.to_string();
  EXPECT_GE(st.taken_writes + st.copied_writes, 30u) << st.to_string();
  EXPECT_LE(st.borrowed_writes, 4u) << st.to_string();
  EXPECT_EQ(counts.exchanges, static_cast<int>(st.taken_writes));
  EXPECT_GT(counts.recycled, 0);
}

// One frame at a time, the echo of a trading codec's frame is borrowed:
// waiting for its send costs nothing, and the codec keeps one buffer.
TEST(FramedStreamTest, FramesOneAtATimeOfATradingCodecAreNotTraded) {
  testing::TradeCounts counts;  // the handler's codec counts: outlives the loop
  Fixture f;
  NetStats st;
  absl::Status s = large_frames_to_trading_codec(f, counts, /*pipelined=*/false, &st);
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(counts.exchanges, 0);
  EXPECT_EQ(st.borrowed_writes, 32u) << st.to_string();
}

// Echoes each frame twice, the second time once the first was sent.
Task<> echo_twice_after_send(Listener& l, testing::TradeCounts* counts) {
  auto s = co_await l.accept();
  if (!s.ok()) co_return;
  FramedStream<testing::TradingCodec> conn(std::move(*s), testing::TradingCodec(counts));
  for (;;) {
    auto f = co_await conn.read_frame();
    if (!f.ok()) co_return;
    absl::Status w = co_await conn.write_frame(*f);
    if (w.ok()) w = co_await conn.stream().flush();
    if (w.ok()) w = co_await conn.write_frame(*f);
    if (!w.ok()) co_return;
  }
}

// The frame just read stays valid until the next read_frame(), also once
// the buffer it lies in was traded and sent: with a queue bound too low to
// keep any sent buffer for reuse, a buffer let go once sent would be freed
// under the second write (ASan; or other bytes echoed).
TEST(FramedStreamTest, ATradedFrameStaysValidUntilTheNextRead) {
  testing::TradeCounts counts;  // the handler's codec counts: outlives the loop
  NetOptions o;
  o.max_queued_bytes = 4096;
  TestLoop t({}, o);
  auto l = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(l.ok()) << l.status();
  spawn(*t.loop, echo_twice_after_send(**l, &counts));
  absl::Status s = t.run([](NetContext& net, SocketAddress addr) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, addr);
    if (!c.ok()) co_return c.status();
    std::vector<uint8_t> all, expected;
    for (int i = 0; i < 8; ++i) {
      const std::vector<uint8_t> frame = lp_frame(pattern(kLargeFrame, static_cast<uint32_t>(i)));
      all.insert(all.end(), frame.begin(), frame.end());
      for (int twice = 0; twice < 2; ++twice) {
        expected.insert(expected.end(), frame.begin(), frame.end());
      }
    }
    if (auto w = co_await c->write(absl::MakeConstSpan(all)); !w.ok()) co_return w;
    std::vector<uint8_t> echoed;
    if (auto r = co_await testing::read_exactly(*c, expected.size(), echoed); !r.ok()) co_return r;
    if (echoed != expected) co_return absl::DataLossError("echoed bytes differ");
    co_return co_await c->close();
  }(*t.net, *(*l)->local_address()));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_GT(counts.exchanges, 0);
  t.drain();
}

TEST(FramedStreamTest, FramesSentOneByteAtATime) {
  Fixture f;
  spawn(*f.t.loop, accept_framed(*f.listener, 1, &f.whys));
  absl::Status s = f.t.run([](NetContext& net, SocketAddress addr) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, addr);
    if (!c.ok()) co_return c.status();
    std::vector<uint8_t> bytes;
    const std::vector<size_t> sizes = {5, 0, 300};
    for (size_t n : sizes) {
      auto fr = lp_frame(pattern(n, uint32_t(n)));
      bytes.insert(bytes.end(), fr.begin(), fr.end());
    }
    for (uint8_t b : bytes) {
      if (auto st = co_await c->write(absl::MakeConstSpan(&b, 1)); !st.ok()) co_return st;
      if (auto st = co_await c->flush(); !st.ok()) co_return st;  // one byte per send
    }
    std::vector<uint8_t> got;
    if (auto st = co_await testing::read_exactly(*c, bytes.size(), got); !st.ok()) co_return st;
    if (got != bytes) co_return absl::DataLossError("echo differs");
    co_return co_await c->close();
  }(*f.t.net, f.addr));
  EXPECT_TRUE(s.ok()) << s;
}

TEST(FramedStreamTest, PingIsAnsweredByTheTransport) {
  Fixture f;
  spawn(*f.t.loop, accept_framed(*f.listener, 1, &f.whys));
  absl::Status s = f.t.run([](NetContext& net, SocketAddress addr) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, addr);
    if (!c.ok()) co_return c.status();
    std::array<uint8_t, 4> ping;
    testing::put_be32(ping.data(), testing::kPing);
    if (auto st = co_await c->write(absl::MakeConstSpan(ping)); !st.ok()) co_return st;
    std::vector<uint8_t> got;
    if (auto st = co_await testing::read_exactly(*c, 4, got); !st.ok()) co_return st;
    if (testing::get_be32(got.data()) != testing::kPong) co_return absl::DataLossError("no PONG");
    co_return co_await c->close();
  }(*f.t.net, f.addr));
  EXPECT_TRUE(s.ok()) << s;
}

// Reads raw bytes until EOF.
Task<absl::StatusOr<std::vector<uint8_t>>> read_to_eof(Stream& s) {
  std::vector<uint8_t> all;
  for (;;) {
    auto b = co_await s.read();
    if (!b.ok()) co_return b.status();
    if (b->empty()) co_return all;
    all.insert(all.end(), b->data(), b->data() + b->size());
  }
}

TEST(FramedStreamTest, ProtocolErrorSendsGoodbyeAndCloses) {
  Fixture f;
  spawn(*f.t.loop, accept_framed(*f.listener, 2, &f.whys));
  absl::Status s = f.t.run([](NetContext& net, SocketAddress addr) -> Task<absl::Status> {
    auto c = co_await Stream::connect(net, addr);
    if (!c.ok()) co_return c.status();
    // A good frame, then a bad one: the good one is echoed, then GOODBYE.
    std::vector<uint8_t> bytes = lp_frame(pattern(10));
    std::array<uint8_t, 4> bad;
    testing::put_be32(bad.data(), testing::kBad);
    bytes.insert(bytes.end(), bad.begin(), bad.end());
    if (auto st = co_await c->write(absl::MakeConstSpan(bytes)); !st.ok()) co_return st;
    auto all = co_await read_to_eof(*c);
    if (!all.ok()) co_return all.status();
    std::vector<uint8_t> want = lp_frame(pattern(10));
    std::array<uint8_t, 8> bye;
    testing::put_be32(bye.data(), testing::kGoodbye);
    testing::put_be32(bye.data() + 4, uint32_t(absl::StatusCode::kInvalidArgument));
    want.insert(want.end(), bye.begin(), bye.end());
    if (*all != want) co_return absl::DataLossError("expected echo + GOODBYE(InvalidArgument)");
    (void)co_await c->close();
    // A second connection on the same listener still works.
    std::vector<size_t> sizes = {1, 2, 3};
    co_return co_await client_echo(net, addr, std::move(sizes));
  }(*f.t.net, f.addr));
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_TRUE(absl::IsInvalidArgument(f.whys[0])) << f.whys[0];
}

TEST(FramedStreamTest, PeerResetMidFrame) {
  Fixture f;
  spawn(*f.t.loop, accept_framed(*f.listener, 2, &f.whys));
  // A plain socket, so that SO_LINGER 0 can turn close() into a reset.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  ASSERT_EQ(::connect(fd, f.addr.data(), f.addr.size()), 0);
  std::vector<uint8_t> part = lp_frame(pattern(1000));
  part.resize(300);  // header says 1000, 296 payload bytes follow
  ASSERT_EQ(::send(fd, part.data(), part.size(), 0), ssize_t(part.size()));
  for (int i = 0; i < 20; ++i) f.t.loop->run_once(false);
  linger lg{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
  ::close(fd);
  absl::Status s = f.t.run(client_echo(*f.t.net, f.addr, {10, 20000}));
  EXPECT_TRUE(s.ok()) << s;
  for (int i = 0; i < 50 && f.whys[0].ok(); ++i) f.t.loop->run_once(false);
  EXPECT_TRUE(absl::IsUnavailable(f.whys[0])) << f.whys[0];  // ECONNRESET
}

TEST(FramedStreamTest, GracefulCloseSendsQueuedFramesThenGoodbye) {
  Fixture f;
  absl::Status s = f.t.run([](Fixture& f) -> Task<absl::Status> {
    auto c = co_await Stream::connect(*f.t.net, f.addr);
    if (!c.ok()) co_return c.status();
    auto accepted = co_await f.listener->accept();
    if (!accepted.ok()) co_return accepted.status();
    Framed server(std::move(*accepted), LengthPrefixCodec());
    std::vector<uint8_t> payload = pattern(50000);
    for (int i = 0; i < 3; ++i) {
      if (auto st = co_await server.write_frame({absl::MakeConstSpan(payload)}); !st.ok()) {
        co_return st;
      }
    }
    // The client reads everything, then closes; close() waits for that.
    auto client = [](Stream& s) -> Task<absl::StatusOr<std::vector<uint8_t>>> {
      auto all = co_await read_to_eof(s);
      (void)co_await s.close();
      co_return all;
    };
    auto [closed, all] = co_await when_all(server.close(absl::UnavailableError("bye")), client(*c));
    if (!closed.ok()) co_return closed;
    if (!all.ok()) co_return all.status();
    if (all->size() != 3 * (4 + payload.size()) + 8) co_return absl::DataLossError("size");
    const uint8_t* tail = all->data() + all->size() - 8;
    if (testing::get_be32(tail) != testing::kGoodbye ||
        testing::get_be32(tail + 4) != uint32_t(absl::StatusCode::kUnavailable)) {
      co_return absl::DataLossError("no GOODBYE(Unavailable) at the end");
    }
    co_return absl::OkStatus();
  }(f));
  EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace coring::net
