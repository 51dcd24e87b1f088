// TLS against peers nobody here wrote: `openssl s_server` / `openssl
// s_client` (Debian's openssl package) and Python's ssl module
// (tls_peer.py), as child processes on loopback with a CA made at test time.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "child_process.h"
#include "coring/tls/tls_stream.h"
#include "tls/tls_test_support.h"

namespace coring::tls {
namespace {

using namespace std::chrono_literals;
using coring::testing::ChildProcess;
using testing::TlsFixture;

// A loopback port nobody listens on right now (the child binds it next).
uint16_t free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// Waits until something listens on 127.0.0.1:`port` (/proc/net/tcp, so no
// connection is used up); false after `timeout`.
bool wait_listening(uint16_t port, std::chrono::milliseconds timeout) {
  const std::string local = absl::StrFormat("0100007F:%04X", port);
  for (auto end = std::chrono::steady_clock::now() + timeout;
       std::chrono::steady_clock::now() < end; std::this_thread::sleep_for(10ms)) {
    std::ifstream tcp("/proc/net/tcp");
    std::string sl, local_address, remote_address, state, rest;
    std::getline(tcp, rest);  // the column names
    while (tcp >> sl >> local_address >> remote_address >> state && std::getline(tcp, rest)) {
      if (local_address == local && state == "0A") return true;  // TCP_LISTEN
    }
  }
  return false;
}

// Raw TLS echo: echoes what arrives; with `until_newline`, closes (with
// close_notify) once a newline was echoed.
Task<> raw_tls_echo(TlsContext& tls, net::Listener& l, bool until_newline,
                    testing::ServerSide* out) {
  auto s = co_await l.accept();
  if (!s.ok()) {
    out->handshake = s.status();
    out->done = true;
    co_return;
  }
  auto t = co_await TlsStream::accept(tls, std::move(*s));
  if (!t.ok()) {
    out->handshake = t.status();
    out->done = true;
    co_return;
  }
  out->info = t->info();
  for (;;) {
    auto buf = co_await t->read();
    if (!buf.ok() || buf->empty()) {
      if (!buf.ok()) out->ended = buf.status();
      break;
    }
    const bool newline =
        std::find(buf->span().begin(), buf->span().end(), '\n') != buf->span().end();
    if (!(co_await t->write(buf->span())).ok()) break;
    if (until_newline && newline) break;
  }
  (void)co_await t->close();
  out->done = true;
}

void write_file(const std::string& path, const std::string& contents) {
  std::ofstream(path) << contents;
}

void run_until_done(TlsFixture& f, testing::ServerSide& side, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (!side.done && std::chrono::steady_clock::now() < until) f.t.loop->run_once(false);
  EXPECT_TRUE(side.done) << "the coring server did not finish";
}

TEST(TlsInteropTest, OpensslClientAgainstCoringServer) {
  TlsFixture f;
  f.sides.resize(1);
  spawn(*f.t.loop, raw_tls_echo(*f.server_tls, *f.listener, true, &f.sides[0]));
  // exec: the child is s_client itself, so the test's kill reaches it.
  write_file(f.pki.path("input.txt"), "hello coring\n");
  const std::string cmd = absl::StrFormat(
      "exec openssl s_client -connect 127.0.0.1:%d -CAfile %s -verify_return_error "
      "-verify_hostname localhost -servername localhost -quiet -ign_eof < %s",
      f.addr.port(), f.pki.path("ca.pem"), f.pki.path("input.txt"));
  ChildProcess client({"/bin/sh", "-c", cmd});
  run_until_done(f, f.sides[0], 10s);
  EXPECT_TRUE(f.sides[0].handshake.ok()) << f.sides[0].handshake;
  const std::string out = client.read_all(10s);
  EXPECT_NE(out.find("hello coring"), std::string::npos) << out;
  EXPECT_EQ(client.wait(10s), 0);
}

TEST(TlsInteropTest, OpensslClientWithTheWrongCaIsRefused) {
  TlsFixture f;
  f.sides.resize(1);
  spawn(*f.t.loop, raw_tls_echo(*f.server_tls, *f.listener, true, &f.sides[0]));
  write_file(f.pki.path("input.txt"), "x\n");
  const std::string cmd = absl::StrFormat(
      "exec openssl s_client -connect 127.0.0.1:%d -CAfile %s -verify_return_error "
      "-servername localhost -quiet < %s 2>&1",
      f.addr.port(), f.pki.path("other_ca.pem"), f.pki.path("input.txt"));
  ChildProcess client({"/bin/sh", "-c", cmd});
  run_until_done(f, f.sides[0], 10s);
  // s_client's alert (unknown CA) is the reason the server gives.
  EXPECT_TRUE(absl::IsUnauthenticated(f.sides[0].handshake)) << f.sides[0].handshake;
  EXPECT_NE(f.sides[0].handshake.message().find("unknown ca"), absl::string_view::npos)
      << f.sides[0].handshake;
  EXPECT_NE(client.wait(10s), 0);
}

TEST(TlsInteropTest, CoringClientAgainstOpensslServer) {
  TlsFixture f;
  const uint16_t port = free_port();
  ChildProcess server({"/usr/bin/openssl", "s_server", "-accept", absl::StrCat("127.0.0.1:", port),
                       "-cert", f.pki.path("server.pem"), "-key", f.pki.path("server.key"), "-rev",
                       "-naccept", "1"});
  for (std::string l = server.read_line(10s); l.find("ACCEPT") == std::string::npos;
       l = server.read_line(10s)) {
    ASSERT_FALSE(l.empty()) << "openssl s_server did not start";
  }
  auto addr = net::SocketAddress::ipv4_loopback(port);
  auto got =
      f.t.run([](TlsFixture& f, net::SocketAddress addr) -> Task<absl::StatusOr<std::string>> {
        auto t = co_await TlsStream::connect(*f.client_tls, *f.t.net, addr, "localhost");
        if (!t.ok()) co_return t.status();
        const std::string line = "hello coring\n";
        if (auto s = co_await t->write(
                absl::MakeConstSpan(reinterpret_cast<const uint8_t*>(line.data()), line.size()));
            !s.ok()) {
          co_return s;
        }
        std::string back;
        while (back.find('\n') == std::string::npos) {
          auto buf = co_await t->read();
          if (!buf.ok()) co_return buf.status();
          if (buf->empty()) break;
          back.append(reinterpret_cast<const char*>(buf->data()), buf->size());
        }
        (void)co_await t->close();
        co_return back;
      }(f, addr));
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_NE(got->find("gniroc olleh"), std::string::npos) << *got;  // -rev: reversed
}

TEST(TlsInteropTest, CoringClientRefusesOpensslServerForAnotherName) {
  TlsFixture f;
  const uint16_t port = free_port();
  ChildProcess server({"/usr/bin/openssl", "s_server", "-accept", absl::StrCat("127.0.0.1:", port),
                       "-cert", f.pki.path("server.pem"), "-key", f.pki.path("server.key"),
                       "-naccept", "1", "-quiet"});
  // -quiet prints no ACCEPT line. (A fixed 300 ms sleep was sometimes too
  // short under a parallel ctest: the connect was refused.)
  ASSERT_TRUE(wait_listening(port, 10s)) << "openssl s_server did not start";
  auto addr = net::SocketAddress::ipv4_loopback(port);
  absl::Status s = f.t.run([](TlsFixture& f, net::SocketAddress addr) -> Task<absl::Status> {
    auto t = co_await TlsStream::connect(*f.client_tls, *f.t.net, addr, "other.example");
    co_return t.status();
  }(f, addr));
  EXPECT_TRUE(absl::IsUnauthenticated(s)) << s;
  EXPECT_NE(s.message().find("hostname mismatch"), absl::string_view::npos) << s;
}

TEST(TlsInteropTest, PythonClientEchoesEverySizeThroughCoringServer) {
  TlsFixture f;
  f.sides.resize(1);
  spawn(*f.t.loop, raw_tls_echo(*f.server_tls, *f.listener, false, &f.sides[0]));
  std::vector<std::string> argv = {
      "/usr/bin/python3",   CORING_TLS_PEER_PY, "client", std::to_string(f.addr.port()),
      f.pki.path("ca.pem"), "localhost"};
  for (size_t n : {0, 1, 100, 4095, 16384, 16385, 65536, 100000, 1 << 20, 3}) {
    argv.push_back(std::to_string(n));
  }
  ChildProcess client(argv, /*with_stderr=*/true);
  run_until_done(f, f.sides[0], 20s);
  EXPECT_TRUE(f.sides[0].handshake.ok()) << f.sides[0].handshake;
  EXPECT_TRUE(f.sides[0].ended.ok()) << f.sides[0].ended;
  const std::string out = client.read_all(10s);
  EXPECT_NE(out.find("ok TLSv1.3"), std::string::npos) << out;
  EXPECT_EQ(client.wait(10s), 0);
}

TEST(TlsInteropTest, CoringSbmpClientThroughPythonServer) {
  TlsFixture f;
  ChildProcess server({"/usr/bin/python3", CORING_TLS_PEER_PY, "server", f.pki.path("server.pem"),
                       f.pki.path("server.key")});
  const std::string line = server.read_line(10s);
  ASSERT_EQ(line.rfind("listening ", 0), 0u) << line;
  const auto port = static_cast<uint16_t>(std::stoi(line.substr(10)));
  // Python echoes bytes: SBMP frames come back as sent. No HELLO (its echo
  // would be a HELLO to a client).
  absl::Status s = f.t.run([](TlsFixture& f, uint16_t port) -> Task<absl::Status> {
    auto t = co_await TlsStream::connect(*f.client_tls, *f.t.net,
                                         net::SocketAddress::ipv4_loopback(port), "localhost");
    if (!t.ok()) co_return t.status();
    const sbmp::CodecOptions options{.role = sbmp::Role::kClient, .send_hello = false};
    testing::TlsConn conn(std::move(*t), sbmp::Codec(options));
    const std::vector<size_t> sizes = {0, 1, 100, 4095, 16384, 16385, 65536, 100000, 1 << 20, 3};
    absl::Status s = co_await testing::echo_frames(conn, sizes);
    (void)co_await conn.stream().close();
    co_return s;
  }(f, port));
  EXPECT_TRUE(s.ok()) << s;
}

}  // namespace
}  // namespace coring::tls
