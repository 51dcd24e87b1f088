// The per-connection Codec, driven exactly as net/ will drive it: through the
// operations of coring::net::FrameCodec, a client and a server against each
// other.
#include "coring/codec/codec.h"

#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "coring/net/frame_codec.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "toy_v2.h"

// Counts this thread's heap allocations, for the no-allocation test. The
// replacement new/delete pair over malloc/free is well-defined; GCC cannot
// see that the pair matches.
namespace {
thread_local uint64_t g_allocations = 0;
}
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(size_t n) {
  ++g_allocations;
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t) noexcept { std::free(p); }

namespace coring::sbmp {
namespace {

static_assert(coring::net::FrameCodec<Codec>);

struct Received {
  uint16_t type = 0;
  std::string payload;
  std::optional<uint64_t> request_id;
  bool chk = false;
  uint8_t version = 0;
};

struct Delivery {
  std::vector<Received> frames;
  absl::Status status;  // the first error, if decoding stopped
};

std::vector<uint8_t> take_output(Codec& from) {
  auto out = from.pending_output();
  std::vector<uint8_t> bytes(out.begin(), out.end());
  from.consume_output(out.size());
  return bytes;
}

void append(std::vector<uint8_t>& wire, const Codec::Encoded& encoded) {
  for (auto part : encoded.parts()) wire.insert(wire.end(), part.begin(), part.end());
}

// Decodes all of `wire` in `to`, as a transport would after a read.
Delivery feed(Codec& to, const std::vector<uint8_t>& wire) {
  Delivery d;
  absl::Span<const uint8_t> input(wire);
  for (;;) {
    auto next = to.decode(input);
    if (!next.ok()) {
      d.status = next.status();
      break;
    }
    if (!next->has_value()) break;
    const Frame& f = **next;
    d.frames.push_back({f.type(), std::string(f.payload.begin(), f.payload.end()),
                        f.extensions.request_id(), f.chk(), f.version()});
  }
  return d;
}

// Everything `from` queued goes to `to`.
Delivery pump(Codec& from, Codec& to) { return feed(to, take_output(from)); }

std::vector<uint8_t> encode_app(Codec& c, uint16_t type, const std::string& payload,
                                Extensions ext = {}) {
  Codec::Encoded e;
  absl::Status st = c.encode(make_frame(type, testing::as_bytes(payload), ext), e);
  EXPECT_TRUE(st.ok()) << st;
  std::vector<uint8_t> wire;
  append(wire, e);
  return wire;
}

// A raw frame (any type) as a peer would send it.
std::vector<uint8_t> raw_frame(uint16_t type, absl::Span<const uint8_t> payload,
                               Extensions ext = {}, EncodeOptions options = {}) {
  std::vector<uint8_t> out(kHeaderSize + ext.bytes().size() + payload.size() + kTrailerSize);
  out.resize(*encode_frame(make_frame(type, payload, ext), options, absl::MakeSpan(out)));
  return out;
}

// The frames in raw bytes, decoded without any codec logic.
std::vector<Received> parse_raw(const std::vector<uint8_t>& wire) {
  Decoder d;
  std::vector<Received> out;
  absl::Span<const uint8_t> in(wire);
  for (;;) {
    auto n = d.next(in);
    EXPECT_TRUE(n.ok()) << n.status();
    if (!n.ok() || !n->has_value()) break;
    const Frame& f = **n;
    Received r{f.type(), std::string(f.payload.begin(), f.payload.end()), f.extensions.request_id(),
               f.chk(), f.version()};
    out.push_back(r);
  }
  EXPECT_FALSE(d.mid_frame());
  return out;
}

std::optional<uint32_t> goaway_code(const std::vector<uint8_t>& wire,
                                    std::string* reason = nullptr) {
  Decoder d;
  absl::Span<const uint8_t> in(wire);
  std::optional<uint32_t> code;
  for (;;) {
    auto n = d.next(in);
    if (!n.ok() || !n->has_value()) break;
    if ((*n)->type() == kTypeGoaway) {
      auto g = parse_goaway(**n);
      if (g.ok()) {
        code = g->code;
        if (reason) *reason = std::string(g->reason);
      }
    }
  }
  return code;
}

void handshake(Codec& client, Codec& server) {
  Delivery at_server = pump(client, server);
  ASSERT_TRUE(at_server.status.ok()) << at_server.status;
  EXPECT_TRUE(at_server.frames.empty());
  Delivery at_client = pump(server, client);
  ASSERT_TRUE(at_client.status.ok()) << at_client.status;
  ASSERT_TRUE(client.established());
  ASSERT_TRUE(server.established());
}

TEST(CodecTest, HelloAndHelloAck) {
  Codec client({.role = Role::kClient, .max_frame = 1 << 20, .agent = "test-client"});
  Codec server({.max_frame = 1 << 16});
  std::vector<uint8_t> hello = take_output(client);
  auto frames = parse_raw(hello);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].type, kTypeHello);
  EXPECT_EQ(frames[0].version, 0x13);
  EXPECT_FALSE(frames[0].chk);
  EXPECT_FALSE(client.established());

