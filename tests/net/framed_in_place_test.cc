// FramedStream<sbmp::Codec> receiving the rest of frames larger than a
// receive buffer straight into the codec's reassembly buffer
// (FramedOptions::receive_in_place, RecvStream::receive_into): large frames
// pipelined and one at a time, small frames right behind large ones (the
// next header read ahead), a header alone (no allocation in place), the
// next header received alone ahead of its frame, reads cancelled while the
// rest of their frame or the next header is on the way, and the switch off.
// Client and server run on one loop; the client checks every echoed byte.
#include <gtest/gtest.h>

#include <stop_token>
#include <vector>

#include "coring/codec/codec.h"
#include "coring/core/timer.h"
#include "coring/net/framed_stream.h"
#include "coring/net/listener.h"
#include "net_test_support.h"
#include "sbmp_test_support.h"

namespace coring::net {
namespace {

using namespace std::chrono_literals;
using sbmp_testing::encode;
using sbmp_testing::pattern;
using testing::TestLoop;
using Conn = FramedStream<sbmp::Codec>;

constexpr uint16_t kType = 0x0100;

// Echoes frames until reading stops; records why and how many frames.
Task<> echo(Conn conn, absl::Status* why, int* frames) {
  for (;;) {
    auto f = co_await conn.read_frame();
    if (!f.ok()) {
      *why = f.status();
      co_return;
    }
    ++*frames;
    if (!(co_await conn.write_frame(*f)).ok()) co_return;
  }
}

struct Fixture {
  explicit Fixture(FramedOptions options = {.receive_in_place = true}, int accepts = 1)
      : options(options), accepts(accepts) {
    auto l = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
    EXPECT_TRUE(l.ok()) << l.status();
    listener = std::move(*l);
    addr = *listener->local_address();
    spawn(*t.loop, accept_one(this));
  }
  ~Fixture() {
    t.drain();
    listener.reset();
  }
  static Task<> accept_one(Fixture* f) {
    for (int i = 0; i < f->accepts; ++i) {
      auto s = co_await f->listener->accept();
      if (!s.ok()) co_return;
      spawn(*f->t.loop, echo(Conn(std::move(*s), sbmp::Codec(), f->options), &f->why, &f->frames));
    }
  }
  uint64_t direct() const { return t.loop->stats().recv_direct; }
  uint64_t direct_bytes() const { return t.loop->stats().recv_direct_bytes; }

  FramedOptions options;
  int accepts;
  absl::Status why;  // written by the handler: outlives the loop
  int frames = 0;
  TestLoop t;
  std::unique_ptr<Listener> listener;
  SocketAddress addr = SocketAddress::ipv4_loopback(0);
};

// The wire bytes of frames of these payload sizes (no CHK, no HELLO: the
// echo of each is byte for byte the frame sent).
std::vector<uint8_t> wire_of(const std::vector<size_t>& sizes) {
  std::vector<uint8_t> wire;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::vector<uint8_t> f = encode(kType, pattern(sizes[i], uint32_t(i + 1)));
    wire.insert(wire.end(), f.begin(), f.end());
  }
  return wire;
}

// Sends `wire` in one write (a pipelining peer) or frame by frame, and
// checks the echoes byte for byte.
Task<absl::Status> exchange(NetContext& net, SocketAddress addr, std::vector<size_t> sizes,
                            bool pipelined, int rounds = 1) {
  auto c = co_await Stream::connect(net, addr);
  if (!c.ok()) co_return c.status();
  for (int r = 0; r < rounds; ++r) {
    std::vector<std::vector<uint8_t>> writes;
    if (pipelined) {
      writes.push_back(wire_of(sizes));
    } else {
      for (size_t s : sizes) writes.push_back(wire_of({s}));
    }
    for (const std::vector<uint8_t>& w : writes) {
      if (auto st = co_await c->write(absl::MakeConstSpan(w)); !st.ok()) co_return st;
      std::vector<uint8_t> echoed;
      if (auto st = co_await testing::read_exactly(*c, w.size(), echoed); !st.ok()) co_return st;
      if (echoed != w) co_return absl::DataLossError("the echo differs from the frames sent");
    }
  }
  co_return co_await c->close();
}

TEST(FramedInPlaceTest, PipelinedLargeFramesAreReceivedInPlace) {
  Fixture f;
  const std::vector<size_t> sizes(8, 64 * 1024);
  absl::Status s = f.t.run(exchange(*f.t.net, f.addr, sizes, /*pipelined=*/true, 4));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f.frames, 32);
  // After the first frame of a burst, each frame's rest (and the next
  // header) comes in one recv or a few: most bytes never touch a ring buffer.
  const uint64_t total = 32 * (64 * 1024 + sbmp::kHeaderSize);
  EXPECT_GE(f.direct(), 24u) << f.t.loop->stats().to_string();
  EXPECT_GE(f.direct_bytes(), total / 2) << f.t.loop->stats().to_string();
}

