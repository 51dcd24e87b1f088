// Test fixtures shared by the net/ server and client tests: a framed echo
// handler and a Server on a TestLoop that is shut down and drained when the
// fixture goes away.
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <utility>
#include <vector>

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