  Delivery d = feed(server, hello);
  ASSERT_TRUE(d.status.ok());
  EXPECT_TRUE(d.frames.empty());  // control frames never reach the application
  std::vector<uint8_t> ack = take_output(server);
  frames = parse_raw(ack);
  ASSERT_EQ(frames.size(), 1u);
  EXPECT_EQ(frames[0].type, kTypeHelloAck);
  EXPECT_FALSE(frames[0].chk);  // CHK starts after the HELLO_ACK
  EXPECT_EQ(server.settings(), (Settings{0x13, 1 << 20, kFeatureCrc32c}));

  ASSERT_TRUE(feed(client, ack).status.ok());
  EXPECT_TRUE(client.established());
  EXPECT_EQ(client.settings(), (Settings{0x13, 1 << 16, kFeatureCrc32c}));
}

TEST(CodecTest, ChkOnEveryFrameAfterCrc32cNegotiated) {
  Codec client({.role = Role::kClient});
  Codec server;
  handshake(client, server);
  Delivery d = feed(server, encode_app(client, 0x100, "hello"));
  ASSERT_TRUE(d.status.ok());
  ASSERT_EQ(d.frames.size(), 1u);
  EXPECT_TRUE(d.frames[0].chk);
  EXPECT_EQ(d.frames[0].payload, "hello");
  d = feed(client, encode_app(server, 0x101, "world"));
  ASSERT_EQ(d.frames.size(), 1u);
  EXPECT_TRUE(d.frames[0].chk);
  // PONGs too.
  ASSERT_TRUE(client.ping({}).ok());
  ASSERT_TRUE(pump(client, server).status.ok());
  auto pong = parse_raw(take_output(server));
  ASSERT_EQ(pong.size(), 1u);
  EXPECT_TRUE(pong[0].chk);
}

TEST(CodecTest, NoChkWithoutTheFeature) {
  Codec client({.role = Role::kClient, .features = 0});
  Codec server;
  handshake(client, server);
  EXPECT_FALSE(parse_raw(encode_app(client, 0x100, "x"))[0].chk);
  EXPECT_FALSE(parse_raw(encode_app(server, 0x100, "x"))[0].chk);
  // CHK frames are still accepted and verified.
  std::string p = "checked";
  Delivery d = feed(server, raw_frame(0x100, testing::as_bytes(p), {}, {.chk = true}));
  ASSERT_EQ(d.frames.size(), 1u);
  EXPECT_TRUE(d.frames[0].chk);
}

TEST(CodecTest, ClientWithoutHelloUsesDefaults) {
  Codec client({.role = Role::kClient, .send_hello = false});
  Codec server;
  EXPECT_TRUE(client.pending_output().empty());
  EXPECT_TRUE(client.established());
  Delivery d = feed(server, encode_app(client, 0x100, "plain"));
  ASSERT_EQ(d.frames.size(), 1u);
  EXPECT_FALSE(d.frames[0].chk);
  EXPECT_EQ(server.settings(), Settings{});
  EXPECT_TRUE(server.pending_output().empty());
  // A HELLO now is misplaced.
  d = pump(client, server);  // nothing
  std::vector<uint8_t> hello_payload(12, 0);
  hello_payload[0] = hello_payload[1] = 0x13;
  d = feed(server, raw_frame(kTypeHello, hello_payload));
  auto e = frame_error(d.status);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->code, ErrorCode::kProtocolError);
  EXPECT_EQ(e->field, ErrorField::kType);
  EXPECT_EQ(goaway_code(take_output(server)), 1u);
}