TEST(FramedInPlaceTest, LargeFramesOneAtATimeAreReceivedInPlace) {
  Fixture f;
  const std::vector<size_t> sizes = {64 * 1024, 100000, 64 * 1024 + 1, 1 << 20, 40000};
  absl::Status s = f.t.run(exchange(*f.t.net, f.addr, sizes, /*pipelined=*/false, 2));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f.frames, 10);
  EXPECT_GE(f.direct(), 10u) << f.t.loop->stats().to_string();
  EXPECT_GE(f.direct_bytes(), (1u << 20) * 2) << f.t.loop->stats().to_string();
}

// Small frames right behind large ones: their headers (or the whole frame,
// a 16-byte one) are read ahead with the rest of the large frame.
TEST(FramedInPlaceTest, SmallFramesBehindLargeOnesComeBackInOrder) {
  Fixture f;
  std::vector<size_t> sizes;
  for (int i = 0; i < 12; ++i) {
    sizes.push_back(64 * 1024 + size_t(i) * 1111);
    sizes.push_back(i % 3 == 0 ? 0 : size_t(i) * 7);  // 0: a 16-byte frame
    if (i % 4 == 0) sizes.push_back(0);
  }
  absl::Status s = f.t.run(exchange(*f.t.net, f.addr, sizes, /*pipelined=*/true, 3));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f.frames, int(sizes.size()) * 3);
  EXPECT_GT(f.direct(), 0u) << f.t.loop->stats().to_string();
}

// Frames one at a time (a request/response peer): after the first two,
// each frame's header is received alone ahead of it and its rest in place,
// so no byte of it comes through a ring buffer (to be copied out). (The
// first is all in ring buffers before the reader sees its header, the
// second's first buffer too: it proves the peer sends large frames.)
TEST(FramedInPlaceTest, LargeFramesOneAtATimeAreReceivedInPlaceFromTheirHeader) {
  Fixture f;
  constexpr int kFrames = 20;
  const std::vector<size_t> sizes(kFrames, 64 * 1024);
  absl::Status s = f.t.run(exchange(*f.t.net, f.addr, sizes, /*pipelined=*/false));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f.frames, kFrames);
  const uint64_t frame = 64 * 1024 + sbmp::kHeaderSize;
  EXPECT_GE(f.direct_bytes(), (kFrames - 2) * frame) << f.t.loop->stats().to_string();
  EXPECT_LE(f.direct(), 2u * kFrames + 4) << f.t.loop->stats().to_string();
}

