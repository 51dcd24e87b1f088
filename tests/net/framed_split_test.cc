// FramedStream<sbmp::Codec> with FramedOptions::split_payloads: a frame that
// arrives split across two receive buffers is handed out as two views of
// them (Frame::payload, Frame::payload_tail) and echoed from both, never
// reassembled by a copy. Pipelined frames of about a receive buffer (most
// straddle two), the option off, and peers that stop mid-frame: the loop
// keeps at most half its ring for them, and copies past that.
// Client and server run on one loop; the clients check every echoed byte.
#include <gtest/gtest.h>

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

struct Counts {
  int frames = 0;
  int split = 0;  // frames handed out in two parts
};

// Echoes frames until reading stops.
Task<> echo(Conn conn, Counts* counts) {
  for (;;) {
    auto f = co_await conn.read_frame();
    if (!f.ok()) co_return;
    ++counts->frames;
    if (!f->payload_tail.empty()) ++counts->split;
    if (!(co_await conn.write_frame(*f)).ok()) co_return;
  }
}

struct Fixture {
  // Serves `connections` connections.
  Fixture(bool split, int connections, NetOptions net = {}) : t({}, net) {
    options.split_payloads = split;
    auto l = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
    EXPECT_TRUE(l.ok()) << l.status();
    listener = std::move(*l);
    addr = *listener->local_address();
    spawn(*t.loop, accept(this, connections));
  }
  ~Fixture() {
    t.drain();
    listener.reset();
  }
  static Task<> accept(Fixture* f, int n) {
    for (int i = 0; i < n; ++i) {
      auto s = co_await f->listener->accept();
      if (!s.ok()) co_return;
      spawn(*f->t.loop, echo(Conn(std::move(*s), sbmp::Codec(), f->options), &f->counts));
    }
  }

  FramedOptions options;
  Counts counts;  // written by the handlers: outlives the loop
  TestLoop t;
  std::unique_ptr<Listener> listener;
  SocketAddress addr = SocketAddress::ipv4_loopback(0);
};

// Frames of these payload sizes back to back (no CHK, no HELLO: the echo of
// each is byte for byte the frame sent).
std::vector<uint8_t> wire_of(const std::vector<size_t>& sizes, uint32_t seed) {
  std::vector<uint8_t> wire;
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::vector<uint8_t> f = encode(kType, pattern(sizes[i], seed + uint32_t(i)));
    wire.insert(wire.end(), f.begin(), f.end());
  }
  return wire;
}

// Sends the frames in one write per round (a pipelining peer) and checks
// the echo byte for byte.
Task<absl::Status> pipeline(NetContext& net, SocketAddress addr, std::vector<size_t> sizes,
                            int rounds) {
  auto c = co_await Stream::connect(net, addr);
  if (!c.ok()) co_return c.status();
  for (int r = 0; r < rounds; ++r) {
    const std::vector<uint8_t> w = wire_of(sizes, uint32_t(r * 1000));
    if (auto st = co_await c->write(absl::MakeConstSpan(w)); !st.ok()) co_return st;
    std::vector<uint8_t> echoed;
    if (auto st = co_await testing::read_exactly(*c, w.size(), echoed); !st.ok()) co_return st;
    if (echoed != w) co_return absl::DataLossError("the echo differs from the frames sent");
  }
  co_return co_await c->close();
}

// Waits (at most 10 s) until *done reaches n.
Task<absl::Status> until(const int* done, int n) {
  for (int i = 0; i < 10000 && *done < n; ++i) {
    if (auto st = co_await sleep_for(1ms); !st.ok()) co_return st;
  }
  co_return *done >= n ? absl::OkStatus() : absl::DeadlineExceededError("clients not done");
}

// About a receive buffer each, and some small ones between: nearly every
// large frame straddles two ring buffers.
std::vector<size_t> straddling_sizes() {
  std::vector<size_t> sizes;
  for (int i = 0; i < 24; ++i) {
    sizes.push_back(16 * 1024 - 40 + size_t(i % 7) * 13);
    if (i % 5 == 0) sizes.push_back(size_t(i) * 31);
    if (i % 8 == 0) sizes.push_back(9000);
  }
  return sizes;
}

TEST(FramedSplitTest, PipelinedFramesAcrossTwoBuffersAreEchoedFromThem) {
  Fixture f(/*split=*/true, 1);
  const std::vector<size_t> sizes = straddling_sizes();
  absl::Status s = f.t.run(pipeline(*f.t.net, f.addr, sizes, 6));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f.counts.frames, int(sizes.size()) * 6);
  EXPECT_GT(f.counts.split, f.counts.frames / 4) << "frames handed out in two parts";
  EXPECT_EQ(f.t.net->split_buffers_held(), 0u);
}