TEST(CodecTest, PingPongCopiesPayloadAndRequestIdOnly) {
  Codec client({.role = Role::kClient});
  Codec server;
  handshake(client, server);
  // A PING with REQUEST_ID and TIMEOUT_US: the PONG keeps the id only.
  ExtensionBuilder ext;
  ext.set_timeout_us(100);
  ext.set_request_id(0xABCDEF);
  std::string payload = "are you there";
  Delivery d =
      feed(server, raw_frame(kTypePing, testing::as_bytes(payload), ext.view(), {.chk = true}));
  ASSERT_TRUE(d.status.ok());
  EXPECT_TRUE(d.frames.empty());
  std::vector<uint8_t> pong = take_output(server);
  {
    Decoder raw;
    absl::Span<const uint8_t> in(pong);
    auto f = raw.next(in);
    ASSERT_TRUE(f.ok() && f->has_value());
    EXPECT_EQ((*f)->type(), kTypePong);
    EXPECT_EQ(std::string((*f)->payload.begin(), (*f)->payload.end()), payload);
    EXPECT_EQ((*f)->extensions.request_id(), 0xABCDEFu);
    EXPECT_EQ((*f)->extensions.bytes().size(), 10u);  // nothing but REQUEST_ID
  }
  // Without REQUEST_ID the PONG has no extensions at all.
  feed(server, raw_frame(kTypePing, {}));
  auto plain = parse_raw(take_output(server));
  ASSERT_EQ(plain.size(), 1u);
  EXPECT_EQ(plain[0].request_id, std::nullopt);
  // The client's own ping() round trip; PONGs are counted, never delivered.
  ASSERT_TRUE(client.ping(testing::as_bytes(payload), 5).ok());
  ASSERT_TRUE(pump(client, server).status.ok());
  d = pump(server, client);
  ASSERT_TRUE(d.status.ok());
  EXPECT_TRUE(d.frames.empty());
  EXPECT_EQ(client.pongs(), 1u);
  // An unsolicited PONG is ignored.
  d = feed(server, raw_frame(kTypePong, {}));
  EXPECT_TRUE(d.status.ok());
  EXPECT_TRUE(server.pending_output().empty());
}

// decode() returns the frame it decodes where the caller wants it; control
// frames in the same input go through a loop of their own
// (decode_after_control()): the application frames around them still come
// out in order, each control frame is answered, and an error right after
// one still ends decoding with its GOAWAY.
TEST(CodecTest, ControlFramesAmongApplicationFramesInOneInput) {
  Codec client({.role = Role::kClient});
  Codec server;
  handshake(client, server);
  const auto ping = [] { return raw_frame(kTypePing, {}, {}, {.chk = true}); };
  const auto add = [](std::vector<uint8_t>& wire, const std::vector<uint8_t>& bytes) {
    wire.insert(wire.end(), bytes.begin(), bytes.end());
  };
  std::vector<uint8_t> wire = ping();
  add(wire, encode_app(client, 0x100, "one"));
  add(wire, ping());
  add(wire, ping());
  add(wire, encode_app(client, 0x101, "two"));
  add(wire, ping());
  Delivery d = feed(server, wire);
  ASSERT_TRUE(d.status.ok()) << d.status;
  ASSERT_EQ(d.frames.size(), 2u);
  EXPECT_EQ(d.frames[0].type, 0x100);
  EXPECT_EQ(d.frames[0].payload, "one");
  EXPECT_EQ(d.frames[1].type, 0x101);
  EXPECT_EQ(d.frames[1].payload, "two");
  const std::vector<Received> pongs = parse_raw(take_output(server));
  ASSERT_EQ(pongs.size(), 4u);
  for (const Received& r : pongs) EXPECT_EQ(r.type, kTypePong);

  wire = ping();
  add(wire, std::vector<uint8_t>(kHeaderSize, 'X'));
  d = feed(server, wire);
  EXPECT_TRUE(d.frames.empty());
  auto e = frame_error(d.status);
  ASSERT_TRUE(e.has_value()) << d.status;
  EXPECT_EQ(e->code, ErrorCode::kBadMagic);
  std::vector<uint8_t> out = take_output(server);
  EXPECT_EQ(parse_raw(out).front().type, kTypePong);
  EXPECT_TRUE(goaway_code(out).has_value());
  // Decoding stays ended.
  d = feed(server, encode_app(client, 0x100, "late"));
  EXPECT_TRUE(d.frames.empty());
  EXPECT_FALSE(d.status.ok());
}