// Small frames (a header-only one too) between large ones, one at a time:
// the header received ahead is a whole frame, or the start of one whose
// rest comes through the ring, and the next large frame again in place.
// The header of a large frame split over two writes arrives in two parts.
TEST(FramedInPlaceTest, SmallFramesAmongLargeOnesOneAtATimeComeBackInOrder) {
  Fixture f;
  const std::vector<size_t> sizes = {64 * 1024, 0,     64 * 1024, 10,      100000,
                                     100,       70000, 0,         1 << 20, 64 * 1024};
  absl::Status s = f.t.run(exchange(*f.t.net, f.addr, sizes, /*pipelined=*/false, 2));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f.frames, int(sizes.size()) * 2);
  spawn(*f.t.loop, Fixture::accept_one(&f));
  s = f.t.run([](Fixture& f) -> Task<absl::Status> {
    auto c = co_await Stream::connect(*f.t.net, f.addr);
    if (!c.ok()) co_return c.status();
    for (int i = 0; i < 3; ++i) {
      const std::vector<uint8_t> frame = wire_of({size_t{80000} + size_t(i)});
      // The first frame whole; the others' headers in two parts, apart.
      const size_t split = i == 0 ? frame.size() : 10;
      if (auto st = co_await c->write(absl::MakeConstSpan(frame).first(split)); !st.ok()) {
        co_return st;
      }
      if (split < frame.size()) {
        (void)co_await sleep_for(10ms);
        if (auto st = co_await c->write(absl::MakeConstSpan(frame).subspan(split)); !st.ok()) {
          co_return st;
        }
      }
      std::vector<uint8_t> echoed;
      if (auto st = co_await testing::read_exactly(*c, frame.size(), echoed); !st.ok()) {
        co_return st;
      }
      if (echoed != frame) co_return absl::DataLossError("the echo differs");
    }
    co_return co_await c->close();
  }(f));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f.frames, int(sizes.size()) * 2 + 3);
}

// Header-only frames pipelined after a large frame: the first one's header
// is read ahead alone, which ends the run; the rest come through the ring,
// many per recv, not one 16-byte recv each.
TEST(FramedInPlaceTest, HeaderOnlyFramesAfterALargeOneAreNotReadOneByOne) {
  Fixture f;
  uint64_t direct_before_burst = 0;
  absl::Status s = f.t.run([](Fixture& f, uint64_t& before) -> Task<absl::Status> {
    auto c = co_await Stream::connect(*f.t.net, f.addr);
    if (!c.ok()) co_return c.status();
    // Two large frames one at a time (the second's rest in place), then 400
    // header-only frames in one write.
    std::vector<std::vector<uint8_t>> writes = {wire_of({64 * 1024}), wire_of({64 * 1024}),
                                                wire_of(std::vector<size_t>(400, 0))};
    for (size_t i = 0; i < writes.size(); ++i) {
      if (i == 2) before = f.direct();
      if (auto st = co_await c->write(absl::MakeConstSpan(writes[i])); !st.ok()) co_return st;
      std::vector<uint8_t> echoed;
      if (auto st = co_await testing::read_exactly(*c, writes[i].size(), echoed); !st.ok()) {
        co_return st;
      }
      if (echoed != writes[i]) co_return absl::DataLossError("the echo differs");
    }
    co_return co_await c->close();
  }(f, direct_before_burst));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f.frames, 402);
  EXPECT_LE(f.direct() - direct_before_burst, 4u) << f.t.loop->stats().to_string();
}

