// Helpers for the ring/loop tests: loops, socket pairs, TCP listeners.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <memory>
#include <thread>

#include "coring/core/event_loop.h"

namespace coring::testing {

inline std::unique_ptr<EventLoop> make_loop(LoopOptions options = {}) {
  auto loop = EventLoop::create(std::move(options));
  EXPECT_TRUE(loop.ok()) << loop.status();
  return loop.ok() ? std::move(*loop) : nullptr;
}

// Runs iterations until `done()` (at most `max_iterations`, blocking ones).
inline bool run_until(EventLoop& loop, const std::function<bool()>& done,
                      int max_iterations = 10000) {
  for (int i = 0; i < max_iterations && !done(); ++i) loop.run_once(true);
  return done();
}

// Non-blocking iterations until `done()`, sleeping 1 ms between them (at
// most about `max_ms`): for a loop whose next event may come from another
// thread, or whose armed ops may never complete, so that it never blocks.
inline bool poll_until(EventLoop& loop, const std::function<bool()>& done, int max_ms = 2000) {
  for (int i = 0; i < max_ms && !done(); ++i) {
    loop.run_once(false);
    if (!done()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return done();
}

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

inline std::pair<Fd, Fd> socket_pair() {
  int fds[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
  return {Fd(fds[0]), Fd(fds[1])};
}

// A loopback TCP listener on a free port.
inline Fd listen_loopback(uint16_t* port) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  EXPECT_EQ(::bind(s.fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  EXPECT_EQ(::listen(s.fd, 64), 0);
  socklen_t len = sizeof(addr);
  EXPECT_EQ(::getsockname(s.fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  *port = ntohs(addr.sin_port);
  return s;
}

inline sockaddr_in loopback_addr(uint16_t port) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  return addr;
}

}  // namespace coring::testing