TEST(CodecTest, OversizePingIsProtocolError) {
  Codec server;
  std::vector<uint8_t> big(65, 'p');
  Delivery d = feed(server, raw_frame(kTypePing, big));
  auto e = frame_error(d.status);
  ASSERT_TRUE(e.has_value());
  EXPECT_EQ(e->field, ErrorField::kPayload);
  EXPECT_EQ(goaway_code(take_output(server)), 1u);
}

TEST(CodecTest, GoawayFromPeer) {
  Codec client({.role = Role::kClient});
  Codec server;
  handshake(client, server);
  // Frames the server sent before its GOAWAY are delivered; the GOAWAY ends
  // decoding; what follows it is ignored.
  std::vector<uint8_t> wire = encode_app(server, 0x100, "before");
  server.close(absl::UnavailableError("maintenance"));
  EXPECT_TRUE(server.goaway_sent());
  Codec::Encoded refused;
  EXPECT_EQ(server.encode(make_frame(0x100, {}), refused).code(),
            absl::StatusCode::kFailedPrecondition);
  std::vector<uint8_t> goaway = take_output(server);
  std::string reason;
  EXPECT_EQ(goaway_code(goaway, &reason), static_cast<uint32_t>(ErrorCode::kShutdown));
  EXPECT_EQ(reason, "maintenance");
  wire.insert(wire.end(), goaway.begin(), goaway.end());
  std::string after = "after";
  auto late = raw_frame(0x100, testing::as_bytes(after), {}, {.chk = true});
  wire.insert(wire.end(), late.begin(), late.end());

  Delivery d = feed(client, wire);
  ASSERT_EQ(d.frames.size(), 1u);
  EXPECT_EQ(d.frames[0].payload, "before");
  EXPECT_EQ(d.status.code(), absl::StatusCode::kUnavailable);
  auto e = frame_error(d.status);
  ASSERT_TRUE(e.has_value());
  EXPECT_TRUE(e->remote);
  EXPECT_EQ(e->code, ErrorCode::kShutdown);
  EXPECT_TRUE(client.goaway_received());
  // No GOAWAY in answer, no new frames, no PONGs.
  EXPECT_TRUE(client.pending_output().empty());
  EXPECT_FALSE(client.encode(make_frame(0x100, {}), refused).ok());
  EXPECT_FALSE(client.ping({}).ok());
  client.close(absl::OkStatus());
  EXPECT_TRUE(client.pending_output().empty());
  absl::Span<const uint8_t> nothing;
  EXPECT_EQ(client.decode(nothing).status(), d.status);
}

TEST(CodecTest, CloseMapsReasons) {
  struct Case {
    absl::Status why;
    ErrorCode code;
  } cases[] = {{absl::OkStatus(), ErrorCode::kNoError},
               {absl::UnavailableError("x"), ErrorCode::kShutdown},
               {absl::ResourceExhaustedError("x"), ErrorCode::kOverloaded},
               {absl::DeadlineExceededError("x"), ErrorCode::kIdleTimeout}};
  for (const Case& c : cases) {
    Codec server;
    server.close(c.why);
    server.close(c.why);  // once only
    auto frames = parse_raw(take_output(server));
    ASSERT_EQ(frames.size(), 1u);
    EXPECT_EQ(goaway_code(raw_frame(kTypeGoaway, testing::as_bytes(frames[0].payload))),
              static_cast<uint32_t>(c.code));
  }
}