// A large frame that trickles in (each recv finds ~64 KiB: a peer sending
// no faster than a busy loop reads) grows its reassembly buffer a few
// times (3 here), by 5x, not whenever "received + 4 x received" outgrew it
// (12 times here), each growth copying the whole buffer: with 64 peers'
// 4 MiB opening frames that stalled a server under ASan for seconds
// (FairnessTest.ManyNeverReadingPeers*).
TEST(FramedInPlaceTest, ATricklingLargeFrameGrowsItsBufferAFewTimesOnly) {
  Fixture f;
  std::vector<size_t> held;  // the partial-frame bytes after each write
  absl::Status s = f.t.run([](Fixture& f, std::vector<size_t>& held) -> Task<absl::Status> {
    auto c = co_await Stream::connect(*f.t.net, f.addr);
    if (!c.ok()) co_return c.status();
    const std::vector<uint8_t> frame = wire_of({4 << 20});
    for (size_t at = 0; at < frame.size(); at += 64 * 1024) {
      const size_t n = std::min<size_t>(64 * 1024, frame.size() - at);
      if (auto st = co_await c->write(absl::MakeConstSpan(frame).subspan(at, n)); !st.ok()) {
        co_return st;
      }
      (void)co_await sleep_for(1ms);
      held.push_back(f.t.net->partial_frame_bytes());
    }
    std::vector<uint8_t> echoed;
    if (auto st = co_await testing::read_exactly(*c, frame.size(), echoed); !st.ok()) co_return st;
    if (echoed != frame) co_return absl::DataLossError("the echo differs from the frame sent");
    co_return co_await c->close();
  }(f, held));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f.frames, 1);
  EXPECT_GT(f.direct(), 8u) << "the frame was not received in place: the test shows nothing";
  size_t growths = 0;
  for (size_t i = 1; i < held.size(); ++i) growths += held[i] > held[i - 1];
  EXPECT_LE(growths, 6u) << "the buffer grew on " << growths << " of " << held.size() << " writes; "
                         << f.t.loop->stats().to_string();
}

TEST(FramedInPlaceTest, SwitchedOffEverythingGoesThroughTheRing) {
  Fixture f({.receive_in_place = false});
  const std::vector<size_t> sizes(8, 64 * 1024);
  absl::Status s = f.t.run(exchange(*f.t.net, f.addr, sizes, /*pipelined=*/true, 2));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f.frames, 16);
  EXPECT_EQ(f.direct(), 0u) << f.t.loop->stats().to_string();
}

// A header announcing a large frame, and a few bytes of it: nothing is
// received in place (no buffer grown for bytes that may never come) until
// the peer has sent half a receive buffer of the frame.
TEST(FramedInPlaceTest, AHeaderAloneIsNotReceivedInPlace) {
  Fixture f;
  absl::Status s = f.t.run([](Fixture& f) -> Task<absl::Status> {
    auto c = co_await Stream::connect(*f.t.net, f.addr);
    if (!c.ok()) co_return c.status();
    const std::vector<uint8_t> frame = wire_of({1 << 20});
    auto head = absl::MakeConstSpan(frame).first(sbmp::kHeaderSize + 100);
    if (auto st = co_await c->write(head); !st.ok()) co_return st;
    (void)co_await sleep_for(20ms);
    if (f.direct() != 0) co_return absl::InternalError("a header alone was received in place");
    if (f.t.net->partial_frame_bytes() > 64 * 1024) {
      co_return absl::InternalError("a header alone made the reader allocate");
    }
    // The rest in two writes: what the multishot recv already took comes
    // through the ring; it is stopped, and the second write comes in place.
    const auto rest = absl::MakeConstSpan(frame).subspan(head.size());
    if (auto st = co_await c->write(rest.first(rest.size() / 2)); !st.ok()) co_return st;
    (void)co_await sleep_for(10ms);
    if (auto st = co_await c->write(rest.subspan(rest.size() / 2)); !st.ok()) co_return st;
    std::vector<uint8_t> echoed;
    if (auto st = co_await testing::read_exactly(*c, frame.size(), echoed); !st.ok()) co_return st;
    if (echoed != frame) co_return absl::DataLossError("the echo differs");
    if (f.direct() == 0)
      co_return absl::InternalError("the rest was not received in place: " +
                                    f.t.loop->stats().to_string());
    co_return co_await c->close();
  }(f));
  EXPECT_TRUE(s.ok()) << s;
}

