// SBMP echo over FramedStream<sbmp::Codec> in a net::Server, driven by raw
// loopback sockets that send hand-made bytes: frames from 0 B to 1 MiB,
// extensions echoed byte for byte, pipelined frames, 1-byte writes, many
// connections, PING/PONG, HELLO/HELLO_ACK with CRC32C, idle timeout and the
// connection limit.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sbmp_test_support.h"

namespace coring::net::sbmp_testing {
namespace {

constexpr uint16_t kType = 0x0100;

TEST(SbmpEchoTest, FramesFromEmptyToOneMiBComeBackExactly) {
  SbmpEchoServer s;
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient c(s.port());
  ASSERT_TRUE(c.connected());
  const std::vector<size_t> sizes = {0, 1, 100, 16 * 1024 - 1, 16 * 1024, 64 * 1024 + 1, 1 << 20};
  for (size_t i = 0; i < sizes.size(); ++i) {
    SCOPED_TRACE(sizes[i]);
    const std::vector<uint8_t> payload = pattern(sizes[i], uint32_t(i));
    const std::vector<uint8_t> ext = request_id_ext(i);
    const uint16_t type = static_cast<uint16_t>(kType + i);
    c.expect_echo(encode(type, payload, ext), type, ext, payload);
    // A CHK frame is verified and accepted without negotiation.
    c.expect_echo(encode(type, payload, ext, /*chk=*/true), type, ext, payload);
  }
}

TEST(SbmpEchoTest, ExtensionsOfEveryKindAreEchoedInOrder) {
  SbmpEchoServer s;
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient c(s.port());
  sbmp::ExtensionBuilder b;
  const std::vector<uint8_t> a = {0xAA, 0xBB}, unknown = bytes_of("reserved kind");
  ASSERT_TRUE(b.add(0x80, a).ok());
  b.set_request_id(0x0102030405060708ull);
  sbmp::TraceContext tc;
  for (size_t i = 0; i < tc.trace_id.size(); ++i) tc.trace_id[i] = uint8_t(i + 1);
  for (size_t i = 0; i < tc.parent_id.size(); ++i) tc.parent_id[i] = uint8_t(0xF0 + i);
  tc.trace_flags = 1;
  b.set_trace_context(tc);
  ASSERT_TRUE(b.add(0x05, unknown).ok());  // reserved: skipped by receivers, kept by echoes
  ASSERT_TRUE(b.add(0x80, {}).ok());       // application kinds may repeat
  ASSERT_TRUE(b.add(0xFF, a).ok());
  b.set_state_version(99);
  b.set_timeout_us(5000);
  const std::vector<uint8_t> ext(b.bytes().begin(), b.bytes().end());
  const std::vector<uint8_t> payload = bytes_of("with every kind of extension");
  ASSERT_TRUE(c.send(encode(0xBEEF, payload, ext)));
  absl::StatusOr<OwnedFrame> f = c.read_frame();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->type(), 0xBEEF);
  EXPECT_EQ(f->ext, ext);
  EXPECT_EQ(f->payload, payload);
  const sbmp::Extensions got = f->extensions();
  EXPECT_EQ(got.request_id(), 0x0102030405060708ull);
  EXPECT_EQ(got.trace_context(), tc);
  EXPECT_EQ(got.state_version(), 99u);
  EXPECT_EQ(got.timeout_us(), 5000u);
  std::vector<uint8_t> kinds;
  for (const sbmp::Extension& e : got) kinds.push_back(e.kind);
  EXPECT_EQ(kinds, (std::vector<uint8_t>{0x80, 0x01, 0x02, 0x05, 0x80, 0xFF, 0x03, 0x04}));
}

// 300 frames of many sizes, some with CRC-32C trailers, in one write: each
// echoed in order.
void expect_pipelined_echoes(SbmpEchoServer::Handler handler) {
  SbmpEchoServer s({}, {}, handler);
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient c(s.port());
  constexpr int kFrames = 300;
  std::vector<uint8_t> wire;
  for (int i = 0; i < kFrames; ++i) {
    const auto f = encode(kType, pattern(size_t(i * 7 % 1500), uint32_t(i)), request_id_ext(i),
                          /*chk=*/i % 3 == 0);
    wire.insert(wire.end(), f.begin(), f.end());
  }
  ASSERT_TRUE(c.send(wire));
  for (int i = 0; i < kFrames; ++i) {
    absl::StatusOr<OwnedFrame> f = c.read_frame();
    ASSERT_TRUE(f.ok()) << "frame " << i << ": " << f.status();
    EXPECT_EQ(f->extensions().request_id(), uint64_t(i));
    EXPECT_EQ(f->payload, pattern(size_t(i * 7 % 1500), uint32_t(i)));
  }
}

TEST(SbmpEchoTest, PipelinedFramesInOneWriteAreEchoedInOrder) { expect_pipelined_echoes(echo); }

// The same with one awaited read_frame() per frame (echo() reads what is
// already received with try_read_frame()).
TEST(SbmpEchoTest, PipelinedFramesEchoedWithReadFrameAlone) {
  expect_pipelined_echoes(echo_awaiting_each);
}

// Answers each frame three times: as it came (sent as its received bytes,
// from the shared receive buffer), with its type changed in frame.header,
// and with its payload one byte shorter (both encoded afresh).
Task<> answer_thrice(SbmpConn conn) {
  for (;;) {
    auto frame = co_await conn.read_frame();
    if (!frame.ok()) co_return;
    sbmp::Frame retyped = *frame;
    retyped.header.type = static_cast<uint16_t>(retyped.header.type + 1);
    sbmp::Frame shorter = *frame;
    if (!shorter.payload.empty()) shorter.payload.remove_suffix(1);
    if (!(co_await conn.write_frame(*frame)).ok()) break;
    if (!(co_await conn.write_frame(retyped)).ok()) break;
    if (!(co_await conn.write_frame(shorter)).ok()) break;
  }
  (void)co_await conn.close();
}

TEST(SbmpEchoTest, UnchangedFramesLeaveAsReceivedChangedOnesAreEncodedAfresh) {
  SbmpEchoServer s({}, {}, answer_thrice);
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient c(s.port());
  constexpr int kFrames = 200;
  std::vector<uint8_t> wire;
  for (int i = 0; i < kFrames; ++i) {
    const auto f = encode(kType, pattern(size_t(i * 13 % 700), uint32_t(i)), request_id_ext(i));
    wire.insert(wire.end(), f.begin(), f.end());
  }
  ASSERT_TRUE(c.send(wire));
  for (int i = 0; i < kFrames; ++i) {
    SCOPED_TRACE(i);
    std::vector<uint8_t> payload = pattern(size_t(i * 13 % 700), uint32_t(i));
    for (int k = 0; k < 3; ++k) {
      absl::StatusOr<OwnedFrame> f = c.read_frame();  // hcrc checked
      ASSERT_TRUE(f.ok()) << "answer " << k << ": " << f.status();
      EXPECT_EQ(f->type(), k == 1 ? kType + 1 : kType) << "answer " << k;
      EXPECT_EQ(f->extensions().request_id(), uint64_t(i)) << "answer " << k;
      std::vector<uint8_t> want = payload;
      if (k == 2 && !want.empty()) want.pop_back();
      EXPECT_EQ(f->payload, want) << "answer " << k;
    }
  }
  // The unchanged ones went from the shared receive buffer.
  EXPECT_GT(s.net_stats().shared_writes, 0u);
}

// Frames that arrive in one chunk and are echoed unchanged leave as one run
// of the receive buffer they came in: each echo grows the segment queued
// before it, and the server sends them with one SEND from that buffer, not
// a sendmsg of a piece per frame, and copies nothing.
TEST(SbmpEchoTest, EchoesOfOneChunkLeaveAsOneRunOfItsBuffer) {
  SbmpEchoServer s;
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient c(s.port());
  ASSERT_TRUE(c.connected());
  constexpr int kFrames = 16;
  std::vector<uint8_t> wire;
  for (int i = 0; i < kFrames; ++i) {
    const auto f = encode(kType, pattern(64, uint32_t(i)));
    wire.insert(wire.end(), f.begin(), f.end());
  }
  ASSERT_TRUE(c.send(wire));  // 1.3 KB in one write: one chunk on loopback
  for (int i = 0; i < kFrames; ++i) {
    absl::StatusOr<OwnedFrame> f = c.read_frame();
    ASSERT_TRUE(f.ok()) << "frame " << i << ": " << f.status();
    EXPECT_EQ(f->payload, pattern(64, uint32_t(i))) << "frame " << i;
  }
  const NetStats st = s.net_stats();
  EXPECT_EQ(st.shared_writes, uint64_t{kFrames}) << st.to_string();
  EXPECT_EQ(st.copied_writes, 0u) << st.to_string();
  EXPECT_EQ(st.sendmsg_sends, 0u) << st.to_string();
}

// Answers each frame as it came when read_frame() returned it, and with its
// type changed to kTried when try_read_frame() did.
constexpr uint16_t kTried = 0x0777;
Task<> answer_how_read(SbmpConn conn) {
  for (;;) {
    auto frame = co_await conn.read_frame();
    if (!frame.ok()) co_return;
    if (!(co_await conn.write_frame(*frame)).ok()) break;
    bool written = true;
    sbmp::Frame next;
    while (written && conn.try_read_frame(next)) {
      next.header.type = kTried;
      written = (co_await conn.write_frame(next)).ok();
    }
    if (!written) break;
  }
  (void)co_await conn.close();
}

// Reads `n` answers of answer_how_read(): "r" for each read with
// read_frame(), "t" with try_read_frame(), "P" for a PONG; each answer's
// payload must be pattern(20 + i, i) for the i-th application frame.
std::string how_read(RawClient& c, int n, int& frame_index) {
  std::string got;
  for (int k = 0; k < n; ++k) {
    absl::StatusOr<OwnedFrame> f = c.read_frame();
    if (!f.ok()) return got + "<" + f.status().ToString() + ">";
    if (f->type() == sbmp::kTypePong) {
      got += 'P';
      continue;
    }
    const int i = frame_index++;
    if (f->payload != pattern(size_t(20 + i), uint32_t(i))) return got + "<payload>";
    got += f->type() == kTried ? 't' : (f->type() == kType ? 'r' : '?');
  }
  return got;
}

std::vector<uint8_t> frames(int from, int to) {
  std::vector<uint8_t> wire;
  for (int i = from; i < to; ++i) {
    const auto f = encode(kType, pattern(size_t(20 + i), uint32_t(i)));
    wire.insert(wire.end(), f.begin(), f.end());
  }
  return wire;
}

// try_read_frame() takes the frames that lie whole in what was received,
// in order, and leaves a frame not whole yet to read_frame(), which waits
// for the rest.
TEST(SbmpEchoTest, TryReadFrameTakesTheWholeFramesAlreadyReceived) {
  SbmpEchoServer s({}, {}, answer_how_read);
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient c(s.port());
  int index = 0;
  ASSERT_TRUE(c.send(frames(0, 10)));  // one chunk on loopback
  EXPECT_EQ(how_read(c, 10, index), "rttttttttt");
  // Three whole frames and half of a fourth; then its other half.
  const std::vector<uint8_t> fourth = frames(13, 14);
  const size_t half = fourth.size() / 2;
  ASSERT_TRUE(c.send(concat({frames(10, 13), absl::MakeConstSpan(fourth).first(half)})));
  EXPECT_EQ(how_read(c, 3, index), "rtt");
  ASSERT_TRUE(c.send(absl::MakeConstSpan(fourth).subspan(half)));
  EXPECT_EQ(how_read(c, 1, index), "r");
}

// A PING is not an application frame: try_read_frame() stops at it, and
// read_frame() answers it (the PONG before the next echo) and goes on.
TEST(SbmpEchoTest, TryReadFrameLeavesAPingToReadFrame) {
  SbmpEchoServer s({}, {}, answer_how_read);
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient c(s.port());
  int index = 0;
  ASSERT_TRUE(c.send(concat({frames(0, 2), encode(sbmp::kTypePing, bytes_of("x")), frames(2, 4)})));
  EXPECT_EQ(how_read(c, 5, index), "rtPrt");
}

// try_read_frame() keeps FramedOptions::frames_per_turn: past it, it
// declines, and read_frame() lets the loop's other work go first.
TEST(SbmpEchoTest, TryReadFrameKeepsTheFramesPerTurnBudget) {
  ServerOptions options;
  options.framed.frames_per_turn = 4;
  SbmpEchoServer s(options, {}, answer_how_read);
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient c(s.port());
  int index = 0;
  ASSERT_TRUE(c.send(frames(0, 12)));
  // The first frame of a turn is read_frame()'s; four more fit the turn.
  EXPECT_EQ(how_read(c, 12, index), "rttttrttttrt");
}

// A small frame alone (no input waiting, nothing queued or being sent) is
// sent from its receive buffer too: copying it would coalesce it with
// nothing.
TEST(SbmpEchoTest, ASmallFrameAloneIsSentFromItsReceiveBuffer) {
  SbmpEchoServer s;
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient c(s.port());
  ASSERT_TRUE(c.connected());
  constexpr int kFrames = 8;
  for (int i = 0; i < kFrames; ++i) {  // one at a time
    const std::vector<uint8_t> payload = pattern(64, uint32_t(i));
    c.expect_echo(encode(kType, payload), kType, {}, payload);
  }
  const NetStats st = s.net_stats();
  EXPECT_EQ(st.shared_writes, uint64_t{kFrames}) << st.to_string();
  EXPECT_EQ(st.copied_writes, 0u) << st.to_string();
}

TEST(SbmpEchoTest, FramesWrittenOneByteAtATime) {
  SbmpEchoServer s;
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient c(s.port());
  const std::vector<uint8_t> p1 = pattern(300, 1), p2 = pattern(0, 2), e1 = request_id_ext(1);
  const std::vector<uint8_t> wire = concat({encode(kType, p1, e1, true), encode(kType + 1, p2)});
  ASSERT_TRUE(c.send_bytewise(wire));
  absl::StatusOr<OwnedFrame> f1 = c.read_frame();
  ASSERT_TRUE(f1.ok()) << f1.status();
  EXPECT_EQ(f1->payload, p1);
  EXPECT_EQ(f1->ext, e1);
  absl::StatusOr<OwnedFrame> f2 = c.read_frame();
  ASSERT_TRUE(f2.ok()) << f2.status();
  EXPECT_EQ(f2->type(), kType + 1);
  EXPECT_TRUE(f2->payload.empty());
}

TEST(SbmpEchoTest, ManyConnectionsAtOnce) {
  SbmpEchoServer s;
  ASSERT_TRUE(s.status.ok()) << s.status;
  std::vector<std::unique_ptr<RawClient>> clients;
  for (int i = 0; i < 100; ++i) clients.push_back(std::make_unique<RawClient>(s.port()));
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(clients[i]->send(encode(kType, pattern(200, i), request_id_ext(i))));
  }
  for (int i = 0; i < 100; ++i) {
    absl::StatusOr<OwnedFrame> f = clients[i]->read_frame();
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->payload, pattern(200, i));
    EXPECT_EQ(f->extensions().request_id(), uint64_t(i));
  }
  EXPECT_EQ(s.server.stats().accepted, 100u);
}