TEST(CodecTest, ProtocolErrorsQueueGoawayWithTheirCode) {
  struct Case {
    std::vector<uint8_t> wire;
    ErrorCode code;
    ErrorField field;
  };
  std::vector<uint8_t> bad_magic(16, 'X');
  std::vector<uint8_t> bad_goaway = raw_frame(kTypeGoaway, std::vector<uint8_t>{1, 2});
  std::vector<uint8_t> bad_chk = raw_frame(0x100, std::vector<uint8_t>{1, 2}, {}, {.chk = true});
  bad_chk.back() ^= 1;
  std::vector<uint8_t> v2 = raw_frame(0x100, {}, {}, {.version = 0x21});
  std::vector<Case> cases = {
      {raw_frame(0x0006, {}), ErrorCode::kProtocolError, ErrorField::kType},
      {raw_frame(0x0000, {}), ErrorCode::kProtocolError, ErrorField::kType},
      {raw_frame(0x00FF, {}), ErrorCode::kProtocolError, ErrorField::kType},
      {raw_frame(kTypeHelloAck, std::vector<uint8_t>(12)), ErrorCode::kProtocolError,
       ErrorField::kType},
      {bad_goaway, ErrorCode::kProtocolError, ErrorField::kPayload},
      {bad_magic, ErrorCode::kBadMagic, ErrorField::kMagic},
      {bad_chk, ErrorCode::kPayloadChecksum, ErrorField::kTrailer},
      {v2, ErrorCode::kUnsupportedVersion, ErrorField::kVersion},
  };
  for (const Case& c : cases) {
    Codec server;
    Delivery d = feed(server, c.wire);
    auto e = frame_error(d.status);
    ASSERT_TRUE(e.has_value()) << d.status;
    EXPECT_EQ(e->code, c.code);
    EXPECT_EQ(e->field, c.field);
    EXPECT_FALSE(e->remote);
    EXPECT_EQ(d.status.code(), absl::StatusCode::kDataLoss);
    EXPECT_EQ(goaway_code(take_output(server)), static_cast<uint32_t>(c.code));
    // Final: no more decoding, encoding or output.
    absl::Span<const uint8_t> more(c.wire);
    EXPECT_EQ(server.decode(more).status(), d.status);
    Codec::Encoded e2;
    EXPECT_FALSE(server.encode(make_frame(0x100, {}), e2).ok());
    EXPECT_TRUE(server.pending_output().empty());
  }
}

// Once established, the codec has dropped its negotiation state (it keeps
// only the settings): HELLO and HELLO_ACK are still refused, by role, and
// the settings still hold.
TEST(CodecTest, HandshakeFramesAfterTheHandshakeAreProtocolErrors) {
  std::vector<uint8_t> hello_payload(12, 0);
  hello_payload[0] = hello_payload[1] = 0x13;
  const std::vector<uint8_t> hello = raw_frame(kTypeHello, hello_payload, {}, {.chk = true});
  const std::vector<uint8_t> ack = raw_frame(kTypeHelloAck, hello_payload, {}, {.chk = true});
  for (bool to_server : {true, false}) {
    for (const std::vector<uint8_t>* wire : {&hello, &ack}) {
      SCOPED_TRACE(absl::StrFormat("to %s: %s", to_server ? "server" : "client",
                                   wire == &hello ? "HELLO" : "HELLO_ACK"));
      Codec client({.role = Role::kClient});
      Codec server;
      handshake(client, server);
      Codec& to = to_server ? server : client;
      const Settings settings = to.settings();
      Delivery d = feed(to, encode_app(to_server ? client : server, 0x100, "before"));
      ASSERT_TRUE(d.status.ok()) << d.status;
      ASSERT_EQ(d.frames.size(), 1u);
      d = feed(to, *wire);
      auto e = frame_error(d.status);
      ASSERT_TRUE(e.has_value()) << d.status;
      EXPECT_EQ(e->code, ErrorCode::kProtocolError);
      EXPECT_EQ(e->field, ErrorField::kType);
      EXPECT_EQ(goaway_code(take_output(to)), 1u);
      EXPECT_TRUE(to.established());
      EXPECT_EQ(to.settings(), settings);
    }
  }
  // A client that opened without HELLO refuses both too.
  for (const std::vector<uint8_t>* wire : {&hello, &ack}) {
    Codec client({.role = Role::kClient, .send_hello = false});
    auto e = frame_error(feed(client, *wire).status);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(e->code, ErrorCode::kProtocolError);
  }
}