// A server that echoes `echoed_first` frames, then reads with a stop token
// the client side cancels while the read waits (stage 1), and reads on
// (stage 2) until a frame comes (stage 3, its payload kept).
struct CancelledRead {
  explicit CancelledRead(int echoed_first) {
    auto l = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
    EXPECT_TRUE(l.ok()) << l.status();
    listener = std::move(*l);
    addr = *listener->local_address();
    spawn(*t.loop, serve(this, echoed_first));
  }
  ~CancelledRead() {
    t.drain();
    listener.reset();
  }

  static Task<> serve(CancelledRead* r, int echoed_first) {
    auto s = co_await r->listener->accept();
    if (!s.ok()) co_return;
    Conn conn(std::move(*s), sbmp::Codec(), {.receive_in_place = true});
    for (int i = 0; i < echoed_first; ++i) {
      auto f = co_await conn.read_frame();
      if (!f.ok() || !(co_await conn.write_frame(*f)).ok()) {
        r->cancelled = absl::InternalError("the first frames were not echoed");
        co_return;
      }
    }
    {
      auto reading = [](Conn& conn) -> Task<absl::StatusOr<size_t>> {
        auto f = co_await conn.read_frame();
        if (!f.ok()) co_return f.status();
        co_return f->payload.size();
      }(conn);
      reading.set_stop_token(r->stop.get_token());
      r->stage = 1;
      absl::StatusOr<size_t> first = co_await std::move(reading);
      r->cancelled =
          first.ok() ? absl::InternalError("the cancelled read returned a frame") : first.status();
    }
    r->stage = 2;
    auto f = co_await conn.read_frame();
    if (!f.ok()) {
      r->cancelled = f.status();
      co_return;
    }
    r->payload.assign(f->payload.begin(), f->payload.end());
    r->stage = 3;
    (void)co_await conn.close();
  }
  // Client side: cancels the read once it waits, and waits for it to return.
  Task<absl::Status> cancel() {
    (void)co_await sleep_for(20ms);
    if (stage != 1) co_return absl::InternalError("the reader is not waiting");
    stop.request_stop();
    for (int i = 0; i < 200 && stage < 2; ++i) (void)co_await sleep_for(1ms);
    if (stage != 2) co_return absl::InternalError("the cancelled read did not return");
    co_return absl::OkStatus();
  }
  Task<> wait_for_frame() {
    for (int i = 0; i < 500 && stage < 3; ++i) (void)co_await sleep_for(1ms);
  }
  // The read returned Cancelled, and the next one the frame of 200000
  // bytes sent after it.
  void expect_cancelled_then_frame() const {
    EXPECT_TRUE(absl::IsCancelled(cancelled)) << cancelled;
    EXPECT_EQ(stage, 3);
    EXPECT_EQ(payload, pattern(200000, 1));
  }

  TestLoop t;
  std::unique_ptr<Listener> listener;
  SocketAddress addr = SocketAddress::ipv4_loopback(0);
  std::stop_source stop;
  int stage = 0;
  absl::Status cancelled;  // written by the server: outlives the loop
  std::vector<uint8_t> payload;
};

// A read cancelled (its caller's stop token) while the rest of its frame is
// being received in place: Cancelled, no byte lost; the next read_frame()
// gets the frame once the rest arrives.
TEST(FramedInPlaceTest, AReadCancelledWhileItsFrameIsReceivedInPlaceLosesNothing) {
  CancelledRead r(0);
  absl::Status s = r.t.run([](CancelledRead& r) -> Task<absl::Status> {
    auto c = co_await Stream::connect(*r.t.net, r.addr);
    if (!c.ok()) co_return c.status();
    const std::vector<uint8_t> frame = wire_of({200000});
    // Half a receive buffer and more: the rest is then received in place.
    const size_t first = 40000;
    if (auto st = co_await c->write(absl::MakeConstSpan(frame).first(first)); !st.ok()) {
      co_return st;
    }
    // The reader has taken those bytes and armed the in-place recv for the
    // rest, which does not come: cancel.
    if (absl::Status st = co_await r.cancel(); !st.ok()) co_return st;
    if (auto st = co_await c->write(absl::MakeConstSpan(frame).subspan(first)); !st.ok()) {
      co_return st;
    }
    co_await r.wait_for_frame();
    co_return co_await c->close();
  }(r));
  ASSERT_TRUE(s.ok()) << s;
  r.expect_cancelled_then_frame();
  EXPECT_GT(r.t.loop->stats().recv_direct, 0u) << r.t.loop->stats().to_string();
}