TEST(FramedSplitTest, ManyConnectionsAtOnce) {
  Fixture f(/*split=*/true, 16);
  const std::vector<size_t> sizes = straddling_sizes();
  int done = 0;
  for (int i = 0; i < 16; ++i) {
    spawn(*f.t.loop, [](Fixture* f, std::vector<size_t> sizes, int* done) -> Task<> {
      absl::Status s = co_await pipeline(*f->t.net, f->addr, sizes, 3);
      EXPECT_TRUE(s.ok()) << s;
      ++*done;
    }(&f, sizes, &done));
  }
  ASSERT_TRUE(f.t.run(until(&done, 16)).ok());
  EXPECT_EQ(f.counts.frames, int(sizes.size()) * 3 * 16);
  EXPECT_GT(f.counts.split, 0);
  EXPECT_EQ(f.t.net->split_buffers_held(), 0u);
}

TEST(FramedSplitTest, OffByDefault) {
  Fixture f(/*split=*/false, 1);
  const std::vector<size_t> sizes = straddling_sizes();
  absl::Status s = f.t.run(pipeline(*f.t.net, f.addr, sizes, 3));
  ASSERT_TRUE(s.ok()) << s;
  EXPECT_EQ(f.counts.frames, int(sizes.size()) * 3);
  EXPECT_EQ(f.counts.split, 0);
}

// A frame's start (header and some payload) after a whole frame, then a
// pause, then its rest: the server waits holding the start.
Task<absl::Status> stall_mid_frame(NetContext& net, SocketAddress addr, uint32_t seed,
                                   std::chrono::milliseconds pause) {
  auto c = co_await Stream::connect(net, addr);
  if (!c.ok()) co_return c.status();
  const std::vector<uint8_t> w = wire_of({100, 12000}, seed);
  const size_t cut = w.size() - 5000;
  if (auto st = co_await c->write(absl::MakeConstSpan(w).first(cut)); !st.ok()) co_return st;
  if (auto st = co_await sleep_for(pause); !st.ok()) co_return st;
  if (auto st = co_await c->write(absl::MakeConstSpan(w).subspan(cut)); !st.ok()) co_return st;
  std::vector<uint8_t> echoed;
  if (auto st = co_await testing::read_exactly(*c, w.size(), echoed); !st.ok()) co_return st;
  if (echoed != w) co_return absl::DataLossError("the echo differs from the frames sent");
  co_return co_await c->close();
}

// Readers of peers that stopped mid-frame keep at most half the ring; the
// others copy what they have, and a pipelining peer alongside is served
// throughout. Every frame is echoed once the peers go on.
TEST(FramedSplitTest, PeersStoppedMidFrameHoldAtMostHalfTheRing) {
  NetOptions net;
  net.recv_buffers = 64;  // half: 32
  constexpr int kStalled = 40;
  Fixture f(/*split=*/true, kStalled + 1, net);
  uint32_t most_held = 0;
  auto watch = [](Fixture* f, uint32_t* most) -> Task<absl::Status> {  // no captures
    for (int i = 0; i < 60; ++i) {
      *most = std::max(*most, f->t.net->split_buffers_held());
      if (auto st = co_await sleep_for(5ms); !st.ok()) co_return st;
    }
    co_return absl::OkStatus();
  };
  int done = 0;
  for (int i = 0; i < kStalled; ++i) {
    spawn(*f.t.loop, [](Fixture* f, uint32_t seed, int* done) -> Task<> {
      absl::Status s = co_await stall_mid_frame(*f->t.net, f->addr, seed, 200ms);
      EXPECT_TRUE(s.ok()) << s;
      ++*done;
    }(&f, uint32_t(i * 7), &done));
  }
  Task<absl::Status> watcher = watch(&f, &most_held);
  absl::Status s = f.t.run(pipeline(*f.t.net, f.addr, straddling_sizes(), 2));
  ASSERT_TRUE(s.ok()) << s;
  ASSERT_TRUE(f.t.run(std::move(watcher)).ok());
  ASSERT_TRUE(f.t.run(until(&done, kStalled)).ok());
  EXPECT_GT(most_held, 0u);
  EXPECT_LE(most_held, 32u);
  EXPECT_EQ(f.counts.frames, kStalled * 2 + int(straddling_sizes().size()) * 2);
  EXPECT_EQ(f.t.net->split_buffers_held(), 0u);
}

}  // namespace
}  // namespace coring::net
