// asio_echo: the echo server a C++ user would write with standalone Asio 1.22
// and C++20 coroutines (co_spawn, awaitable, use_awaitable), single-threaded.
// Built twice (bench/baselines/CMakeLists.txt): asio_uring_echo with Asio's
// io_uring backend (ASIO_HAS_IO_URING + ASIO_DISABLE_EPOLL) and
// asio_epoll_echo with its default epoll reactor.
//
//   asio_uring_echo --port=0 [--host=127.0.0.1] [--sbmp]
//   -> "listening on 127.0.0.1:NNNNN" on stdout's first line
//
// Raw: read_some into a 16 KiB buffer, async_write it back. --sbmp: the same
// loop, with the received bytes scanned for SBMP frames (sbmp_wire.h: HELLO
// answered, headers checked, application frames echoed unchanged).
// SIGINT/SIGTERM: exit 0.
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "asio.hpp"
#include "asio/experimental/as_tuple.hpp"
#include "sbmp_wire.h"

namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;
using asio::ip::tcp;

constexpr size_t kBufferSize = 16384;

awaitable<void> echo_raw(tcp::socket socket) {
  std::array<char, kBufferSize> data;
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(data), as_tuple(use_awaitable));
    if (ec) co_return;
    auto [wec, w] =
        co_await asio::async_write(socket, asio::buffer(data.data(), n), as_tuple(use_awaitable));
    if (wec) co_return;
  }
}

awaitable<void> echo_sbmp(tcp::socket socket) {
  std::array<uint8_t, kBufferSize> data;
  sbmp_scanner scanner;
  sbmp_scanner_init(&scanner, SBMP_DEFAULT_MAX_FRAME);
  std::vector<asio::const_buffer> out;  // the ranges to echo from one read
  std::vector<uint8_t> copies;          // control answers and split headers
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(data), as_tuple(use_awaitable));
    if (ec) co_return;
    out.clear();
    copies.clear();
    // First collect where the copies go (copies may grow), then the ranges.
    struct Range {
      bool copy;
      size_t off, len;
    };
    std::array<Range, 64> ranges;
    size_t nranges = 0, pos = 0;
    bool close = false;
    sbmp_event ev;
    do {
      sbmp_scan(&scanner, data.data(), n, &pos, &ev);
      if (ev.kind == SBMP_EV_PASS) {
        ranges[nranges++] = {false, ev.off, ev.len};
      } else if (ev.kind != SBMP_EV_NEED_MORE) {
        ranges[nranges++] = {true, copies.size(), ev.len};
        copies.insert(copies.end(), ev.data, ev.data + ev.len);
        close = ev.kind == SBMP_EV_CLOSE;
      }
      if (nranges == ranges.size() || (close || ev.kind == SBMP_EV_NEED_MORE)) {
        for (size_t i = 0; i < nranges; ++i) {
          const Range& r = ranges[i];
          out.push_back(r.copy ? asio::const_buffer(copies.data() + r.off, r.len)
                               : asio::const_buffer(data.data() + r.off, r.len));
        }
        nranges = 0;
        if (!out.empty()) {
          auto [wec, w] = co_await asio::async_write(socket, out, as_tuple(use_awaitable));
          out.clear();
          copies.clear();
          if (wec) co_return;
        }
      }
    } while (ev.kind != SBMP_EV_NEED_MORE && !close);
    if (close) co_return;
  }
}

awaitable<void> listen(tcp::acceptor& acceptor, bool sbmp) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(as_tuple(use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      continue;  // e.g. EMFILE: that peer is refused
    }
    socket.set_option(tcp::no_delay(true));
    asio::co_spawn(acceptor.get_executor(),
                   sbmp ? echo_sbmp(std::move(socket)) : echo_raw(std::move(socket)),
                   asio::detached);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  unsigned short port = 0;
  bool sbmp = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--port=", 0) == 0) {
      port = static_cast<unsigned short>(std::atoi(a.c_str() + 7));
    } else if (a.rfind("--host=", 0) == 0) {
      host = a.substr(7);
    } else if (a == "--sbmp") {
      sbmp = true;
    } else {
      std::fprintf(stderr, "usage: %s [--port=N] [--host=ADDR] [--sbmp]\n", argv[0]);
      return a == "--help" ? 0 : 1;
    }
  }
  try {
    asio::io_context io(1);  // concurrency hint: one thread runs it
    tcp::acceptor acceptor(io);
    tcp::endpoint endpoint(asio::ip::make_address(host), port);
    acceptor.open(endpoint.protocol());
    acceptor.set_option(tcp::acceptor::reuse_address(true));
    acceptor.bind(endpoint);
    acceptor.listen(4096);
    std::printf("listening on %s:%u\n", host.c_str(), acceptor.local_endpoint().port());
    std::fflush(stdout);
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](const asio::error_code&, int) { io.stop(); });
    asio::co_spawn(io, listen(acceptor, sbmp), asio::detached);
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 1;
  }
  return 0;
}
