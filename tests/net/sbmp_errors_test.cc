// Every error of SBMP.md section 4 that a receiver detects (codes 1-8), sent
// by a raw test client to a FramedStream<sbmp::Codec> echo server: the bad
// connection gets GOAWAY(code) and is closed, while a second connection on
// the same server keeps echoing.
#include <gtest/gtest.h>

#include <cerrno>
#include <cstring>
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

// Pushes `chunk` again and again without reading, non-blocking, until the
// socket fails (its errno) or takes nothing for `stall` (0).
struct Pushed {
  uint64_t bytes = 0;
  int error = 0;
};
Pushed push_until_stalled(int fd, const std::vector<uint8_t>& chunk,
                          std::chrono::milliseconds stall, std::chrono::seconds limit) {
  Pushed p;
  const auto deadline = std::chrono::steady_clock::now() + limit;
  auto last = std::chrono::steady_clock::now();
  while (std::chrono::steady_clock::now() < deadline) {
    const ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      p.bytes += static_cast<uint64_t>(n);
      last = std::chrono::steady_clock::now();
    } else if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      if (std::chrono::steady_clock::now() - last > stall) break;
      pollfd pfd{fd, POLLOUT, 0};
      ::poll(&pfd, 1, 10);
    } else if (n < 0 && errno != EINTR) {
      p.error = errno;
      break;
    }
  }
  return p;
}

// After the goodbye the server reads and drops what the peer still sends
// until the peer closes, but at most FramedOptions::close_drain_bytes; then
// it takes no more input, and closes when close_timeout ends.
TEST(SbmpGoodbyeTest, APeerThatKeepsSendingAfterTheGoodbyeIsNoLongerRead) {
  ServerOptions options;
  options.framed.close_timeout = 1s;
  options.framed.close_drain_bytes = 64 * 1024;
  SbmpEchoServer s(options, {.max_frame = kServerMaxFrame});
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient healthy(s.port()), bad(s.port());
  ASSERT_TRUE(healthy.connected() && bad.connected());
  send_bytes(bad, bytes_of("GET "));  // BAD_MAGIC: the goodbye follows
  // Until the server closes (at close_timeout): it stops taking input long
  // before, so the pushing stalls now and then.
  const Pushed pushed = push_until_stalled(bad.fd(), pattern(16 * 1024, 6), 5s, 10s);
  EXPECT_TRUE(pushed.error == ECONNRESET || pushed.error == EPIPE)
      << "not closed after " << pushed.bytes << " bytes: " << std::strerror(pushed.error);
  EXPECT_GE(pushed.bytes, 64u * 1024);
  const NetStats stats = s.net_stats();
  EXPECT_EQ(stats.drain_overruns, 1u);
  // The bound, what receives already under way brought, and the bound plus
  // the peer's send buffer (4 MiB) again at the end of close_timeout.
  EXPECT_LE(stats.bytes_received, 2 * 64u * 1024 + (4u << 20) + (1u << 20));
  const std::vector<uint8_t> payload = pattern(3000, 12);
  healthy.expect_echo(encode(kType, payload), kType, {}, payload);
}

// A peer that pipelines and reads late keeps sending after the goodbye
// (it has not seen it yet), past close_drain_bytes. It still gets the
// answers to every frame sent before the bad one, then the goodbye.
TEST(SbmpGoodbyeTest, APeerThatReadsLateStillGetsEveryAnswerAndTheGoodbye) {
  SbmpEchoServer s({}, {.max_frame = kServerMaxFrame});
  ASSERT_TRUE(s.status.ok()) << s.status;
  RawClient peer(s.port());
  ASSERT_TRUE(peer.connected());
  const std::vector<uint8_t> payload = pattern(10000, 7);
  const std::vector<uint8_t> frame = encode(kType, payload);
  std::vector<uint8_t> wire;
  for (int i = 0; i < 20; ++i) wire = concat({wire, frame});
  send_bytes(peer, concat({wire, bytes_of("GET ")}));
  std::vector<uint8_t> more;
  for (int i = 0; i < 16; ++i) more = concat({more, frame});
  // Within close_timeout (2 s) of the goodbye the peer must read it all.
  const Pushed pushed = push_until_stalled(peer.fd(), more, 100ms, 1s);
  EXPECT_EQ(pushed.error, 0) << std::strerror(pushed.error);
  EXPECT_GT(pushed.bytes, 256u * 1024) << "the default close_drain_bytes was not passed";
  for (int i = 0; i < 20; ++i) {
    absl::StatusOr<OwnedFrame> f = peer.read_frame();
    ASSERT_TRUE(f.ok()) << "answer " << i << ": " << f.status();
    EXPECT_EQ(f->type(), kType);
    EXPECT_EQ(f->payload, payload) << "answer " << i;
  }
  peer.expect_goaway_and_close(ErrorCode::kBadMagic);
  const NetStats stats = s.net_stats();
  EXPECT_EQ(stats.drain_overruns, 1u);
  // The frames before the goodbye, the bound, what receives already under
  // way brought, and the bound plus the peer's send buffer (4 MiB) again at
  // the end of close_timeout.
  EXPECT_LE(stats.bytes_received, wire.size() + 2 * 256u * 1024 + (4u << 20) + (1u << 20));
}

INSTANTIATE_TEST_SUITE_P(Section4, SbmpErrorTest, ::testing::ValuesIn(bad_inputs()),
                         [](const auto& info) { return info.param.name; });

}  // namespace
}  // namespace coring::net::sbmp_testing