// A read cancelled while the next frame's header is awaited ahead (after
// large frames one at a time; the second one's rest came in place):
// Cancelled, nothing received meanwhile, and the next read_frame() gets the
// frame the peer sends after it.
TEST(FramedInPlaceTest, AReadCancelledWhileTheNextHeaderIsAwaitedLosesNothing) {
  CancelledRead r(2);
  absl::Status s = r.t.run([](CancelledRead& r) -> Task<absl::Status> {
    auto c = co_await Stream::connect(*r.t.net, r.addr);
    if (!c.ok()) co_return c.status();
    for (int i = 0; i < 2; ++i) {
      const std::vector<uint8_t> frame = wire_of({64 * 1024});
      if (auto st = co_await c->write(absl::MakeConstSpan(frame)); !st.ok()) co_return st;
      std::vector<uint8_t> echoed;
      if (auto st = co_await testing::read_exactly(*c, frame.size(), echoed); !st.ok()) {
        co_return st;
      }
    }
    const uint64_t direct = r.t.loop->stats().recv_direct;
    if (absl::Status st = co_await r.cancel(); !st.ok()) co_return st;
    if (r.t.loop->stats().recv_direct != direct) {
      co_return absl::InternalError("bytes were received while nothing was sent");
    }
    const std::vector<uint8_t> frame = wire_of({200000});
    if (auto st = co_await c->write(absl::MakeConstSpan(frame)); !st.ok()) co_return st;
    co_await r.wait_for_frame();
    co_return co_await c->close();
  }(r));
  ASSERT_TRUE(s.ok()) << s;
  r.expect_cancelled_then_frame();
}

// Between large frames a connection holds no reassembly buffer: it goes
// back to the loop's pool (NetContext::keep_frame_buffer()), from which the
// next large frame, on any connection, is reassembled. Before, each of these
// connections kept a 64 KiB buffer for as long as it stayed open.
TEST(FramedInPlaceTest, ConnectionsBetweenLargeFramesHoldNoReassemblyBuffer) {
  constexpr int kConns = 40;
  Fixture f({.receive_in_place = true}, kConns);
  size_t held_while_idle = 0;
  absl::Status s = f.t.run([](Fixture& f, size_t& held) -> Task<absl::Status> {
    std::vector<Stream> clients;
    const std::vector<uint8_t> w = wire_of({64 * 1024});
    for (int i = 0; i < kConns; ++i) {
      auto c = co_await Stream::connect(*f.t.net, f.addr);
      if (!c.ok()) co_return c.status();
      if (auto st = co_await c->write(absl::MakeConstSpan(w)); !st.ok()) co_return st;
      std::vector<uint8_t> echoed;
      if (auto st = co_await testing::read_exactly(*c, w.size(), echoed); !st.ok()) co_return st;
      if (echoed != w) co_return absl::DataLossError("the echo differs from the frame sent");
      clients.push_back(std::move(*c));
    }
    // (The last echo's reader goes back to waiting for its next frame.)
    (void)co_await sleep_for(20ms);
    held = f.t.net->partial_frame_bytes();
    for (Stream& c : clients) {
      if (auto st = co_await c.close(); !st.ok()) co_return st;
    }
    co_return absl::OkStatus();
  }(f, held_while_idle));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f.frames, kConns);
  EXPECT_LT(held_while_idle, 64u * 1024);  // before: 40 x 64 KiB
}

}  // namespace
}  // namespace coring::net
