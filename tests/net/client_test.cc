// Tests of net/client.h: framed echo through an in-process Server with the
// test length-prefix codec, the codec's opening bytes sent at connect,
// connect refused and connect deadline errors, and SBMP with HELLO + CRC32C
// against an in-process SBMP echo server (echoes carry CHK once negotiated).
#include "coring/net/client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <vector>

#include "coring/core/when_all.h"
#include "coring/net/listen_socket.h"
#include "coring/net/listener.h"
#include "coring/net/server.h"
#include "coring/net/unique_fd.h"
#include "echo_fixtures.h"
#include "length_prefix_codec.h"
#include "net_test_support.h"
#include "sbmp_test_support.h"

namespace coring::net {
namespace {

using namespace std::chrono_literals;
using testing::LengthPrefixCodec;
using testing::pattern;
using testing::TestLoop;
using Framed = FramedStream<LengthPrefixCodec>;

using testing::echo;
using testing::ServerOnLoop;

// Writes every message, reads each echo back, closes.
Task<absl::Status> echo_round(const Client& client, std::vector<size_t> sizes, uint32_t seed) {
  absl::StatusOr<Framed> conn = co_await client.connect(LengthPrefixCodec());
  if (!conn.ok()) co_return conn.status();
  for (size_t i = 0; i < sizes.size(); ++i) {
    const std::vector<uint8_t> msg = pattern(sizes[i], seed + uint32_t(i));
    if (auto s = co_await conn->write_frame({absl::MakeConstSpan(msg)}); !s.ok()) co_return s;
    auto f = co_await conn->read_frame();
    if (!f.ok()) co_return f.status();
    if (!std::equal(msg.begin(), msg.end(), f->payload.begin(), f->payload.end())) {
      co_return absl::DataLossError("echo differs");
    }
  }
  co_return co_await conn->close();
}

TEST(ClientTest, FramedEchoThroughServer) {
  ServerOnLoop s;
  ASSERT_TRUE(s.server.serve<LengthPrefixCodec>(echo).ok());
  const Client client(*s.t.net, s.address(), {.connect_timeout = 2s});
  std::vector<Task<absl::Status>> rounds;
  for (uint32_t i = 0; i < 3; ++i) rounds.push_back(echo_round(client, {0, 1, 100, 70000}, i));
  const std::vector<absl::Status> results = s.t.run(when_all(std::move(rounds)));
  for (const absl::Status& r : results) EXPECT_TRUE(r.ok()) << r;
  EXPECT_EQ(s.server.stats().accepted, 3u);
}

TEST(ClientTest, ConnectFramedFreeFunction) {
  ServerOnLoop s;
  ASSERT_TRUE(s.server.serve<LengthPrefixCodec>(echo).ok());
  absl::Status r = s.t.run([](NetContext& net, SocketAddress addr) -> Task<absl::Status> {
    auto conn = co_await connect_framed(net, addr, LengthPrefixCodec());
    if (!conn.ok()) co_return conn.status();
    const std::vector<uint8_t> msg = pattern(5000);
    if (auto st = co_await conn->write_frame({absl::MakeConstSpan(msg)}); !st.ok()) co_return st;
    auto f = co_await conn->read_frame();
    if (!f.ok()) co_return f.status();
    if (!std::equal(msg.begin(), msg.end(), f->payload.begin(), f->payload.end())) {
      co_return absl::DataLossError("echo differs");
    }
    co_return co_await conn->close();
  }(*s.t.net, s.address()));
  EXPECT_TRUE(r.ok()) << r;
}

// The length-prefix codec with bytes queued at construction, as a client
// codec that opens with a handshake queues them (SBMP: HELLO).
class OpeningCodec : public LengthPrefixCodec {
 public:
  explicit OpeningCodec(std::vector<uint8_t> opening) : opening_(std::move(opening)) {}
  absl::Span<const uint8_t> pending_output() const {
    if (sent_ < opening_.size()) return absl::MakeConstSpan(opening_).subspan(sent_);
    return LengthPrefixCodec::pending_output();
  }
  void consume_output(size_t n) {
    if (sent_ < opening_.size()) {
      sent_ += n;
    } else {
      LengthPrefixCodec::consume_output(n);
    }
  }

