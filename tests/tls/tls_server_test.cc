// tls/tls_server.h: serve_tls() on a net::Server - the server's own
// machinery holds on the TLS path: idle timeout (SBMP GOAWAY(IDLE_TIMEOUT),
// sent encrypted), and graceful shutdown (GOAWAY(SHUTDOWN) after the frames
// already received are answered).
#include "coring/tls/tls_server.h"

#include <gtest/gtest.h>

#include "net/echo_fixtures.h"
#include "tls/tls_test_support.h"

namespace coring::tls {
namespace {

using namespace std::chrono_literals;
using testing::TlsConn;

Task<> echo(TlsConn conn) {
  for (;;) {
    auto frame = co_await conn.read_frame();
    if (!frame.ok()) co_return;
    if (!(co_await conn.write_frame(*frame)).ok()) break;
  }
  (void)co_await conn.close();
}

struct TlsServerFixture {
  explicit TlsServerFixture(net::ServerOptions options)
      : on_loop((options.host = "127.0.0.1", options)) {
    auto s = TlsContext::server(
        {.cert_file = pki.path("server.pem"), .key_file = pki.path("server.key")});
    EXPECT_TRUE(s.ok()) << s.status();
    server_tls = std::move(*s);
    auto c = TlsContext::client({.ca_file = pki.path("ca.pem")});
    EXPECT_TRUE(c.ok()) << c.status();
    client_tls = std::move(*c);
    EXPECT_TRUE(serve_tls<sbmp::Codec>(on_loop.server, *server_tls, echo).ok());
  }
  testing::TestPki pki;
  std::unique_ptr<TlsContext> server_tls;
  std::unique_ptr<TlsContext> client_tls;
  net::testing::ServerOnLoop on_loop;
};

// Connects, echoes one frame, then waits for what ends the connection.
Task<absl::Status> echo_then_wait(TlsServerFixture& f, net::Server* shut_down) {
  auto t = co_await TlsStream::connect(*f.client_tls, *f.on_loop.t.net, f.on_loop.address(),
                                       "localhost");
  if (!t.ok()) co_return t.status();
  const sbmp::CodecOptions hello{.role = sbmp::Role::kClient};
  TlsConn conn(std::move(*t), sbmp::Codec(hello));
  const std::vector<size_t> sizes = {1000};  // a local: GCC 12 and braced temporaries in co_await
  if (absl::Status s = co_await testing::echo_frames(conn, sizes); !s.ok()) co_return s;
  if (shut_down != nullptr) shut_down->begin_shutdown();
  auto frame = co_await conn.read_frame();
  (void)co_await conn.close();
  if (frame.ok()) co_return absl::InternalError("an unexpected frame");
  co_return frame.status();
}

TEST(TlsServerTest, IdleTlsConnectionGetsGoawayIdleTimeout) {
  TlsServerFixture f({.idle_timeout = 300ms});
  const auto start = std::chrono::steady_clock::now();
  absl::Status s = f.on_loop.t.run(echo_then_wait(f, nullptr));
  EXPECT_NE(s.message().find("GOAWAY(IDLE_TIMEOUT"), absl::string_view::npos) << s;
  EXPECT_LT(std::chrono::steady_clock::now() - start, 3s);
}

TEST(TlsServerTest, ShutdownSaysGoawayShutdownOverTls) {
  TlsServerFixture f({});
  absl::Status s = f.on_loop.t.run(echo_then_wait(f, &f.on_loop.server));
  EXPECT_NE(s.message().find("GOAWAY(SHUTDOWN"), absl::string_view::npos) << s;
  f.on_loop.stop();
  EXPECT_EQ(f.server_tls->stats().handshakes, 1u);
}

}  // namespace
}  // namespace coring::tls
