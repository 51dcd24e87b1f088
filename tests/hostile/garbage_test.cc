// Garbage (issue 10, e): bytes that are not SBMP - random bytes, an HTTP
// request, a TLS ClientHello - every receiver error of SBMP.md section 4, and
// length bombs. Each connection must get GOAWAY with the right code within
// 2 s and then be closed, while a victim on the same server thread keeps
// getting its echoes. A storm of them at once, too.
//
// Server: sbmp_echo_server --threads=1 (defaults otherwise: max_frame 16 MiB).
#include <functional>
#include <ostream>

#include "coring/codec/control.h"
#include "coring/codec/frame.h"
#include "hostile_test_support.h"

namespace coring::hostile::testing {
namespace {

using sbmp::ErrorCode;

struct GarbageCase {
  std::string name;
  std::function<Bytes()> bytes;
  ErrorCode code;
  uint64_t frames_before = 0;  // answers expected before the GOAWAY (echo, HELLO_ACK)
};

// gtest prints the parameter in test names and failures: the case's name.
void PrintTo(const GarbageCase& c, std::ostream* os) { *os << c.name; }

Bytes app_frame() { return frame(0x0100, pattern(100, 5)); }

// A frame with this extension block and no payload, built by hand (the
// encoder refuses malformed blocks).
Bytes with_ext_block(Bytes ext) {
  Bytes h = header(sbmp::kVersion13, 0, 0x0100, static_cast<uint32_t>(ext.size()),
                   static_cast<uint16_t>(ext.size()));
  return concat({h, ext});
}

std::vector<GarbageCase> cases() {
  return {
      {"RandomBytes", [] { return random_garbage(4096, 1); }, ErrorCode::kBadMagic},
      {"HttpRequest", http_request, ErrorCode::kBadMagic},
      {"TlsClientHello", tls_client_hello, ErrorCode::kBadMagic},
      {"GarbageAfterAValidFrame",
       [] {
         return concat({app_frame(), http_request()});
       },
       ErrorCode::kBadMagic, 1},
      {"HeaderChecksum",
       [] {
         Bytes b = app_frame();
         b[15] ^= 0xFF;  // hcrc
         return b;
       },
       ErrorCode::kHeaderChecksum},
      {"PayloadChecksum",
       [] {
         Bytes b = frame(0x0100, pattern(1000, 3), {}, /*chk=*/true);
         b.back() ^= 0x01;
         return b;
       },
       ErrorCode::kPayloadChecksum},
      {"LengthOneOverTheLimit",
       [] { return header(sbmp::kVersion13, 0, 0x0100, sbmp::kDefaultMaxFrame + 1, 0); },
       ErrorCode::kFrameTooLarge},
      {"LengthBomb4GiB", [] { return header(sbmp::kVersion13, 0, 0x0100, 0xFFFFFFFF, 0); },
       ErrorCode::kFrameTooLarge},
      {"LengthBombWithBody",
       [] {
         return concat({header(sbmp::kVersion13, 0, 0x0100, 0xFFFFFFF0, 0), pattern(64 << 10, 9)});
       },
       ErrorCode::kFrameTooLarge},
      {"UnsupportedVersion", [] { return header(0x23, 0, 0x0100, 0, 0); },
       ErrorCode::kUnsupportedVersion},
      {"HelloWithNoCommonVersion",
       [] { return frame(sbmp::kTypeHello, hello_payload(0x20, 0x2F)); },
       ErrorCode::kUnsupportedVersion},
      {"ReservedFlags", [] { return header(sbmp::kVersion13, 0x02, 0x0100, 0, 0); },
       ErrorCode::kReservedFlags},
      {"ExtLenPastLength",
       [] {
         return concat({header(sbmp::kVersion13, 0, 0x0100, 4, 8), pattern(4, 1)});
       },
       ErrorCode::kBadExtension},
      {"ChkFrameShorterThanItsTrailer",
       [] {
         return concat({header(sbmp::kVersion13, sbmp::kFlagChk, 0x0100, 2, 0), Bytes(2)});
       },
       ErrorCode::kBadExtension},
      {"ExtensionRunsPastItsBlock",
       [] {
         return with_ext_block({0x80, 10, 1, 2});
       },
       ErrorCode::kBadExtension},
      {"RequestIdOfWrongLength",
       [] {
         return with_ext_block({0x01, 4, 0, 0, 0, 1});
       },
       ErrorCode::kBadExtension},
      {"RequestIdTwice",
       [] {
         Bytes id = request_id_ext(7);
         return with_ext_block(concat({id, id}));
       },
       ErrorCode::kBadExtension},
      {"ReservedControlType", [] { return frame(0x0006, {}); }, ErrorCode::kProtocolError},
      {"TypeZero", [] { return frame(0x0000, pattern(8, 1)); }, ErrorCode::kProtocolError},
      {"SecondHello",
       [] {
         Bytes hello = frame(sbmp::kTypeHello, hello_payload(0x13, 0x13));
         return concat({hello, hello});
       },
       ErrorCode::kProtocolError, 1},
      {"HelloAfterTheFirstFrame",
       [] {
         return concat({app_frame(), frame(sbmp::kTypeHello, hello_payload(0x13, 0x13))});
       },
       ErrorCode::kProtocolError, 1},
      {"UnsolicitedHelloAck", [] { return frame(sbmp::kTypeHelloAck, Bytes(12)); },
       ErrorCode::kProtocolError},
      {"HelloMinAboveMax",
       [] {
         Bytes p = hello_payload(0x13, 0x13);
         p[0] = 0x14;
         return frame(sbmp::kTypeHello, p);
       },
       ErrorCode::kProtocolError},
      {"OversizedPing", [] { return frame(sbmp::kTypePing, pattern(65, 1)); },
       ErrorCode::kProtocolError},
      {"GoawayShorterThanItsCode", [] { return frame(sbmp::kTypeGoaway, Bytes(2)); },
       ErrorCode::kProtocolError},
  };
}

class GarbageTest : public HostileTest, public ::testing::WithParamInterface<GarbageCase> {};

TEST_P(GarbageTest, GetsGoawayWithItsCodeThenCloseVictimUnaffected) {
  const GarbageCase& c = GetParam();
  ASSERT_NE(start_sbmp(), nullptr);
  Victim victim({.port = port()});
  ASSERT_TRUE(victim.wait_for_frames(20, 3s)) << "victim not served before the attack";

  absl::StatusOr<Peer> attacker = Peer::connect(port());
  ASSERT_TRUE(attacker.ok()) << attacker.status();
  // The server may close before it took everything: only the answer counts.
  (void)attacker->send(c.bytes(), 2s);
  const Ending e = attacker->read_ending(2s);
  note("%s: %s", c.name, e.to_string());
  EXPECT_TRUE(e.goaway_and_close(c.code))
      << "wanted GOAWAY(" << sbmp::error_code_name(c.code) << ") and close, got " << e.to_string();
  EXPECT_EQ(e.frames_before, c.frames_before);
  attacker->socket().close();

  const uint64_t seen = victim.frames();
  EXPECT_TRUE(victim.wait_for_frames(seen + 20, 3s));
  expect_victim_served(victim.stop(), 40);
  expect_alive_and_serving();
}

INSTANTIATE_TEST_SUITE_P(Hostile, GarbageTest, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<GarbageCase>& info) {
                           return info.param.name;
                         });

// Every case above at once, on HOSTILE_STORM_CONNS (default 300) connections.
using GarbageStormTest = HostileTest;

TEST_F(GarbageStormTest, AllAnsweredWithTheRightGoawayVictimUnaffected) {
  ASSERT_NE(start_sbmp(), nullptr);
  Victim victim({.port = port()});
  ASSERT_TRUE(victim.wait_for_frames(20, 3s));
  const std::vector<GarbageCase> all = cases();
  const size_t n = env_size("HOSTILE_STORM_CONNS", 300);
  absl::Status error;
  std::vector<Socket> sockets = connect_many(port(), n, {}, &error);
  ASSERT_TRUE(error.ok()) << error;
  std::vector<Peer> peers;
  for (size_t i = 0; i < sockets.size(); ++i) {
    peers.emplace_back(std::move(sockets[i]));
    (void)peers.back().send(all[i % all.size()].bytes(), 2s);
  }
  size_t right = 0;
  std::string first_wrong;
  for (size_t i = 0; i < peers.size(); ++i) {
    const GarbageCase& c = all[i % all.size()];
    const Ending e = peers[i].read_ending(3s);
    if (e.goaway_and_close(c.code)) {
      ++right;
    } else if (first_wrong.empty()) {
      first_wrong = c.name + ": " + e.to_string();
    }
    peers[i].socket().close();
  }
  note("storm: %u of %u connections got the right GOAWAY and close", right, peers.size());
  EXPECT_EQ(right, peers.size()) << "first wrong: " << first_wrong;
  expect_victim_served(victim.stop(), 20);
  expect_alive_and_serving();
}

}  // namespace
}  // namespace coring::hostile::testing