TEST(CodecTest, NoCommonVersionGetsGoawayWithSupportedList) {
  Codec server;
  std::vector<uint8_t> hello(12, 0);
  hello[0] = 0x20;
  hello[1] = 0x2F;
  Delivery d = feed(server, raw_frame(kTypeHello, hello));
  EXPECT_EQ(frame_error(d.status)->code, ErrorCode::kUnsupportedVersion);
  std::string reason;
  EXPECT_EQ(goaway_code(take_output(server), &reason),
            static_cast<uint32_t>(ErrorCode::kUnsupportedVersion));
  EXPECT_EQ(reason, "supported=1.3");
}

TEST(CodecTest, EncodeRefusedAbovePeersMaxFrame) {
  Codec client({.role = Role::kClient, .max_frame = 1000});
  Codec server;
  handshake(client, server);
  Codec::Encoded e;
  std::string fits(996, 'a'), too_big(997, 'a');  // + 4-byte trailer
  EXPECT_TRUE(server.encode(make_frame(0x100, testing::as_bytes(fits)), e).ok());
  EXPECT_EQ(server.encode(make_frame(0x100, testing::as_bytes(too_big)), e).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(e.parts().empty());
  // And the client's decoder enforces its own limit.
  Delivery d = feed(client, raw_frame(0x100, testing::as_bytes(too_big), {}, {.chk = true}));
  EXPECT_EQ(frame_error(d.status)->code, ErrorCode::kFrameTooLarge);
  // Control types are the codec's own.
  Codec other;
  EXPECT_EQ(other.encode(make_frame(kTypePing, {}), e).code(), absl::StatusCode::kInvalidArgument);
}

TEST(CodecTest, NegotiatesRegisteredSecondMajor) {
  VersionRegistry versions;
  ASSERT_TRUE(versions.add(std::make_unique<testing::ToyV2Decoder>()).ok());
  Codec client({.role = Role::kClient, .versions = &versions});
  Codec server({.versions = &versions});
  // HELLO is framed as 1.3 whatever it offers.
  EXPECT_EQ(client.pending_output()[4], 0x13);
  handshake(client, server);
  EXPECT_EQ(client.settings().version, 0x21);
  std::vector<uint8_t> wire = encode_app(client, 0x100, "v2");
  EXPECT_EQ(wire[4], 0x21);
  Delivery d = feed(server, wire);
  ASSERT_TRUE(d.status.ok()) << d.status;
  ASSERT_EQ(d.frames.size(), 1u);
  EXPECT_EQ(d.frames[0].version, 0x21);
  // The 2.1 decoder checks the body its way: no extension block allowed.
  ExtensionBuilder ext;
  ext.set_request_id(1);
  d = feed(server, raw_frame(0x100, {}, ext.view(), {.version = 0x21, .chk = true}));
  EXPECT_EQ(frame_error(d.status)->code, ErrorCode::kBadExtension);
  // A 1.3 frame after negotiating 2.1 is UNSUPPORTED_VERSION.
  Codec server2({.versions = &versions});
  Codec client2({.role = Role::kClient, .versions = &versions});
  handshake(client2, server2);
  d = feed(server2, raw_frame(0x100, {}));
  EXPECT_EQ(frame_error(d.status)->code, ErrorCode::kUnsupportedVersion);
  EXPECT_EQ(frame_error(d.status)->field, ErrorField::kVersion);
}

TEST(CodecTest, PingFloodWithoutReadingIsOverloaded) {
  Codec server;
  std::vector<uint8_t> wire;
  std::vector<uint8_t> payload(64, 'p');
  for (int i = 0; i < 1000; ++i) {
    auto ping = raw_frame(kTypePing, payload);
    wire.insert(wire.end(), ping.begin(), ping.end());
  }
  Delivery d = feed(server, wire);  // nobody consumes the PONGs
  EXPECT_EQ(frame_error(d.status)->code, ErrorCode::kOverloaded);
  auto out = take_output(server);
  EXPECT_LE(out.size(), Codec::kOutputCapacity);
  EXPECT_EQ(goaway_code(out), static_cast<uint32_t>(ErrorCode::kOverloaded));
}

TEST(CodecTest, PendingOutputDoesNotMoveWhileMoreIsQueued) {
  Codec server;
  feed(server, raw_frame(kTypePing, std::vector<uint8_t>{1}));
  auto first = server.pending_output();
  std::vector<uint8_t> copy(first.begin(), first.end());
  server.consume_output(3);  // partly sent
  feed(server, raw_frame(kTypePing, std::vector<uint8_t>{2}));
  EXPECT_EQ(server.pending_output().data(), first.data() + 3);
  EXPECT_EQ(std::vector<uint8_t>(first.begin(), first.end()), copy);
  server.consume_output(server.pending_output().size());
  EXPECT_TRUE(server.pending_output().empty());
}

TEST(CodecTest, OutputBufferIsHeldOnlyWhileNeeded) {
  Codec client({.role = Role::kClient});
  Codec server;
  EXPECT_EQ(server.output_buffer_bytes(), 0u);  // nothing queued yet
  EXPECT_GT(client.output_buffer_bytes(), 0u);  // its HELLO
  handshake(client, server);
  // The handshake is sent: an idle connection holds no output buffer.
  EXPECT_EQ(client.output_buffer_bytes(), 0u);
  EXPECT_EQ(server.output_buffer_bytes(), 0u);
  // Keep-alives keep it (no allocation per PING) until the codec is trimmed.
  ASSERT_TRUE(client.ping(std::vector<uint8_t>{1, 2}).ok());
  feed(server, take_output(client));
  feed(client, take_output(server));
  EXPECT_EQ(client.pongs(), 1u);
  EXPECT_GT(client.output_buffer_bytes(), 0u);
  EXPECT_GT(server.output_buffer_bytes(), 0u);
  ASSERT_TRUE(client.ping(std::vector<uint8_t>{3}).ok());
  server.trim();
  client.trim();  // a PING is pending: kept
  EXPECT_EQ(server.output_buffer_bytes(), 0u);
  EXPECT_GT(client.output_buffer_bytes(), 0u);
  feed(server, take_output(client));
  client.trim();
  EXPECT_EQ(client.output_buffer_bytes(), 0u);
  // The PONG is still there after the server's trim, and right.
  Delivery back = feed(client, take_output(server));
  EXPECT_TRUE(back.status.ok());
  EXPECT_EQ(client.pongs(), 2u);
}

TEST(CodecTest, SteadyStateAllocatesNothingPerMessage) {
  {  // the counter sees allocations at all
    uint64_t before = g_allocations;
    auto probe = std::make_unique<std::vector<int>>(100, 7);
    ASSERT_GT(g_allocations, before);
    ASSERT_EQ(probe->at(99), 7);
  }
  Codec client({.role = Role::kClient});
  Codec server;
  handshake(client, server);
  std::string payload(300, 'm');
  ExtensionBuilder ext;
  ext.set_request_id(1);
  std::vector<uint8_t> wire;
  wire.reserve(1 << 16);
  Codec::Encoded request, echo;
  std::vector<uint8_t> ping_payload = {1, 2, 3};
  // Warm up (the decoders' reassembly buffers grow once).
  auto round = [&](size_t split) {
    wire.clear();
    if (!client.encode(make_frame(0x100, testing::as_bytes(payload), ext.view()), request).ok())
      return false;
    for (auto part : request.parts()) wire.insert(wire.end(), part.begin(), part.end());
    if (!client.ping(ping_payload, 9).ok()) return false;
    auto out = client.pending_output();
    wire.insert(wire.end(), out.begin(), out.end());
    client.consume_output(out.size());
    // Server: split read, echo each frame.
    size_t echoed = 0;
    for (size_t start = 0; start < wire.size();) {
      size_t n = std::min(split, wire.size() - start);
      absl::Span<const uint8_t> in(wire.data() + start, n);
      start += n;
      for (;;) {
        auto f = server.decode(in);
        if (!f.ok()) return false;
        if (!f->has_value()) break;
        if (!server.encode(**f, echo).ok()) return false;
        ++echoed;
      }
    }
    auto pong = server.pending_output();
    server.consume_output(pong.size());
    return echoed == 1;
  };
  ASSERT_TRUE(round(100));
  ASSERT_TRUE(round(1 << 20));
  uint64_t before = g_allocations;
  for (int i = 0; i < 200; ++i) {
    ASSERT_TRUE(round(i % 2 ? 100 : 1 << 20));
  }
  EXPECT_EQ(g_allocations - before, 0u);
}

}  // namespace
}  // namespace coring::sbmp
