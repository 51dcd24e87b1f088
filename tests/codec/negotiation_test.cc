// Every rule of SBMP.md 3.1 on the two state machines, plus the version
// registry with a toy 2.x decoder.
#include "coring/codec/negotiation.h"

#include <array>
#include <memory>
#include <vector>

#include "coring/codec/error.h"
#include "gtest/gtest.h"
#include "toy_v2.h"

namespace coring::sbmp {
namespace {

struct Built {
  std::vector<uint8_t> payload;
  Frame frame;
};

// A received control frame with a HELLO / HELLO_ACK payload.
std::unique_ptr<Built> hello_frame(const Hello& h, uint64_t offset = 0) {
  auto b = std::make_unique<Built>();
  b->payload.resize(kMaxHelloPayload);
  b->payload.resize(*write_hello(h, absl::MakeSpan(b->payload)));
  b->frame = make_frame(kTypeHello, b->payload);
  b->frame.offset = offset;
  return b;
}

std::unique_ptr<Built> ack_frame(const HelloAck& a, uint64_t offset = 0) {
  auto b = std::make_unique<Built>();
  b->payload.resize(kMaxHelloPayload);
  b->payload.resize(*write_hello_ack(a, absl::MakeSpan(b->payload)));
  b->frame = make_frame(kTypeHelloAck, b->payload);
  b->frame.offset = offset;
  return b;
}

Frame app_frame(uint64_t offset = 0) {
  Frame f = make_frame(0x100, {});
  f.offset = offset;
  return f;
}

FrameError error_of(const absl::Status& st) {
  EXPECT_FALSE(st.ok());
  auto e = frame_error(st);
  EXPECT_TRUE(e.has_value()) << st;
  return e.value_or(FrameError{});
}

TEST(RegistryTest, ChoosesHighestCommonMajor) {
  const VersionRegistry& std13 = VersionRegistry::standard();
  EXPECT_EQ(std13.choose(0x10, 0x1F), 0x13);
  EXPECT_EQ(std13.choose(0x14, 0x1F), 0x13);
  EXPECT_EQ(std13.choose(0x10, 0x12), 0x13);
  EXPECT_EQ(std13.choose(0x20, 0x2F), std::nullopt);
  EXPECT_EQ(std13.choose(0x00, 0x0F), std::nullopt);
  EXPECT_EQ(std13.choose(0x1F, 0x10), std::nullopt);
  EXPECT_EQ(std13.supported_list(), "1.3");

  VersionRegistry both;
  ASSERT_TRUE(both.add(std::make_unique<testing::ToyV2Decoder>()).ok());
  EXPECT_EQ(both.choose(0x10, 0x2F), 0x21);
  EXPECT_EQ(both.choose(0x13, 0x20), 0x21);
  EXPECT_EQ(both.choose(0x10, 0x1F), 0x13);
  EXPECT_EQ(both.choose(0x22, 0x3F), 0x21);
  EXPECT_EQ(both.supported_list(), "1.3,2.1");
  EXPECT_EQ(both.min_version(), 0x13);
  EXPECT_EQ(both.max_version(), 0x21);
  EXPECT_EQ(both.majors(), (1 << 1) | (1 << 2));
  EXPECT_FALSE(both.add(nullptr).ok());
}

TEST(ServerNegotiationTest, HelloGetsAckWithIntersection) {
  ServerNegotiation server({.max_frame = 4096, .features = kFeatureCrc32c, .agent = "srv"});
  auto hello = hello_frame({0x10, 0x1F, 0, kFeatureCrc32c | 0x80000000u, "cli"});
  auto step = server.on_frame(hello->frame);
  ASSERT_TRUE(step.ok()) << step.status();
  ASSERT_TRUE(step->has_value());
  EXPECT_EQ((*step)->version, 0x13);
  EXPECT_EQ((*step)->max_frame, 4096u);
  EXPECT_EQ((*step)->features, kFeatureCrc32c);  // reserved bit dropped
  EXPECT_EQ((*step)->agent, "srv");
  EXPECT_TRUE(server.established());
  EXPECT_EQ(server.settings(), (Settings{0x13, kDefaultMaxFrame, kFeatureCrc32c}));
}

TEST(ServerNegotiationTest, NoFeatureWhenEitherSideLacksIt) {
  ServerNegotiation server({.features = 0});
  auto step = server.on_frame(hello_frame({.features = kFeatureCrc32c, .agent = ""})->frame);
  ASSERT_TRUE(step.ok());
  EXPECT_EQ((*step)->features, 0u);
  EXPECT_FALSE(server.settings().chk());
  ServerNegotiation server2({});
  step = server2.on_frame(hello_frame({.max_frame = 100, .features = 0, .agent = ""})->frame);
  ASSERT_TRUE(step.ok());
  EXPECT_FALSE(server2.settings().chk());
  EXPECT_EQ(server2.settings().peer_max_frame, 100u);
}

TEST(ServerNegotiationTest, NoHelloMeansDefaults) {
  ServerNegotiation server({});
  auto step = server.on_frame(app_frame());
  ASSERT_TRUE(step.ok());
  EXPECT_FALSE(step->has_value());
  EXPECT_TRUE(server.established());
  EXPECT_EQ(server.settings(), Settings{});
  // A PING first also fixes the defaults; a HELLO later is misplaced.
  auto late = server.on_frame(hello_frame({}, 40)->frame);
  EXPECT_EQ(error_of(late.status()),
            (FrameError{ErrorCode::kProtocolError, 40, ErrorField::kType}));
}

TEST(ServerNegotiationTest, SecondHelloIsProtocolError) {
  ServerNegotiation server({});
  ASSERT_TRUE(server.on_frame(hello_frame({})->frame).ok());
  auto again = server.on_frame(hello_frame({}, 30)->frame);
  EXPECT_EQ(error_of(again.status()),
            (FrameError{ErrorCode::kProtocolError, 30, ErrorField::kType}));
}

TEST(ServerNegotiationTest, HelloAckToServerIsProtocolError) {
  ServerNegotiation server({});
  auto step = server.on_frame(ack_frame({})->frame);
  EXPECT_EQ(error_of(step.status()).field, ErrorField::kType);
}

TEST(ServerNegotiationTest, MalformedHelloIsPayloadError) {
  ServerNegotiation server({});
  std::vector<uint8_t> short_payload(11);
  auto step = server.on_frame(make_frame(kTypeHello, short_payload));
  EXPECT_EQ(error_of(step.status()).field, ErrorField::kPayload);
}

TEST(ServerNegotiationTest, NoCommonVersion) {
  ServerNegotiation server({});
  auto step = server.on_frame(hello_frame({0x20, 0x2F, 0, 0, ""})->frame);
  EXPECT_EQ(error_of(step.status()),
            (FrameError{ErrorCode::kUnsupportedVersion, 0, ErrorField::kType}));
  EXPECT_EQ(server.goaway_reason(), "supported=1.3");
}

TEST(ServerNegotiationTest, PicksRegisteredSecondMajor) {
  VersionRegistry versions;
  ASSERT_TRUE(versions.add(std::make_unique<testing::ToyV2Decoder>()).ok());
  ServerNegotiation server({.versions = &versions});
  auto step = server.on_frame(hello_frame({0x13, 0x2F, 0, 0, ""})->frame);
  ASSERT_TRUE(step.ok());
  EXPECT_EQ((*step)->version, 0x21);
  EXPECT_EQ(server.settings().version, 0x21);
  ServerNegotiation old_client_server({.versions = &versions});
  step = old_client_server.on_frame(hello_frame({0x13, 0x13, 0, 0, ""})->frame);
  ASSERT_TRUE(step.ok());
  EXPECT_EQ((*step)->version, 0x13);
  ServerNegotiation none({.versions = &versions});
  EXPECT_FALSE(none.on_frame(hello_frame({0x30, 0x3F, 0, 0, ""})->frame).ok());
  EXPECT_EQ(none.goaway_reason(), "supported=1.3,2.1");
}

TEST(ClientNegotiationTest, HelloOffersEverythingSpoken) {
  VersionRegistry versions;
  ASSERT_TRUE(versions.add(std::make_unique<testing::ToyV2Decoder>()).ok());
  ClientNegotiation client({.max_frame = 1 << 20, .agent = "c", .versions = &versions});
  Hello h = client.start();
  EXPECT_EQ(h.min_version, 0x13);
  EXPECT_EQ(h.max_version, 0x21);
  EXPECT_EQ(h.max_frame, 1u << 20);
  EXPECT_EQ(h.features, kFeatureCrc32c);
  EXPECT_EQ(h.agent, "c");
  EXPECT_TRUE(client.awaiting_ack());
  ASSERT_TRUE(client.on_frame(ack_frame({0x21, 0, kFeatureCrc32c, ""})->frame).ok());
  EXPECT_TRUE(client.established());
  EXPECT_EQ(client.settings(), (Settings{0x21, kDefaultMaxFrame, kFeatureCrc32c}));
}

TEST(ClientNegotiationTest, AckRules) {
  {  // frames before the ack are fine; the ack settles it
    ClientNegotiation client({.features = 0});
    client.start();
    EXPECT_TRUE(client.on_frame(app_frame()).ok());
    EXPECT_TRUE(client.awaiting_ack());
    // A server answering a feature we did not offer does not get it.
    ASSERT_TRUE(client.on_frame(ack_frame({0x13, 512, kFeatureCrc32c, ""})->frame).ok());
    EXPECT_EQ(client.settings(), (Settings{0x13, 512, 0}));
    // A second ack answers no HELLO.
    EXPECT_EQ(error_of(client.on_frame(ack_frame({})->frame)).code, ErrorCode::kProtocolError);
  }
  {  // without HELLO, any ack is unsolicited
    ClientNegotiation client({});
    client.skip();
    EXPECT_EQ(error_of(client.on_frame(ack_frame({}, 9)->frame)),
              (FrameError{ErrorCode::kProtocolError, 9, ErrorField::kType}));
  }
  {  // a HELLO sent to a client
    ClientNegotiation client({});
    client.start();
    EXPECT_EQ(error_of(client.on_frame(hello_frame({})->frame)).code, ErrorCode::kProtocolError);
  }
  {  // an ack choosing a major we do not speak
    ClientNegotiation client({});
    client.start();
    EXPECT_EQ(error_of(client.on_frame(ack_frame({0x21, 0, 0, ""})->frame)),
              (FrameError{ErrorCode::kUnsupportedVersion, 0, ErrorField::kType}));
  }
  {  // another minor of our major is fine (minor is informational)
    ClientNegotiation client({});
    client.start();
    EXPECT_TRUE(client.on_frame(ack_frame({0x1A, 0, 0, ""})->frame).ok());
    EXPECT_EQ(client.settings().version, 0x1A);
  }
  {  // a malformed ack
    ClientNegotiation client({});
    client.start();
    std::vector<uint8_t> p(5);
    EXPECT_EQ(error_of(client.on_frame(make_frame(kTypeHelloAck, p))).field, ErrorField::kPayload);
  }
}

}  // namespace
}  // namespace coring::sbmp