TEST(SbmpEchoTest, PingIsAnsweredWithPongCarryingPayloadAndRequestId) {
  SbmpEchoServer s;
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient c(s.port());
  const std::vector<uint8_t> hi = bytes_of("are you there?"), id = request_id_ext(77);
  ASSERT_TRUE(c.send(encode(sbmp::kTypePing, hi, id)));
  absl::StatusOr<OwnedFrame> pong = c.read_frame();
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(pong->type(), sbmp::kTypePong);
  EXPECT_EQ(pong->payload, hi);
  EXPECT_EQ(pong->ext, id);  // the REQUEST_ID and nothing else

  // Without extensions (and empty); then application frames still echo.
  ASSERT_TRUE(c.send(encode(sbmp::kTypePing, {})));
  pong = c.read_frame();
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(pong->type(), sbmp::kTypePong);
  EXPECT_TRUE(pong->ext.empty());
  EXPECT_TRUE(pong->payload.empty());
  c.expect_echo(encode(kType, hi), kType, {}, hi);

  // A PING between two frames: both echoes and the PONG come back.
  ASSERT_TRUE(c.send(
      concat({encode(kType, hi), encode(sbmp::kTypePing, bytes_of("x"), id), encode(kType, id)})));
  int echoes = 0, pongs = 0;
  for (int i = 0; i < 3; ++i) {
    absl::StatusOr<OwnedFrame> f = c.read_frame();
    ASSERT_TRUE(f.ok()) << f.status();
    (f->type() == sbmp::kTypePong ? pongs : echoes)++;
  }
  EXPECT_EQ(echoes, 2);
  EXPECT_EQ(pongs, 1);
}