 private:
  std::vector<uint8_t> opening_;
  size_t sent_ = 0;
};
static_assert(FrameCodec<OpeningCodec>);

TEST(ClientTest, CodecOpeningIsSentAtConnect) {
  TestLoop t;
  auto l = Listener::bind(*t.net, SocketAddress::ipv4_loopback(0));
  ASSERT_TRUE(l.ok()) << l.status();
  std::unique_ptr<Listener> listener = std::move(*l);
  const SocketAddress addr = *listener->local_address();
  absl::Status r =
      t.run([](NetContext& net, Listener& listener, SocketAddress addr) -> Task<absl::Status> {
        std::array<uint8_t, 4> ping;
        testing::put_be32(ping.data(), testing::kPing);
        auto conn = co_await connect_framed(
            net, addr, OpeningCodec(std::vector<uint8_t>(ping.begin(), ping.end())));
        if (!conn.ok()) co_return conn.status();
        auto server = co_await listener.accept();
        if (!server.ok()) co_return server.status();
        // The opening arrives although the client has written no frame yet.
        std::vector<uint8_t> got;
        if (auto st = co_await testing::read_exactly(*server, 4, got); !st.ok()) co_return st;
        if (testing::get_be32(got.data()) != testing::kPing) {
          co_return absl::DataLossError("no opening PING");
        }
        // The connection works as usual afterwards.
        const std::vector<uint8_t> msg = pattern(10);
        const std::vector<uint8_t> frame = testing::lp_frame(msg);
        if (auto st = co_await server->write(absl::MakeConstSpan(frame)); !st.ok()) co_return st;
        auto f = co_await conn->read_frame();
        if (!f.ok()) co_return f.status();
        if (!std::equal(msg.begin(), msg.end(), f->payload.begin(), f->payload.end())) {
          co_return absl::DataLossError("frame differs");
        }
        (void)co_await server->close();  // first, so the client's graceful close sees EOF at once
        (void)co_await conn->close();
        co_return absl::OkStatus();
      }(*t.net, *listener, addr));
  EXPECT_TRUE(r.ok()) << r;
  t.drain();
}

// A loopback port with a socket bound to it but not listening: connecting
// to it is refused (RST), and no other test can take the port meanwhile.
struct RefusingPort {
  RefusingPort() {
    fd = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    EXPECT_TRUE(fd);
    const SocketAddress any = SocketAddress::ipv4_loopback(0);
    EXPECT_EQ(::bind(fd.get(), any.data(), any.size()), 0);
    auto local = SocketAddress::local_of(fd.get());
    EXPECT_TRUE(local.ok()) << local.status();
    port = local.ok() ? local->port() : 0;
  }
  UniqueFd fd;
  uint16_t port = 0;
};

TEST(ClientTest, ConnectRefusedIsAClearError) {
  RefusingPort refusing;
  ASSERT_NE(refusing.port, 0);
  TestLoop t;
  const Client client(*t.net, SocketAddress::ipv4_loopback(refusing.port));
  absl::StatusOr<Framed> framed = t.run(client.connect(LengthPrefixCodec()));
  ASSERT_FALSE(framed.ok());
  EXPECT_TRUE(absl::IsUnavailable(framed.status())) << framed.status();
  EXPECT_NE(framed.status().message().find("ECONNREFUSED"), std::string_view::npos)
      << framed.status();
  EXPECT_NE(framed.status().message().find(client.address().to_string()), std::string_view::npos)
      << framed.status();
  absl::StatusOr<Stream> raw = t.run(client.connect_stream());
  ASSERT_FALSE(raw.ok());
  EXPECT_NE(raw.status().message().find("ECONNREFUSED"), std::string_view::npos) << raw.status();
  EXPECT_EQ(t.net->live_streams(), 0u);
}

// A listener with backlog 1 that never accepts: once its accept queue is
// full (two connections on Linux), the kernel drops further SYNs, so a connect hangs in
// SYN retransmission until the client's deadline.
TEST(ClientTest, ConnectDeadlineExceeded) {
  auto listening = listen_socket(SocketAddress::ipv4_loopback(0), {.backlog = 1});
  ASSERT_TRUE(listening.ok()) << listening.status();
  auto addr = SocketAddress::local_of(listening->get());
  ASSERT_TRUE(addr.ok()) << addr.status();
  std::vector<UniqueFd> fillers;
  bool full = false;
  for (int i = 0; i < 8 && !full; ++i) {
    UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    ASSERT_TRUE(fd);
    const int r = ::connect(fd.get(), addr->data(), addr->size());
    ASSERT_TRUE(r == 0 || errno == EINPROGRESS) << std::strerror(errno);
    pollfd p{fd.get(), POLLOUT, 0};
    full = r != 0 && ::poll(&p, 1, 200) == 0;  // still connecting: its SYN was dropped
    fillers.push_back(std::move(fd));
  }
  if (!full) GTEST_SKIP() << "the accept queue never filled up; cannot test the deadline";

  TestLoop t;
  const Client client(*t.net, *addr, {.connect_timeout = 100ms});
  const auto start = std::chrono::steady_clock::now();
  absl::StatusOr<Framed> framed = t.run(client.connect(LengthPrefixCodec()));
  const auto took = std::chrono::steady_clock::now() - start;
  ASSERT_FALSE(framed.ok());
  EXPECT_TRUE(absl::IsDeadlineExceeded(framed.status())) << framed.status();
  EXPECT_NE(framed.status().message().find(addr->to_string()), std::string_view::npos)
      << framed.status();
  EXPECT_LT(took, 5s);  // the deadline, not the kernel's SYN retries, ended it
  EXPECT_EQ(t.net->live_streams(), 0u);
}

// ---- SBMP: a client-role sbmp::Codec against the in-process echo server ----

using SbmpConn = FramedStream<sbmp::Codec>;
constexpr uint16_t kType = sbmp::kFirstApplicationType;

struct SbmpResult {
  absl::Status status;
  bool established_at_connect = true;
  bool established_after_echo = false;
  bool negotiated_chk = false;
  std::vector<bool> echo_chk;  // per echoed frame
};

Task<SbmpResult> sbmp_round(const Client& client, bool hello) {
  SbmpResult out;
  // (A local, not a temporary in the co_await: GCC 12 mishandles such temporaries.)
  const sbmp::CodecOptions options{
      .role = sbmp::Role::kClient, .features = sbmp::kFeatureCrc32c, .send_hello = hello};
  auto conn = co_await client.connect(sbmp::Codec(options));
  if (!conn.ok()) {
    out.status = conn.status();
    co_return out;
  }
  out.established_at_connect = conn->codec().established();
  for (uint64_t i = 0; i < 3; ++i) {
    const std::vector<uint8_t> payload = pattern(100 + 1000 * i, uint32_t(i));
    sbmp::ExtensionBuilder ext;
    ext.set_request_id(i);
    if (auto s = co_await conn->write_frame(sbmp::make_frame(kType, payload, ext.view()));
        !s.ok()) {
      out.status = s;
      co_return out;
    }
    auto f = co_await conn->read_frame();
    if (!f.ok()) {
      out.status = f.status();
      co_return out;
    }
    if (f->type() != kType || f->extensions.request_id() != i ||
        !std::equal(payload.begin(), payload.end(), f->payload.begin(), f->payload.end())) {
      out.status = absl::DataLossError(absl::StrFormat("echo %d differs", i));
      co_return out;
    }
    out.echo_chk.push_back(f->chk());
    if (i == 0) out.established_after_echo = conn->codec().established();
  }
  out.negotiated_chk = conn->codec().settings().chk();
  out.status = co_await conn->close();
  co_return out;
}

TEST(ClientTest, SbmpHelloNegotiatesCrc32c) {
  sbmp_testing::SbmpEchoServer server;
  ASSERT_TRUE(server.status.ok()) << server.status;
  TestLoop t;
  const Client client(*t.net, SocketAddress::ipv4_loopback(server.port()));
  const SbmpResult r = t.run(sbmp_round(client, /*hello=*/true));
  ASSERT_TRUE(r.status.ok()) << r.status;
  // connect() does not wait for HELLO_ACK; read_frame() consumed it.
  EXPECT_FALSE(r.established_at_connect);
  EXPECT_TRUE(r.established_after_echo);
  EXPECT_TRUE(r.negotiated_chk);
  EXPECT_EQ(r.echo_chk, std::vector<bool>({true, true, true}));
  t.drain();
}

TEST(ClientTest, SbmpWithoutHelloHasNoChk) {
  sbmp_testing::SbmpEchoServer server;
  ASSERT_TRUE(server.status.ok()) << server.status;
  TestLoop t;
  const Client client(*t.net, SocketAddress::ipv4_loopback(server.port()));
  const SbmpResult r = t.run(sbmp_round(client, /*hello=*/false));
  ASSERT_TRUE(r.status.ok()) << r.status;
  EXPECT_TRUE(r.established_at_connect);  // defaults, nothing to negotiate
  EXPECT_FALSE(r.negotiated_chk);
  EXPECT_EQ(r.echo_chk, std::vector<bool>({false, false, false}));
  t.drain();
}

}  // namespace
}  // namespace coring::net
