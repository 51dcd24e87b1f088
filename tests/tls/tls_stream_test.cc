// Tests of tls/tls_stream.h, both ends in this process on one loop:
// FramedStream<sbmp::Codec, TlsStream> echo of 0 B..1 MiB frames both ways,
// certificate refusals (wrong host name, expired, unknown CA) with OpenSSL's
// reason in the status, a plaintext client and a stalled handshake against a
// TLS server, garbage after the handshake, close_notify, session
// resumption, ALPN, and the kernel-TLS detection falling back to user space.
#include "coring/tls/tls_stream.h"

#include <gtest/gtest.h>

#include "coring/tls/ktls.h"
#include "tls/tls_test_support.h"

namespace coring::tls {
namespace {

using namespace std::chrono_literals;
using testing::TlsFixture;

const std::vector<size_t> kSizes = {0, 1, 100, 4095, 16384, 16385, 65536, 100000, 1 << 20, 3, 0};

TEST(TlsStreamTest, EchoesSbmpFramesOfEverySizeBothWays) {
  TlsFixture f;
  f.serve(1);
  TlsInfo client_info;
  absl::Status s = f.t.run(
      testing::tls_sbmp_client(*f.t.net, *f.client_tls, f.addr, "localhost", kSizes, &client_info));
  EXPECT_TRUE(s.ok()) << s;
  f.wait_server(0);
  EXPECT_TRUE(f.sides[0].handshake.ok()) << f.sides[0].handshake;
  EXPECT_EQ(client_info.version, "TLSv1.3");
  EXPECT_EQ(f.sides[0].info.version, "TLSv1.3");
  EXPECT_FALSE(client_info.cipher.empty());
  EXPECT_EQ(client_info.record_path, RecordPath::kUserSpace);
  EXPECT_FALSE(client_info.record_path_reason.empty());
  // The client's close() said goodbye (GOAWAY) -> the server saw it.
  EXPECT_NE(f.sides[0].ended.message().find("GOAWAY(NO_ERROR"), absl::string_view::npos)
      << f.sides[0].ended;
  EXPECT_EQ(f.server_tls->stats().handshakes, 1u);
  EXPECT_EQ(f.client_tls->stats().user_space_records, 1u);
}

TEST(TlsStreamTest, VerifiesAnIpAddressName) {
  TlsFixture f;
  f.serve(1);
  absl::Status s =
      f.t.run(testing::tls_sbmp_client(*f.t.net, *f.client_tls, f.addr, "127.0.0.1", {5, 0}));
  EXPECT_TRUE(s.ok()) << s;
  f.wait_server(0);
}

TEST(TlsStreamTest, WrongHostNameIsRefused) {
  TlsFixture f;
  f.serve(1);
  absl::Status s =
      f.t.run(testing::tls_sbmp_client(*f.t.net, *f.client_tls, f.addr, "wrong.example", {1}));
  EXPECT_TRUE(absl::IsUnauthenticated(s)) << s;
  EXPECT_NE(s.message().find("certificate verify failed"), absl::string_view::npos) << s;
  EXPECT_NE(s.message().find("hostname mismatch"), absl::string_view::npos) << s;
  f.wait_server(0);
  // The client's alert told the server why.
  EXPECT_FALSE(f.sides[0].handshake.ok());
}

TEST(TlsStreamTest, ExpiredCertificateIsRefused) {
  TlsFixture f(TlsOptions{.cert_file = "", .key_file = ""});
  auto expired = TlsContext::server(
      {.cert_file = f.pki.path("expired.pem"), .key_file = f.pki.path("expired.key")});
  ASSERT_TRUE(expired.ok()) << expired.status();
  f.server_tls = std::move(*expired);
  f.serve(1);
  absl::Status s =
      f.t.run(testing::tls_sbmp_client(*f.t.net, *f.client_tls, f.addr, "localhost", {1}));
  EXPECT_TRUE(absl::IsUnauthenticated(s)) << s;
  EXPECT_NE(s.message().find("certificate has expired"), absl::string_view::npos) << s;
  f.wait_server(0);
  EXPECT_TRUE(absl::IsUnauthenticated(f.sides[0].handshake)) << f.sides[0].handshake;
}

TEST(TlsStreamTest, UnknownAuthorityIsRefused) {
  TlsFixture f;
  auto other = TlsContext::client({.ca_file = f.pki.path("other_ca.pem")});
  ASSERT_TRUE(other.ok()) << other.status();
  f.serve(1);
  absl::Status s = f.t.run(testing::tls_sbmp_client(*f.t.net, **other, f.addr, "localhost", {1}));
  EXPECT_TRUE(absl::IsUnauthenticated(s)) << s;
  EXPECT_NE(s.message().find("local issuer"), absl::string_view::npos) << s;
  f.wait_server(0);
}

TEST(TlsStreamTest, MissingCertificateFileIsAConfigurationError) {
  auto s = TlsContext::server({.cert_file = "/nonexistent.pem", .key_file = "/nonexistent.key"});
  EXPECT_TRUE(absl::IsInvalidArgument(s.status())) << s.status();
  EXPECT_NE(s.status().message().find("/nonexistent.pem"), absl::string_view::npos);
}

// Sends `bytes` on a plain connection and reads until EOF; the bytes read.
Task<absl::StatusOr<std::string>> plain_peer(net::NetContext& net, net::SocketAddress addr,
                                             std::string bytes) {
  auto c = co_await net::Stream::connect(net, addr);
  if (!c.ok()) co_return c.status();
  if (!bytes.empty()) {
    const auto span =
        absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
    if (auto s = co_await c->write(span); !s.ok()) co_return s;
  }
  std::string got;
  for (;;) {
    auto buf = co_await c->read();
    if (!buf.ok() || buf->empty()) break;
    got.append(reinterpret_cast<const char*>(buf->data()), buf->size());
  }
  (void)co_await c->close();
  co_return got;
}

TEST(TlsStreamTest, PlaintextClientIsClosedCleanly) {
  TlsFixture f;
  f.serve(1);
  auto got = f.t.run(plain_peer(*f.t.net, f.addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"));
  ASSERT_TRUE(got.ok()) << got.status();
  f.wait_server(0);
  EXPECT_TRUE(absl::IsDataLoss(f.sides[0].handshake)) << f.sides[0].handshake;
  EXPECT_NE(f.sides[0].handshake.message().find("SSL routines"), absl::string_view::npos)
      << f.sides[0].handshake;
  // At most an alert record (content type 21) came back before the close.
  if (!got->empty()) {
    EXPECT_EQ(static_cast<uint8_t>((*got)[0]), 21);
  }
  EXPECT_EQ(f.server_tls->stats().handshake_failures, 1u);
}

TEST(TlsStreamTest, GarbageIsRefused) {
  TlsFixture f;
  f.serve(1);
  std::string garbage(3000, '\0');
  for (size_t i = 0; i < garbage.size(); ++i) garbage[i] = static_cast<char>(i * 131 + 7);
  garbage[0] = 0x16;  // looks like a handshake record at first
  auto got = f.t.run(plain_peer(*f.t.net, f.addr, garbage));
  ASSERT_TRUE(got.ok()) << got.status();
  f.wait_server(0);
  EXPECT_FALSE(f.sides[0].handshake.ok());
}

TEST(TlsStreamTest, StalledHandshakeTimesOut) {
  TlsFixture f(TlsOptions{.handshake_timeout = 300ms});
  f.serve(1);
  const auto start = std::chrono::steady_clock::now();
  // Half a ClientHello record header, then nothing.
  auto got = f.t.run(plain_peer(*f.t.net, f.addr, std::string("\x16\x03\x01", 3)));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_TRUE(got.ok()) << got.status();
  f.wait_server(0);
  EXPECT_TRUE(absl::IsDeadlineExceeded(f.sides[0].handshake)) << f.sides[0].handshake;
  EXPECT_GE(took, 250ms);
  EXPECT_LT(took, 3s);
  EXPECT_EQ(f.server_tls->stats().handshake_timeouts, 1u);
}

// Raw TLS server: reads until the end of the stream; says whether it was a
// close_notify (not truncated) and how many bytes came.
Task<> read_to_end(TlsContext& tls, net::Listener& l, bool* truncated, size_t* bytes,
                   absl::Status* why, bool* done) {
  auto s = co_await l.accept();
  if (s.ok()) {
    auto t = co_await TlsStream::accept(tls, std::move(*s));
    if (!t.ok()) {
      *why = t.status();
    } else {
      for (;;) {
        auto buf = co_await t->read();
        if (!buf.ok()) {
          *why = buf.status();
          break;
        }
        if (buf->empty()) break;
        *bytes += buf->size();
      }
      *truncated = t->info().truncated;
      (void)co_await t->close();
    }
  }
  *done = true;
}

TEST(TlsStreamTest, GracefulCloseSendsCloseNotify) {
  TlsFixture f;
  bool truncated = true, done = false;
  size_t bytes = 0;
  absl::Status why;
  spawn(*f.t.loop, read_to_end(*f.server_tls, *f.listener, &truncated, &bytes, &why, &done));
  absl::Status s = f.t.run([](TlsFixture& f) -> Task<absl::Status> {
    auto t = co_await TlsStream::connect(*f.client_tls, *f.t.net, f.addr, "localhost");
    if (!t.ok()) co_return t.status();
    const std::vector<uint8_t> data = testing::pattern(70000);
    if (auto s = co_await t->write(absl::MakeConstSpan(data)); !s.ok()) co_return s;
    co_return co_await t->close();
  }(f));
  EXPECT_TRUE(s.ok()) << s;
  for (int i = 0; i < 2000 && !done; ++i) f.t.loop->run_once(false);
  ASSERT_TRUE(done);
  EXPECT_TRUE(why.ok()) << why;
  EXPECT_EQ(bytes, 70000u);
  EXPECT_FALSE(truncated) << "the end of the stream came without close_notify";
}

TEST(TlsStreamTest, GarbageAfterTheHandshakeEndsTheConnection) {
  TlsFixture f;
  f.serve(1);
  absl::Status s = f.t.run([](TlsFixture& f) -> Task<absl::Status> {
    auto t = co_await TlsStream::connect(*f.client_tls, *f.t.net, f.addr, "localhost");
    if (!t.ok()) co_return t.status();
    // An application-data record header announcing 100 bytes, then junk,
    // bypassing TLS: the record's authentication fails.
    std::vector<uint8_t> junk(5 + 100, 0xab);
    const uint8_t header[5] = {0x17, 0x03, 0x03, 0x00, 0x64};
    std::copy(std::begin(header), std::end(header), junk.begin());
    if (auto s = co_await t->transport().write(absl::MakeConstSpan(junk)); !s.ok()) co_return s;
    auto buf = co_await t->read();  // the server's alert, then EOF
    (void)co_await t->transport().close();
    co_return buf.ok() ? absl::OkStatus() : buf.status();
  }(f));
  (void)s;  // the client may see the alert as an error or EOF: either is fine
  f.wait_server(0);
  EXPECT_TRUE(f.sides[0].handshake.ok());
  EXPECT_TRUE(absl::IsDataLoss(f.sides[0].ended)) << f.sides[0].ended;
}

TEST(TlsStreamTest, ClientResumesItsSession) {
  TlsFixture f;
  f.serve(2);
  TlsInfo first, second;
  absl::Status s =
      f.t.run(testing::tls_sbmp_client(*f.t.net, *f.client_tls, f.addr, "localhost", {10}, &first));
  ASSERT_TRUE(s.ok()) << s;
  s = f.t.run(
      testing::tls_sbmp_client(*f.t.net, *f.client_tls, f.addr, "localhost", {10}, &second));
  ASSERT_TRUE(s.ok()) << s;
  f.wait_server(1);
  EXPECT_FALSE(first.resumed);
  EXPECT_TRUE(second.resumed);
  EXPECT_TRUE(f.sides[1].info.resumed);
  EXPECT_EQ(f.server_tls->stats().resumed, 1u);
}

TEST(TlsStreamTest, NegotiatesAlpn) {
  TlsFixture f(TlsOptions{.alpn = {"h2", "sbmp/1.3"}}, TlsOptions{.alpn = {"sbmp/1.3"}});
  f.serve(1);
  TlsInfo info;
  absl::Status s =
      f.t.run(testing::tls_sbmp_client(*f.t.net, *f.client_tls, f.addr, "localhost", {3}, &info));
  EXPECT_TRUE(s.ok()) << s;
  f.wait_server(0);
  EXPECT_EQ(info.alpn, "sbmp/1.3");
  EXPECT_EQ(f.sides[0].info.alpn, "sbmp/1.3");
}

TEST(TlsStreamTest, MutualTlsNeedsTheClientCertificate) {
  TlsFixture f;
  auto server = TlsContext::server({.cert_file = f.pki.path("server.pem"),
                                    .key_file = f.pki.path("server.key"),
                                    .ca_file = f.pki.path("ca.pem"),
                                    .verify_peer = true});
  ASSERT_TRUE(server.ok()) << server.status();
  f.server_tls = std::move(*server);
  auto with_cert = TlsContext::client({.cert_file = f.pki.path("client.pem"),
                                       .key_file = f.pki.path("client.key"),
                                       .ca_file = f.pki.path("ca.pem")});
  ASSERT_TRUE(with_cert.ok()) << with_cert.status();
  f.serve(2);
  absl::Status s =
      f.t.run(testing::tls_sbmp_client(*f.t.net, **with_cert, f.addr, "localhost", {10}));
  EXPECT_TRUE(s.ok()) << s;
  // Without a certificate: TLS 1.3 finishes the client's handshake first;
  // the server's refusal (an alert) ends the echo.
  s = f.t.run(testing::tls_sbmp_client(*f.t.net, *f.client_tls, f.addr, "localhost", {10}));
  EXPECT_FALSE(s.ok());
  f.wait_server(1);
  EXPECT_TRUE(absl::IsUnauthenticated(f.sides[1].handshake)) << f.sides[1].handshake;
}

TEST(TlsStreamTest, KernelTlsDetectionFallsBackToUserSpace) {
  using testing::TempFile;
  TempFile mptcp_only("mptcp\n");
  TempFile with_tls("mptcp tls\n");
  EXPECT_FALSE(kernel_offers_tls(mptcp_only.path()));
  EXPECT_TRUE(kernel_offers_tls(with_tls.path()));
  EXPECT_FALSE(kernel_offers_tls("/nonexistent/tcp_available_ulp"));
  RecordPathDecision d = precheck_record_path(true, mptcp_only.path());
  EXPECT_EQ(d.path, RecordPath::kUserSpace);
  EXPECT_NE(d.reason.find("no TLS ULP"), std::string::npos) << d.reason;
  d = precheck_record_path(false, with_tls.path());
  EXPECT_NE(d.reason.find("not wanted"), std::string::npos) << d.reason;

  // A kernel that claims the ULP: the install fails (here: the stream is a
  // fixed file; ktls_test covers plain fds), the connection still works, in
  // user space, and says why.
  TlsFixture f({}, TlsOptions{.ulp_list_file = with_tls.path()});
  f.serve(1);
  TlsInfo info;
  absl::Status s =
      f.t.run(testing::tls_sbmp_client(*f.t.net, *f.client_tls, f.addr, "localhost", {100}, &info));
  EXPECT_TRUE(s.ok()) << s;
  f.wait_server(0);
  EXPECT_EQ(info.record_path, RecordPath::kUserSpace);
  EXPECT_NE(info.record_path_reason.find("kernel TLS install failed"), std::string::npos)
      << info.record_path_reason;
  // This machine's own answer (no TLS ULP here): user space, with a reason.
  EXPECT_EQ(f.sides[0].info.record_path, RecordPath::kUserSpace);
  EXPECT_FALSE(f.sides[0].info.record_path_reason.empty());
}

}  // namespace
}  // namespace coring::tls