TEST(SbmpEchoTest, HelloNegotiatesCrc32cAndServerFramesThenCarryChk) {
  SbmpEchoServer s({}, {.max_frame = 1 << 20});
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient c(s.port());
  ASSERT_TRUE(c.send(encode(sbmp::kTypeHello, hello_payload(0x10, 0x1F, sbmp::kFeatureCrc32c))));
  absl::StatusOr<OwnedFrame> ack = c.read_frame();
  ASSERT_TRUE(ack.ok()) << ack.status();
  ASSERT_EQ(ack->type(), sbmp::kTypeHelloAck);
  absl::StatusOr<sbmp::HelloAck> a = sbmp::parse_hello_ack(ack->view());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->version, sbmp::kVersion13);
  EXPECT_EQ(a->features, sbmp::kFeatureCrc32c);
  EXPECT_EQ(a->max_frame, 1u << 20);

  // Echoes now carry a CRC-32C trailer (the client's decoder checks it),
  // whether or not the request had one; PONGs too.
  const std::vector<uint8_t> payload = pattern(5000, 9), ext = request_id_ext(5);
  for (bool chk : {false, true}) {
    ASSERT_TRUE(c.send(encode(kType, payload, ext, chk)));
    absl::StatusOr<OwnedFrame> f = c.read_frame();
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_TRUE(f->header.chk());
    EXPECT_EQ(f->payload, payload);
    EXPECT_EQ(f->ext, ext);
  }
  ASSERT_TRUE(c.send(encode(sbmp::kTypePing, bytes_of("p"))));
  absl::StatusOr<OwnedFrame> pong = c.read_frame();
  ASSERT_TRUE(pong.ok()) << pong.status();
  EXPECT_EQ(pong->type(), sbmp::kTypePong);
  EXPECT_TRUE(pong->header.chk());
}

