// The hostile cases on the TLS path: 1,000 idle TLS connections (and what
// each costs), a peer that sends but never reads while another is served,
// and a peer that resets the connection in the middle of a record.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <thread>

#include "coring/core/timer.h"
#include "tls/tls_test_support.h"

namespace coring::tls {
namespace {

using namespace std::chrono_literals;
using testing::TlsConn;
using testing::TlsFixture;

long rss_kib() {
  std::ifstream status("/proc/self/status");
  std::string key;
  while (status >> key) {
    long value = 0;
    if (key == "VmRSS:" && status >> value) return value;
    std::getline(status, key);
  }
  return 0;
}

TEST(TlsHostileTest, ThousandIdleTlsConnectionsThenOneMoreIsServed) {
  constexpr int kIdle = 1000;
  TlsFixture f;
  f.serve(kIdle + 1);
  const long rss_before = rss_kib();
  std::vector<TlsStream> idle;
  absl::Status s = f.t.run([](TlsFixture& f, std::vector<TlsStream>& idle) -> Task<absl::Status> {
    for (int i = 0; i < kIdle; ++i) {
      auto t = co_await TlsStream::connect(*f.client_tls, *f.t.net, f.addr, "localhost");
      if (!t.ok()) co_return t.status();
      idle.push_back(std::move(*t));
    }
    co_return absl::OkStatus();
  }(f, idle));
  ASSERT_TRUE(s.ok()) << s;
  const long rss_after = rss_kib();
  // Both ends live in this process: half of the growth is one side's.
  std::printf("%d idle TLS connections: %.1f KiB RSS each side (client + server / 2)\n", kIdle,
              double(rss_after - rss_before) / kIdle / 2);
  // A TLS 1.3 client is done a flight before the server: let the server finish.
  for (int i = 0; i < 1000 && f.server_tls->stats().handshakes < uint64_t(kIdle); ++i) {
    f.t.loop->run_once(false);
  }
  EXPECT_EQ(f.server_tls->stats().handshakes, uint64_t(kIdle));
  // One more, echoing frames, while the thousand sit there.
  s = f.t.run(
      testing::tls_sbmp_client(*f.t.net, *f.client_tls, f.addr, "localhost", {0, 100, 70000}));
  EXPECT_TRUE(s.ok()) << s;
  f.t.run([](std::vector<TlsStream>& idle) -> Task<> {
    for (TlsStream& t : idle) (void)co_await t.close();
  }(idle));
  idle.clear();
  for (int i = 0; i <= kIdle; ++i) f.wait_server(i, 10000ms);
}

// Writes frames and never reads, until its stream is aborted.
Task<> never_reading_writer(TlsConn* conn, bool* done) {
  const std::vector<uint8_t> payload = testing::pattern(64 * 1024, 3);
  const sbmp::Frame frame = sbmp::make_frame(testing::kEchoType, payload);
  for (;;) {
    if (!(co_await conn->write_frame(frame)).ok()) break;
  }
  *done = true;
}

TEST(TlsHostileTest, PeerThatNeverReadsDoesNotStopOthers) {
  TlsFixture f;
  f.serve(2);
  auto bad = f.t.run([](TlsFixture& f) -> Task<absl::StatusOr<TlsStream>> {
    co_return co_await TlsStream::connect(*f.client_tls, *f.t.net, f.addr, "localhost");
  }(f));
  ASSERT_TRUE(bad.ok()) << bad.status();
  const sbmp::CodecOptions hello{.role = sbmp::Role::kClient, .send_hello = false};
  std::optional<TlsConn> bad_conn;
  bad_conn.emplace(std::move(*bad), sbmp::Codec(hello));
  bool bad_done = false;
  spawn(*f.t.loop, never_reading_writer(&*bad_conn, &bad_done));
  // Let it fill the socket buffers both ways: the server's echo then waits.
  f.t.run([]() -> Task<> { (void)co_await sleep_for(300ms); }());
  EXPECT_FALSE(bad_done);
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = f.t.run(
      testing::tls_sbmp_client(*f.t.net, *f.client_tls, f.addr, "localhost", {10, 20000, 0}));
  EXPECT_TRUE(s.ok()) << s;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 2s);
  f.wait_server(1);
  bad_conn->stream().abort(absl::AbortedError("test: drop the peer that never reads"));
  for (int i = 0; i < 1000 && !bad_done; ++i) f.t.loop->run_once(false);
  EXPECT_TRUE(bad_done);
  bad_conn.reset();  // closes its socket: the server's blocked echo fails
  f.wait_server(0);  // its blocked echo failed: the handler ended
}

// A blocking OpenSSL client on its own thread: handshake, one whole frame's
// record, then half of another record, then RST (SO_LINGER 0).
void reset_mid_record(uint16_t port, const std::string& ca) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_load_verify_locations(ctx, ca.c_str(), nullptr);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  EXPECT_EQ(SSL_connect(ssl), 1);
  // A record that starts and never finishes: header announces 1000 bytes.
  const uint8_t partial[] = {0x17, 0x03, 0x03, 0x03, 0xe8, 1, 2, 3, 4, 5, 6, 7, 8};
  EXPECT_EQ(::send(fd, partial, sizeof partial, 0), ssize_t(sizeof partial));
  std::this_thread::sleep_for(50ms);
  linger l{1, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  ::close(fd);  // RST
  SSL_free(ssl);
  SSL_CTX_free(ctx);
}

TEST(TlsHostileTest, ResetMidRecordEndsTheConnectionWithAnError) {
  TlsFixture f;
  f.serve(1);
  std::thread peer(reset_mid_record, f.addr.port(), f.pki.path("ca.pem"));
  f.wait_server(0);
  peer.join();
  EXPECT_TRUE(f.sides[0].handshake.ok()) << f.sides[0].handshake;
  EXPECT_FALSE(f.sides[0].ended.ok());
}

}  // namespace
}  // namespace coring::tls
