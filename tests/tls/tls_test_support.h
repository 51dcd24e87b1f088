// Shared helpers of the tls/ tests: a loop with a loopback listener whose
// connections get a TLS handshake and an SBMP echo (FramedStream<sbmp::Codec,
// TlsStream>), and a TLS SBMP client that checks every echo byte for byte.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_format.h"
#include "coring/codec/codec.h"
#include "coring/core/spawn.h"
#include "coring/core/when_all.h"
#include "coring/net/framed_stream.h"
#include "coring/net/listener.h"
#include "coring/tls/tls_context.h"
#include "coring/tls/tls_stream.h"
#include "net/net_test_support.h"
#include "tls/test_pki.h"

namespace coring::tls::testing {

using namespace std::chrono_literals;
using net::testing::pattern;
using net::testing::TestLoop;
using TlsConn = net::FramedStream<sbmp::Codec, TlsStream>;

constexpr uint16_t kEchoType = sbmp::kFirstApplicationType;

// What the server side saw of one connection.
struct ServerSide {
  absl::Status handshake;  // OK, or why the handshake failed
  absl::Status ended;      // why reading ended
  TlsInfo info;
  bool done = false;
};

inline Task<> tls_sbmp_echo(TlsContext& tls, net::Stream s, ServerSide* out) {
  absl::StatusOr<TlsStream> t = co_await TlsStream::accept(tls, std::move(s));
  if (!t.ok()) {
    out->handshake = t.status();
    out->done = true;
    co_return;
  }
  out->info = t->info();
  TlsConn conn(std::move(*t), sbmp::Codec());
  for (;;) {
    auto frame = co_await conn.read_frame();
    if (!frame.ok()) {
      out->ended = frame.status();
      break;
    }
    if (!(co_await conn.write_frame(*frame)).ok()) break;
  }
  (void)co_await conn.close();
  out->done = true;
}

inline Task<> tls_acceptor(net::Listener& l, TlsContext& tls, int count,
                           std::vector<ServerSide>* sides) {
  for (int i = 0; i < count; ++i) {
    auto s = co_await l.accept();
    if (!s.ok()) co_return;
    spawn(l.context().loop(), tls_sbmp_echo(tls, std::move(*s), &(*sides)[i]));
  }
}

// Echo of one SBMP frame per size over `conn`, writer and reader at once.
inline Task<absl::Status> echo_frames(TlsConn& conn, const std::vector<size_t>& sizes) {
  std::vector<std::vector<uint8_t>> msgs;
  for (size_t i = 0; i < sizes.size(); ++i) msgs.push_back(pattern(sizes[i], uint32_t(i + 7)));
  auto writer = [](TlsConn& c, const std::vector<std::vector<uint8_t>>& m) -> Task<absl::Status> {
    for (const auto& msg : m) {
      const sbmp::Frame f = sbmp::make_frame(kEchoType, msg);
      if (auto s = co_await c.write_frame(f); !s.ok()) co_return s;
    }
    co_return absl::OkStatus();
  };
  auto reader = [](TlsConn& c, const std::vector<std::vector<uint8_t>>& m) -> Task<absl::Status> {
    for (const auto& msg : m) {
      auto f = co_await c.read_frame();
      if (!f.ok()) co_return f.status();
      if (f->type() != kEchoType ||
          !std::equal(msg.begin(), msg.end(), f->payload.begin(), f->payload.end())) {
        co_return absl::DataLossError(
            absl::StrFormat("echo of a %d-byte frame differs", msg.size()));
      }
    }
    co_return absl::OkStatus();
  };
  auto [w, r] = co_await when_all(writer(conn, msgs), reader(conn, msgs));
  if (!w.ok()) co_return w;
  co_return r;
}

// Connects with TLS to `addr` as `name`, echoes `sizes`, closes; `info` gets
// what was negotiated.
inline Task<absl::Status> tls_sbmp_client(net::NetContext& net, TlsContext& tls,
                                          net::SocketAddress addr, std::string name,
                                          std::vector<size_t> sizes, TlsInfo* info = nullptr) {
  absl::StatusOr<TlsStream> t = co_await TlsStream::connect(tls, net, addr, std::move(name));
  if (!t.ok()) co_return t.status();
  if (info != nullptr) *info = t->info();
  const sbmp::CodecOptions hello{.role = sbmp::Role::kClient};
  TlsConn conn(std::move(*t), sbmp::Codec(hello));
  if (absl::Status s = co_await conn.flush_output(); !s.ok()) co_return s;
  absl::Status s = co_await echo_frames(conn, sizes);
  (void)co_await conn.close();
  co_return s;
}

// A file that exists for the test's length (a fake ULP list).
class TempFile {
 public:
  explicit TempFile(const std::string& contents) {
    char tmpl[] = "/tmp/coring-ulp-XXXXXX";
    const int fd = ::mkstemp(tmpl);
    EXPECT_GE(fd, 0);
    ::close(fd);
    path_ = tmpl;
    std::ofstream(path_) << contents;
  }
  ~TempFile() { ::unlink(path_.c_str()); }
  TempFile(const TempFile&) = delete;
  TempFile& operator=(const TempFile&) = delete;
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A loop, a loopback listener and the two TLS contexts.
struct TlsFixture {
  explicit TlsFixture(TlsOptions server_options = {}, TlsOptions client_options = {},
                      LoopOptions loop_options = {})
      : t(std::move(loop_options)) {
    if (server_options.cert_file.empty()) {
      server_options.cert_file = pki.path("server.pem");
      server_options.key_file = pki.path("server.key");
    }
    if (client_options.ca_file.empty()) client_options.ca_file = pki.path("ca.pem");
    auto s = TlsContext::server(server_options);
    EXPECT_TRUE(s.ok()) << s.status();
    if (s.ok()) server_tls = std::move(*s);
    auto c = TlsContext::client(client_options);
    EXPECT_TRUE(c.ok()) << c.status();
    if (c.ok()) client_tls = std::move(*c);
    auto l = net::Listener::bind(*t.net, net::SocketAddress::ipv4_loopback(0));
    EXPECT_TRUE(l.ok()) << l.status();
    listener = std::move(*l);
    addr = *listener->local_address();
  }
  ~TlsFixture() {
    t.drain();
    listener.reset();
  }
  // Serves `count` connections with the TLS SBMP echo.
  void serve(int count) {
    sides.resize(count);
    spawn(*t.loop, tls_acceptor(*listener, *server_tls, count, &sides));
  }
  // Runs the loop until server side `i` is done (bounded).
  void wait_server(size_t i, std::chrono::milliseconds limit = 5000ms) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (!sides[i].done && std::chrono::steady_clock::now() < until) t.loop->run_once(false);
    EXPECT_TRUE(sides[i].done) << "server side " << i << " did not finish";
  }

  TestPki pki;
  std::vector<ServerSide> sides;  // written by handlers: outlives the loop
  TestLoop t;
  std::unique_ptr<TlsContext> server_tls;
  std::unique_ptr<TlsContext> client_tls;
  std::unique_ptr<net::Listener> listener;
  net::SocketAddress addr = net::SocketAddress::ipv4_loopback(0);
};

}  // namespace coring::tls::testing