TEST(SbmpEchoTest, HelloWithoutFeaturesKeepsFramesPlain) {
  SbmpEchoServer s;
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient c(s.port());
  ASSERT_TRUE(c.send(encode(sbmp::kTypeHello, hello_payload(0x13, 0x13, 0))));
  absl::StatusOr<OwnedFrame> ack = c.read_frame();
  ASSERT_TRUE(ack.ok()) << ack.status();
  absl::StatusOr<sbmp::HelloAck> a = sbmp::parse_hello_ack(ack->view());
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->features, 0u);
  ASSERT_TRUE(c.send(encode(kType, bytes_of("plain"))));
  absl::StatusOr<OwnedFrame> f = c.read_frame();
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_FALSE(f->header.chk());
}

TEST(SbmpEchoTest, IdlePeerGetsGoawayIdleTimeoutWhileABusyOneStays) {
  SbmpEchoServer s({.idle_timeout = 200ms});
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient idle(s.port()), busy(s.port());
  const auto start = std::chrono::steady_clock::now();
  // The busy peer sends every 50 ms for 700 ms: never idle.
  while (std::chrono::steady_clock::now() - start < 700ms) {
    busy.expect_echo(encode(kType, bytes_of("tick")), kType, {}, bytes_of("tick"));
    std::this_thread::sleep_for(50ms);
  }
  idle.expect_goaway_and_close(sbmp::ErrorCode::kIdleTimeout);
  busy.expect_echo(encode(kType, bytes_of("still here")), kType, {}, bytes_of("still here"));
  EXPECT_EQ(s.server.stats().idle_closed, 1u);
}

