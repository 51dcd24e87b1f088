// Every error of SBMP.md section 4 that a receiver detects (codes 1-8), sent
// by a raw test client to a FramedStream<sbmp::Codec> echo server: the bad
// connection gets GOAWAY(code) and is closed, while a second connection on
// the same server keeps echoing.
#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <vector>

#include "sbmp_test_support.h"

namespace coring::net::sbmp_testing {
namespace {

using sbmp::ErrorCode;
constexpr uint16_t kType = 0x0100;
constexpr uint32_t kServerMaxFrame = 64 * 1024;

struct BadInput {
  std::string name;
  ErrorCode code;
  // What the bad connection sends; it may first exchange good frames.
  std::function<void(RawClient&)> send;
  std::string reason_contains = {};
};

void PrintTo(const BadInput& input, std::ostream* os) { *os << input.name; }

void send_bytes(RawClient& c, const std::vector<uint8_t>& bytes) { ASSERT_TRUE(c.send(bytes)); }

std::vector<BadInput> bad_inputs() {
  const std::vector<uint8_t> hi = bytes_of("hi");
  const auto good = encode(kType, hi);
  std::vector<BadInput> v;
  // PROTOCOL_ERROR
  v.push_back({"ReservedControlType", ErrorCode::kProtocolError,
               [=](RawClient& c) { send_bytes(c, encode(0x0006, hi)); }});
  v.push_back({"ControlTypeZero", ErrorCode::kProtocolError,
               [=](RawClient& c) { send_bytes(c, encode(0x0000, {})); }});
  v.push_back({"HelloAfterTheFirstFrame", ErrorCode::kProtocolError, [=](RawClient& c) {
                 c.expect_echo(good, kType, {}, hi);
                 send_bytes(c, encode(sbmp::kTypeHello, hello_payload(0x13, 0x13, 0)));
               }});
  v.push_back({"SecondHello", ErrorCode::kProtocolError, [=](RawClient& c) {
                 send_bytes(c, encode(sbmp::kTypeHello, hello_payload(0x13, 0x13, 0)));
                 absl::StatusOr<OwnedFrame> ack = c.read_frame();
                 ASSERT_TRUE(ack.ok()) << ack.status();
                 ASSERT_EQ(ack->type(), sbmp::kTypeHelloAck);
                 send_bytes(c, encode(sbmp::kTypeHello, hello_payload(0x13, 0x13, 0)));
               }});
  v.push_back({"HelloAckFromAClient", ErrorCode::kProtocolError, [=](RawClient& c) {
                 send_bytes(c, encode(sbmp::kTypeHelloAck, std::vector<uint8_t>(12, 0)));
               }});
  v.push_back({"PingOver64Bytes", ErrorCode::kProtocolError, [=](RawClient& c) {
                 send_bytes(c, encode(sbmp::kTypePing, std::vector<uint8_t>(65, 1)));
               }});
  // BAD_MAGIC: a whole header, and a prefix that cannot begin "SBMP".
  v.push_back({"BadMagic", ErrorCode::kBadMagic, [=](RawClient& c) {
                 std::vector<uint8_t> f = good;
                 f[3] = 'Q';
                 send_bytes(c, f);
               }});
  v.push_back({"BadMagicPrefix", ErrorCode::kBadMagic,
               [=](RawClient& c) { send_bytes(c, bytes_of("GET ")); }});
  v.push_back(
      {"BadMagicAfterGoodFrames", ErrorCode::kBadMagic, [=](RawClient& c) {
         c.expect_echo(good, kType, {}, hi);
         send_bytes(c, concat({good, std::vector<uint8_t>{0x00, 0x01, 0x53, 0x42, 0x4D, 0x50}}));
         c.expect_echo({}, kType, {}, hi);  // the good one is still answered
       }});
  v.push_back({"HeaderChecksum", ErrorCode::kHeaderChecksum, [=](RawClient& c) {
                 std::vector<uint8_t> f = good;
                 f[15] ^= 0x01;
                 send_bytes(c, f);
               }});
  v.push_back({"PayloadChecksum", ErrorCode::kPayloadChecksum, [=](RawClient& c) {
                 std::vector<uint8_t> f = encode(kType, pattern(100, 3), request_id_ext(1), true);
                 f.back() ^= 0x80;
                 send_bytes(c, f);
               }});
  v.push_back({"PayloadChecksumOfSplitFrame", ErrorCode::kPayloadChecksum, [=](RawClient& c) {
                 std::vector<uint8_t> f = encode(kType, pattern(40000, 4), {}, true);
                 f[20000] ^= 0x01;  // a payload byte: the trailer no longer matches
                 ASSERT_TRUE(c.send(absl::MakeConstSpan(f).subspan(0, 100)));
                 std::this_thread::sleep_for(20ms);
                 ASSERT_TRUE(c.send(absl::MakeConstSpan(f).subspan(100)));
               }});
  // FRAME_TOO_LARGE: refused from the header alone, before any body byte.
  v.push_back({"FrameTooLarge", ErrorCode::kFrameTooLarge, [=](RawClient& c) {
                 send_bytes(c, header_bytes(0x13, 0, kType, kServerMaxFrame + 1, 0));
               }});
  v.push_back({"FrameTooLargeWithBody", ErrorCode::kFrameTooLarge, [=](RawClient& c) {
                 send_bytes(c, encode(kType, pattern(kServerMaxFrame + 1, 5)));
               }});
  v.push_back({"UnsupportedVersion", ErrorCode::kUnsupportedVersion, [=](RawClient& c) {
                 send_bytes(c, concat({header_bytes(0x23, 0, kType, 2, 0), hi}));
               }});
  v.push_back(
      {"HelloWithNoCommonVersion", ErrorCode::kUnsupportedVersion,
       [=](RawClient& c) { send_bytes(c, encode(sbmp::kTypeHello, hello_payload(0x20, 0x2F, 0))); },
       "supported=1.3"});
  // BAD_EXTENSION
  v.push_back({"ExtLenPastLength", ErrorCode::kBadExtension, [=](RawClient& c) {
                 send_bytes(c, concat({header_bytes(0x13, 0, kType, 2, 3), hi}));
               }});
  v.push_back({"RequestIdOfWrongLength", ErrorCode::kBadExtension, [=](RawClient& c) {
                 const std::vector<uint8_t> ext = {0x01, 4, 0, 0, 0, 1};
                 send_bytes(c, concat({header_bytes(0x13, 0, kType, 8, 6), ext, hi}));
               }});
  v.push_back({"DuplicateRequestId", ErrorCode::kBadExtension, [=](RawClient& c) {
                 const auto id = request_id_ext(1);
                 send_bytes(c, concat({header_bytes(0x13, 0, kType, 20, 20), id, id}));
               }});
  v.push_back({"EntryRunsPastTheBlock", ErrorCode::kBadExtension, [=](RawClient& c) {
                 const std::vector<uint8_t> ext = {0x80, 9, 1, 2};
                 send_bytes(c, concat({header_bytes(0x13, 0, kType, 6, 4), ext, hi}));
               }});
  v.push_back({"ChkFrameShorterThanItsTrailer", ErrorCode::kBadExtension, [=](RawClient& c) {
                 send_bytes(c, concat({header_bytes(0x13, sbmp::kFlagChk, kType, 2, 0), hi}));
               }});
  v.push_back({"ReservedFlag", ErrorCode::kReservedFlags, [=](RawClient& c) {
                 send_bytes(c, concat({header_bytes(0x13, 0x02, kType, 2, 0), hi}));
               }});
  v.push_back({"HighReservedFlag", ErrorCode::kReservedFlags, [=](RawClient& c) {
                 send_bytes(c, concat({header_bytes(0x13, 0x81, kType, 6, 0), hi,
                                       std::vector<uint8_t>(4, 0)}));
               }});
  return v;
}

class SbmpErrorTest : public ::testing::TestWithParam<BadInput> {};

TEST_P(SbmpErrorTest, BadConnectionGetsGoawayAndCloseWhileAnotherKeepsEchoing) {
  SbmpEchoServer s({}, {.max_frame = kServerMaxFrame});
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient healthy(s.port()), bad(s.port());
  ASSERT_TRUE(healthy.connected() && bad.connected());
  healthy.expect_echo(encode(kType, bytes_of("before")), kType, {}, bytes_of("before"));

  GetParam().send(bad);
  std::string reason;
  bad.expect_goaway_and_close(GetParam().code, &reason);
  if (!GetParam().reason_contains.empty()) {
    EXPECT_NE(reason.find(GetParam().reason_contains), std::string::npos) << reason;
  }

  const std::vector<uint8_t> payload = pattern(3000, 11), ext = request_id_ext(9);
  healthy.expect_echo(encode(kType, payload, ext), kType, ext, payload);
}

INSTANTIATE_TEST_SUITE_P(Section4, SbmpErrorTest, ::testing::ValuesIn(bad_inputs()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace coring::net::sbmp_testing
