// Echo fixtures shared by the net/ tests: a framed echo handler, a client that
// pipelines frames of given sizes and checks every echoed byte, and a Server
// on a TestLoop that is shut down and drained when the fixture goes away.
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <utility>
#include <vector>

#include "coring/core/when_all.h"
#include "coring/net/server.h"
#include "length_prefix_codec.h"
#include "net_test_support.h"

namespace coring::net::testing {

inline Task<> echo(FramedStream<LengthPrefixCodec> conn) {
  for (;;) {
    auto f = co_await conn.read_frame();
    if (!f.ok()) co_return;
    if (!(co_await conn.write_frame(*f)).ok()) co_return;
  }
}

// Connects, writes frames of `sizes` (patterned payloads) while reading their
// echoes concurrently, checks every byte, then closes.
inline Task<absl::Status> client_echo(NetContext& net, SocketAddress addr,
                                      std::vector<size_t> sizes, ConnectOptions options = {}) {
  using Framed = FramedStream<LengthPrefixCodec>;
  auto c = co_await Stream::connect(net, addr, options);
  if (!c.ok()) co_return c.status();
  Framed conn(std::move(*c), LengthPrefixCodec());
  std::vector<std::vector<uint8_t>> msgs;
  for (size_t i = 0; i < sizes.size(); ++i) msgs.push_back(pattern(sizes[i], uint32_t(i)));
  auto writer = [](Framed& c, const std::vector<std::vector<uint8_t>>& m) -> Task<absl::Status> {
    for (const auto& msg : m) {
      if (auto s = co_await c.write_frame({absl::MakeConstSpan(msg)}); !s.ok()) co_return s;
    }
    co_return absl::OkStatus();
  };
  auto reader = [](Framed& c, const std::vector<std::vector<uint8_t>>& m) -> Task<absl::Status> {
    for (const auto& msg : m) {
      auto f = co_await c.read_frame();
      if (!f.ok()) co_return f.status();
      if (!std::equal(msg.begin(), msg.end(), f->payload.begin(), f->payload.end())) {
        co_return absl::DataLossError("echoed frame differs");
      }
    }
    co_return absl::OkStatus();
  };
  auto [w, r] = co_await when_all(writer(conn, msgs), reader(conn, msgs));
  (void)co_await conn.close();
  if (!w.ok()) co_return w;
  co_return r;
}

// A server on the test's loop; shut down (and drained) at the end.
struct ServerOnLoop {
  explicit ServerOnLoop(ServerOptions options = {.host = "127.0.0.1"},
                        LoopOptions loop_options = {})
      : t(std::move(loop_options)), server(std::vector<EventLoop*>{t.loop.get()}, options) {}
  ~ServerOnLoop() { stop(); }
  void stop() {
    server.begin_shutdown();
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (!server.finished() && std::chrono::steady_clock::now() < until) t.loop->run_once(false);
    EXPECT_TRUE(server.finished());
  }
  SocketAddress address() const {
    SocketAddress a = server.address();
    if (a.family() == SocketAddress::Family::kUnix) return a;
    return SocketAddress::ipv4_loopback(a.port());
  }
  TestLoop t;
  Server server;
};

}  // namespace coring::net::testing
