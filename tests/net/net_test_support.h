// Shared helpers of the net/ tests: a loop with a NetContext (and one with a
// registered BufferArena), byte patterns, and a Stream echo handler.
#pragma once

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "coring/core/event_loop.h"
#include "coring/core/spawn.h"
#include "coring/core/task.h"
#include "coring/net/listener.h"
#include "coring/net/net_context.h"
#include "coring/net/stream.h"
#include "coring/net/unique_fd.h"
#include "coring/pool/buffer_arena.h"

namespace coring::net::testing {

struct TestLoop {
  explicit TestLoop(LoopOptions loop_options = {}, NetOptions net_options = {}) {
    auto l = EventLoop::create(std::move(loop_options));
    EXPECT_TRUE(l.ok()) << l.status();
    loop = std::move(*l);
    auto n = NetContext::create(*loop, net_options);
    EXPECT_TRUE(n.ok()) << n.status();
    net = std::move(*n);
  }
  ~TestLoop() {
    drain();
    net.reset();
    loop.reset();
  }
  // Runs the loop until every stream of `net` is gone (bounded: 5 s), so
  // that handlers finish before what they use is destroyed.
  void drain() {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (net->live_streams() > 0 && std::chrono::steady_clock::now() < until) {
      loop->run_once(false);
      if (net->live_streams() > 0) std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    EXPECT_EQ(net->live_streams(), 0u) << "streams still open at the end of the test";
  }
  template <class T>
  T run(Task<T> task) {
    return loop->block_on(std::move(task));
  }

  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<NetContext> net;
};

// A plain (blocking, non-io_uring) listening socket on loopback: the peer of
// the streams under test, so that what it sees is what the kernel did.
struct PlainListener {
  explicit PlainListener(int backlog = 16) {
    fd = UniqueFd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(a);
    EXPECT_EQ(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0);
    EXPECT_EQ(::listen(fd.get(), backlog), 0);
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
    address = SocketAddress::ipv4_loopback(ntohs(a.sin_port));
  }
  // A connection the kernel completed already (connect() returned).
  UniqueFd accept() { return UniqueFd(::accept4(fd.get(), nullptr, nullptr, SOCK_CLOEXEC)); }

  UniqueFd fd;
  SocketAddress address = SocketAddress::ipv4_loopback(0);
};

// A loop whose BufferArena is registered, and a NetContext whose receive
// ring is carved from it (so received payloads lie in registered memory).
struct RegisteredLoop {
  explicit RegisteredLoop(NetOptions net_options = {}, uint32_t big_buffers = 16) {
    auto a = pool::BufferArena::create({.name = "coring.net_send_test.v1",
                                        .classes = {{4096, 64}, {65536, big_buffers}},
                                        .carve_bytes = 1 << 20});
    EXPECT_TRUE(a.ok()) << a.status();
    arena = std::make_unique<pool::BufferArena>(std::move(*a));
    LoopOptions lo;
    lo.arena = arena.get();
    auto l = EventLoop::create(std::move(lo));
    EXPECT_TRUE(l.ok()) << l.status();
    loop = std::move(*l);
    EXPECT_TRUE(loop->buffers_registered());
    net_options.recv_buffers = 64;
    net_options.recv_buffer_size = 16 * 1024;
    auto n = NetContext::create(*loop, net_options);
    EXPECT_TRUE(n.ok()) << n.status();
    net = std::move(*n);
  }
  ~RegisteredLoop() {
    const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (net->live_streams() > 0 && std::chrono::steady_clock::now() < until) {
      loop->run_once(false);
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    EXPECT_EQ(net->live_streams(), 0u);
    net.reset();
    loop.reset();
    EXPECT_EQ(arena->stats().in_use, 0u) << "a send buffer was not given back";
  }
  template <class T>
  T run(Task<T> task) {
    return loop->block_on(std::move(task));
  }

  std::unique_ptr<pool::BufferArena> arena;
  std::unique_ptr<EventLoop> loop;
  std::unique_ptr<NetContext> net;
};

inline std::vector<uint8_t> pattern(size_t n, uint32_t seed = 1) {
  std::vector<uint8_t> v(n);
  uint32_t x = seed * 2654435761u + 1;
  for (size_t i = 0; i < n; ++i) {
    x = x * 1664525u + 1013904223u;
    v[i] = static_cast<uint8_t>(x >> 24);
  }
  return v;
}

// Echoes bytes until EOF, then closes.
inline Task<> echo_handler(Stream s) {
  for (;;) {
    absl::StatusOr<RecvBuffer> buf = co_await s.read();
    if (!buf.ok() || buf->empty()) break;
    if (!(co_await s.write(buf->span())).ok()) break;
  }
  (void)co_await s.close();
}

// Echoes by handing each received buffer to the send queue
// (Stream::write(RecvBuffer&&), as examples/net/echo_server does).
inline Task<> handover_handler(Stream s) {
  for (;;) {
    absl::StatusOr<RecvBuffer> buf = co_await s.read();
    if (!buf.ok() || buf->empty()) break;
    if (!(co_await s.write(std::move(*buf))).ok()) break;
  }
  (void)co_await s.close();
}

// Accepts `count` connections (or until cancelled), each served by
// `handler` (echo_handler: copied echoes; handover_handler: handed over).
inline Task<> echo_acceptor(Listener& listener, int count,
                            Task<> (*handler)(Stream) = echo_handler) {
  for (int i = 0; i < count; ++i) {
    absl::StatusOr<Stream> s = co_await listener.accept();
    if (!s.ok()) co_return;
    spawn(listener.context().loop(), handler(std::move(*s)));
  }
}

// Reads exactly `n` bytes into `out` (appending).
inline Task<absl::Status> read_exactly(Stream& s, size_t n, std::vector<uint8_t>& out) {
  while (n > 0) {
    absl::StatusOr<RecvBuffer> buf = co_await s.read();
    if (!buf.ok()) co_return buf.status();
    if (buf->empty()) co_return absl::DataLossError("EOF before all bytes arrived");
    const size_t take = std::min(n, buf->size());
    out.insert(out.end(), buf->data(), buf->data() + buf->size());
    n -= take;
    if (take < buf->size()) co_return absl::DataLossError("more bytes than expected");
  }
  co_return absl::OkStatus();
}

}  // namespace coring::net::testing
