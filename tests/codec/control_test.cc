#include "coring/codec/control.h"

#include <array>
#include <string>
#include <vector>

#include "coring/codec/error.h"
#include "gtest/gtest.h"
#include "test_util.h"

namespace coring::sbmp {
namespace {

Frame control(uint16_t type, const std::vector<uint8_t>& payload, uint64_t offset = 0) {
  Frame f = make_frame(type, payload);
  f.offset = offset;
  return f;
}

void expect_payload_error(const absl::Status& st, uint64_t offset = 0) {
  ASSERT_FALSE(st.ok());
  auto e = frame_error(st);
  ASSERT_TRUE(e.has_value()) << st;
  EXPECT_EQ(e->code, ErrorCode::kProtocolError);
  EXPECT_EQ(e->field, ErrorField::kPayload);
  EXPECT_EQ(e->offset, offset);
}

TEST(ControlTest, HelloRoundTripAndLayout) {
  std::array<uint8_t, kMaxHelloPayload> buf{};
  size_t n = *write_hello({0x10, 0x1F, 1 << 20, kFeatureCrc32c, "agent"}, absl::MakeSpan(buf));
  ASSERT_EQ(n, 17u);
  std::vector<uint8_t> payload(buf.begin(), buf.begin() + n);
  EXPECT_EQ(testing::to_hex(payload),
            "101f0000"
            "00100000"
            "00000001"
            "6167656e74");
  EXPECT_EQ(testing::to_hex(absl::MakeConstSpan(payload).subspan(0, 12)),
            "101f00000010000000000001");
  auto hello = parse_hello(control(kTypeHello, payload));
  ASSERT_TRUE(hello.ok());
  EXPECT_EQ(hello->min_version, 0x10);
  EXPECT_EQ(hello->max_version, 0x1F);
  EXPECT_EQ(hello->max_frame, 1u << 20);
  EXPECT_EQ(hello->features, kFeatureCrc32c);
  EXPECT_EQ(hello->agent, "agent");
}

TEST(ControlTest, HelloRules) {
  std::vector<uint8_t> ok = testing::from_hex(
      "13130000"
      "00000000"
      "00000000");
  EXPECT_TRUE(parse_hello(control(kTypeHello, ok)).ok());
  auto bad = [&](std::vector<uint8_t> p) {
    expect_payload_error(parse_hello(control(kTypeHello, p, 7)).status(), 7);
  };
  bad(testing::from_hex("1313000000000000000000"));  // 11 bytes
  bad(
      testing::from_hex("13130100"
                        "00000000"
                        "00000000"));  // reserved
  bad(
      testing::from_hex("13130001"
                        "00000000"
                        "00000000"));  // reserved
  bad(
      testing::from_hex("14130000"
                        "00000000"
                        "00000000"));  // min > max
  std::vector<uint8_t> long_agent = ok;
  long_agent.resize(12 + 256, 'a');
  bad(long_agent);
  long_agent.resize(12 + 255);
  EXPECT_TRUE(parse_hello(control(kTypeHello, long_agent)).ok());
  // Writers refuse what parsers reject.
  std::array<uint8_t, 400> buf{};
  std::string agent(256, 'a');
  EXPECT_FALSE(
      write_hello(
          {.min_version = 0x13, .max_version = 0x13, .max_frame = 0, .features = 0, .agent = agent},
          absl::MakeSpan(buf))
          .ok());
  EXPECT_FALSE(write_hello({0x14, 0x13, 0, 0, ""}, absl::MakeSpan(buf)).ok());
}

TEST(ControlTest, HelloAckRules) {
  std::array<uint8_t, kMaxHelloPayload> buf{};
  size_t n = *write_hello_ack({0x13, 4096, 1, "srv"}, absl::MakeSpan(buf));
  std::vector<uint8_t> p(buf.begin(), buf.begin() + n);
  auto ack = parse_hello_ack(control(kTypeHelloAck, p));
  ASSERT_TRUE(ack.ok());
  EXPECT_EQ(ack->version, 0x13);
  EXPECT_EQ(ack->max_frame, 4096u);
  EXPECT_EQ(ack->agent, "srv");
  p[1] = 1;  // reserved u8
  expect_payload_error(parse_hello_ack(control(kTypeHelloAck, p)).status());
  expect_payload_error(parse_hello_ack(control(kTypeHelloAck, {0x13})).status());
}

TEST(ControlTest, GoawayRules) {
  std::array<uint8_t, kMaxGoawayPayload> buf{};
  size_t n = *write_goaway({10, "shutting down"}, absl::MakeSpan(buf));
  std::vector<uint8_t> p(buf.begin(), buf.begin() + n);
  auto g = parse_goaway(control(kTypeGoaway, p));
  ASSERT_TRUE(g.ok());
  EXPECT_EQ(g->code, 10u);
  EXPECT_EQ(g->reason, "shutting down");
  expect_payload_error(parse_goaway(control(kTypeGoaway, {0, 0, 1})).status());
  std::vector<uint8_t> long_reason(4 + 1025, 'r');
  expect_payload_error(parse_goaway(control(kTypeGoaway, long_reason)).status());
  long_reason.pop_back();
  EXPECT_TRUE(parse_goaway(control(kTypeGoaway, long_reason)).ok());
  std::string reason(1025, 'r');
  EXPECT_FALSE(write_goaway({0, reason}, absl::MakeSpan(buf)).ok());
}

TEST(ControlTest, PingAndTypes) {
  EXPECT_TRUE(check_ping(control(kTypePing, std::vector<uint8_t>(64))).ok());
  expect_payload_error(check_ping(control(kTypePing, std::vector<uint8_t>(65))));
  for (uint16_t t : {0x0000, 0x0006, 0x00FF}) {
    absl::Status st = check_control_type(control(t, {}, 3));
    auto e = frame_error(st);
    ASSERT_TRUE(e.has_value());
    EXPECT_EQ(*e, (FrameError{ErrorCode::kProtocolError, 3, ErrorField::kType, false}));
  }
  for (uint16_t t : {0x0001, 0x0005, 0x0100, 0xFFFF})
    EXPECT_TRUE(check_control_type(control(t, {})).ok());
}

}  // namespace
}  // namespace coring::sbmp