TEST(SbmpEchoTest, ConnectionOverTheLimitGetsGoawayOverloaded) {
  SbmpEchoServer s({.max_connections = 2});
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient a(s.port()), b(s.port());
  a.expect_echo(encode(kType, bytes_of("a")), kType, {}, bytes_of("a"));
  b.expect_echo(encode(kType, bytes_of("b")), kType, {}, bytes_of("b"));
  RawClient over(s.port());
  over.expect_goaway_and_close(sbmp::ErrorCode::kOverloaded);
  a.expect_echo(encode(kType, bytes_of("a2")), kType, {}, bytes_of("a2"));
  EXPECT_EQ(s.server.stats().rejected, 1u);
}

TEST(SbmpEchoTest, TimeoutsAreOnByDefault) {
  const ServerOptions defaults;
  EXPECT_EQ(defaults.idle_timeout, 60s);
  EXPECT_EQ(defaults.frame_timeout, 30s);
  EXPECT_EQ(defaults.net.max_partial_frame_bytes, size_t{64} << 20);
}

TEST(SbmpEchoTest, TricklingPeerIsClosedByTheFrameTimeoutThoughNeverIdle) {
  // Idle timeout far longer than the frame timeout: each byte counts as
  // activity, but the frame it belongs to never completes in time.
  SbmpEchoServer s({.idle_timeout = 400ms, .frame_timeout = 600ms});
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient trickler(s.port()), busy(s.port());
  const std::vector<uint8_t> frame = encode(kType, bytes_of("a frame sent one byte at a time"));
  const auto start = std::chrono::steady_clock::now();
  size_t sent = 0;
  bool refused = false;
  while (std::chrono::steady_clock::now() - start < 3s && sent < frame.size()) {
    if (::send(trickler.fd(), frame.data() + sent, 1, MSG_NOSIGNAL) != 1) {
      refused = true;  // the server closed it
      break;
    }
    ++sent;
    busy.expect_echo(encode(kType, bytes_of("tick")), kType, {}, bytes_of("tick"));
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_LT(sent, frame.size()) << "the trickled frame completed before any timeout";
  (void)refused;
  trickler.expect_goaway_and_close(sbmp::ErrorCode::kIdleTimeout);
  EXPECT_EQ(s.server.stats().frame_timeouts, 1u);
  EXPECT_EQ(s.server.stats().idle_closed, 0u);
  busy.expect_echo(encode(kType, bytes_of("still here")), kType, {}, bytes_of("still here"));
}

// The rest of a large frame is received in place (FramedOptions::
// receive_in_place): a peer that stops in the middle of one is still timed
// out, and one that resets there is dropped, while a well-behaved peer's
// large frames keep coming back intact.
TEST(SbmpEchoTest, PeersStallingOrResettingInTheMiddleOfALargeFrame) {
  SbmpEchoServer s(
      {.framed = {.receive_in_place = true}, .idle_timeout = 400ms, .frame_timeout = 600ms});
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient staller(s.port()), resetter(s.port()), busy(s.port());
  const std::vector<uint8_t> big = encode(kType, pattern(200000, 7));
  const auto head = absl::MakeConstSpan(big).first(40000);  // over half a receive buffer
  ASSERT_TRUE(staller.send(head));
  ASSERT_TRUE(resetter.send(head));
  const std::vector<uint8_t> large = pattern(100000, 9);
  busy.expect_echo(encode(kType, large), kType, {}, large);
  const linger reset_now{.l_onoff = 1, .l_linger = 0};
  ASSERT_EQ(::setsockopt(resetter.fd(), SOL_SOCKET, SO_LINGER, &reset_now, sizeof reset_now), 0);
  resetter.close();  // RST, with the rest of the frame awaited in place
  busy.expect_echo(encode(kType, large), kType, {}, large);
  // The busy peer stays active while the staller's time runs out.
  const auto start = std::chrono::steady_clock::now();
  while (s.server.stats().idle_closed + s.server.stats().frame_timeouts == 0 &&
         std::chrono::steady_clock::now() - start < 3s) {
    busy.expect_echo(encode(kType, bytes_of("tick")), kType, {}, bytes_of("tick"));
    std::this_thread::sleep_for(100ms);
  }
  staller.expect_goaway_and_close(sbmp::ErrorCode::kIdleTimeout);
  EXPECT_EQ(s.server.stats().idle_closed + s.server.stats().frame_timeouts, 1u);
  busy.expect_echo(encode(kType, large), kType, {}, large);
}

TEST(SbmpEchoTest, PartialFramesOverTheMemoryBudgetAreRefusedWithOverloaded) {
  // 3 MiB per thread for partial frames; two peers each park 1.5 MiB of a
  // 2 MiB frame: the second one would take the thread over budget.
  ServerOptions options;
  options.net.max_partial_frame_bytes = 3 << 20;
  SbmpEchoServer s(options, {.max_frame = 8 << 20});
  ASSERT_TRUE(s.status.ok()) << s.status;
  const std::vector<uint8_t> big = encode(kType, std::vector<uint8_t>(2 << 20, 0x5a));
  const auto part = absl::MakeConstSpan(big).first(1536 * 1024);
  RawClient first(s.port()), second(s.port()), victim(s.port());
  ASSERT_TRUE(first.send(part));
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(second.send(part));
  second.expect_goaway_and_close(sbmp::ErrorCode::kOverloaded);
  // The first peer's frame still completes and is echoed; so are others'.
  victim.expect_echo(encode(kType, bytes_of("small")), kType, {}, bytes_of("small"));
  ASSERT_TRUE(first.send(absl::MakeConstSpan(big).subspan(part.size())));
  absl::StatusOr<OwnedFrame> echoed = first.read_frame();
  ASSERT_TRUE(echoed.ok()) << echoed.status();
  EXPECT_EQ(echoed->type(), kType);
  EXPECT_EQ(echoed->payload.size(), size_t{2} << 20);
}

// A whole frame the handler still holds - its echo stuck behind a peer
// that does not read - keeps its share of the budget: peers that each send
// one large frame and never read cannot pile frames up past it.
TEST(SbmpEchoTest, AFrameHeldForAnEchoNobodyReadsStaysInTheBudget) {
  ServerOptions options;
  options.net.max_partial_frame_bytes = 3 << 20;
  SbmpEchoServer s(options, {.max_frame = 8 << 20});
  ASSERT_TRUE(s.status.ok()) << s.status;
  const std::vector<uint8_t> big = encode(kType, std::vector<uint8_t>(2 << 20, 0x5a));
  RawClient holder(s.port()), second(s.port()), victim(s.port());
  const int small = 4096;  // the echo cannot leave: the holder reads nothing
  ASSERT_EQ(::setsockopt(holder.fd(), SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  ASSERT_TRUE(holder.send(big));
  std::this_thread::sleep_for(200ms);
  ASSERT_TRUE(second.send(absl::MakeConstSpan(big).first(1536 * 1024)));
  second.expect_goaway_and_close(sbmp::ErrorCode::kOverloaded);
  victim.expect_echo(encode(kType, bytes_of("small")), kType, {}, bytes_of("small"));
  const NetStats stats = s.net_stats();
  EXPECT_EQ(stats.partial_frame_refusals, 1u) << stats.to_string();
  EXPECT_GE(stats.partial_frame_peak, uint64_t{2} << 20) << stats.to_string();
  EXPECT_LE(stats.partial_frame_peak, uint64_t{3} << 20) << stats.to_string();
}

// Sends `frames` frames of `size` bytes each as fast as the socket takes
// them (pipelined, on a thread) and checks every echo.
void echo_pipelined(RawClient& c, int frames, size_t size) {
  std::vector<std::vector<uint8_t>> payloads;
  std::vector<uint8_t> wire;
  for (int i = 0; i < frames; ++i) {
    payloads.push_back(pattern(size, uint32_t(i + 1)));
    wire = concat({wire, encode(0x0100, payloads.back())});
  }
  std::thread sender([&] { c.send(wire); });
  for (int i = 0; i < frames; ++i) {
    absl::StatusOr<OwnedFrame> f = c.read_frame();
    if (!f.ok()) {
      ADD_FAILURE() << "frame " << i << ": " << f.status();
      ::shutdown(c.fd(), SHUT_RDWR);  // (the sender may wait for room that never comes)
      break;
    }
    EXPECT_EQ(f->payload, payloads[i]) << "frame " << i;
  }
  sender.join();
}

// Pipelined frames larger than a receive buffer are received in place, one
// recv per frame; while the socket holds the next one, a frame's answer
// waits a turn for the next frame's (StreamState::worth_waiting_a_turn),
// and again, so that several leave in one send. Every echo is checked.
// That the socket holds the next frame depends on the sending thread
// staying ahead of the server, which a busy machine can stall (the full
// suite at -j2 on two cores once saw too many sends): up to three tries, on
// a fresh server each. Without the waiting every try sends about once per
// frame (44 sends for the 48); waiting one turn only, in pairs (about 24).
TEST(SbmpEchoTest, AnswersToPipelinedLargeFramesLeaveTogether) {
  constexpr int kFrames = 48;
  constexpr uint64_t kMinTaken = kFrames / 2;
  constexpr uint64_t kMaxSends = kFrames / 4;
  NetStats stats;
  for (int attempt = 0; attempt < 3; ++attempt) {
    SbmpEchoServer s;
    ASSERT_TRUE(s.status.ok()) << s.status;
    RawClient c(s.port());
    ASSERT_TRUE(c.connected());
    echo_pipelined(c, kFrames, 64 * 1024);
    stats = s.net_stats();
    if (stats.taken_writes >= kMinTaken && stats.sends <= kMaxSends) break;
  }
  EXPECT_GE(stats.taken_writes, kMinTaken) << stats.to_string();
  EXPECT_LE(stats.sends, kMaxSends) << stats.to_string();
}

// echo_pipelined(), then a small frame, whose echo must come at once.
void pipeline_large_then_small(RawClient& c, int frames, size_t size) {
  echo_pipelined(c, frames, size);
  // Read at once: the socket's low-water mark is back at one byte.
  ASSERT_TRUE(c.send(encode(kType, pattern(100, 7))));
  absl::StatusOr<OwnedFrame> small = c.read_frame();
  ASSERT_TRUE(small.ok()) << small.status();
  EXPECT_EQ(small->payload, pattern(100, 7));
}

// A peer that pipelines frames received in place has its socket's receive
// buffer grown once (FramedOptions::pipelined_receive_buffer), and a small
// frame after them is still answered at once.
TEST(SbmpEchoTest, PipelinedLargeFramesGrowTheReceiveBufferOnce) {
  SbmpEchoServer s;
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient c(s.port());
  ASSERT_TRUE(c.connected());
  pipeline_large_then_small(c, 32, 64 * 1024);
  const NetStats stats = s.net_stats();
  EXPECT_EQ(stats.receive_buffers_reserved, 1u) << stats.to_string();
}

// Large frames sent one at a time (each after the last one's echo) leave
// the receive buffer to the kernel, as does the option at 0.
TEST(SbmpEchoTest, LargeFramesOneAtATimeOrTheOptionOffLeaveTheReceiveBuffer) {
  {
    SbmpEchoServer s;
    ASSERT_TRUE(s.status.ok()) << s.status;
    RawClient c(s.port());
    ASSERT_TRUE(c.connected());
    for (int i = 0; i < 8; ++i) {
      const std::vector<uint8_t> payload = pattern(256 * 1024, uint32_t(i + 1));
      std::thread sender([&] { c.send(encode(0x0100, payload)); });
      absl::StatusOr<OwnedFrame> f = c.read_frame();
      sender.join();
      ASSERT_TRUE(f.ok()) << "frame " << i << ": " << f.status();
      EXPECT_EQ(f->payload, payload) << "frame " << i;
    }
    const NetStats stats = s.net_stats();
    EXPECT_EQ(stats.receive_buffers_reserved, 0u) << stats.to_string();
  }
  ServerOptions off;
  off.framed.pipelined_receive_buffer = 0;
  SbmpEchoServer s(off);
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient c(s.port());
  ASSERT_TRUE(c.connected());
  pipeline_large_then_small(c, 32, 64 * 1024);
  const NetStats stats = s.net_stats();
  EXPECT_EQ(stats.receive_buffers_reserved, 0u) << stats.to_string();
}

}  // namespace
}  // namespace coring::net::sbmp_testing
