// asio_echo: the echo server a C++ user would write with standalone Asio 1.22
// and C++20 coroutines (co_spawn, awaitable, use_awaitable), single-threaded.
// Built twice (bench/baselines/CMakeLists.txt): asio_uring_echo with Asio's
// io_uring backend (ASIO_HAS_IO_URING + ASIO_DISABLE_EPOLL) and
// asio_epoll_echo with its default epoll reactor; and a third time, with
// ASIO_ECHO_TLS, as asio_tls_echo: asio::ssl (OpenSSL 3, TLS 1.3) on the
// epoll reactor, the TLS server an Asio user would write.
//
//   asio_uring_echo --port=0 [--host=127.0.0.1] [--sbmp]
//   asio_tls_echo --port=0 --tls_cert=CERT.pem --tls_key=KEY.pem [--sbmp]
//   -> "listening on 127.0.0.1:NNNNN" on stdout's first line
//
// Raw: read_some into a buffer of 16 KiB + 512 B (as big as coring's receive
// buffers, NetOptions::recv_buffer_size, so that both read as much per
// recv), async_write it back. --sbmp: the same loop, with the received bytes
// scanned for SBMP frames (sbmp_wire.h: HELLO answered, headers checked,
// application frames echoed unchanged).
// SIGINT/SIGTERM: exit 0.
#include <array>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "asio.hpp"
#include "asio/experimental/as_tuple.hpp"
#include "cli_number.h"
#include "sbmp_wire.h"
#ifdef ASIO_ECHO_TLS
#include "asio/ssl.hpp"
#endif

namespace {

using asio::awaitable;
using asio::use_awaitable;
using asio::experimental::as_tuple;
using asio::ip::tcp;

constexpr size_t kBufferSize = 16 * 1024 + 512;

template <class Socket>
awaitable<void> echo_raw(Socket socket) {
  std::array<char, kBufferSize> data;
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(data), as_tuple(use_awaitable));
    if (ec) co_return;
    auto [wec, w] =
        co_await asio::async_write(socket, asio::buffer(data.data(), n), as_tuple(use_awaitable));
    if (wec) co_return;
  }
}

template <class Socket>
awaitable<void> echo_sbmp(Socket socket) {
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

#ifdef ASIO_ECHO_TLS
using TlsSocket = asio::ssl::stream<tcp::socket>;

// The handshake first (a peer that fails it is dropped), then the echo.
awaitable<void> serve_tls(TlsSocket socket, bool sbmp) {
  auto [ec] =
      co_await socket.async_handshake(asio::ssl::stream_base::server, as_tuple(use_awaitable));
  if (ec) co_return;
  if (sbmp) {
    co_await echo_sbmp(std::move(socket));
  } else {
    co_await echo_raw(std::move(socket));
  }
}
#endif

awaitable<void> listen(tcp::acceptor& acceptor, bool sbmp, [[maybe_unused]] void* tls) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(as_tuple(use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      continue;  // e.g. EMFILE: that peer is refused
    }
    socket.set_option(tcp::no_delay(true));
#ifdef ASIO_ECHO_TLS
    asio::co_spawn(
        acceptor.get_executor(),
        serve_tls(TlsSocket(std::move(socket), *static_cast<asio::ssl::context*>(tls)), sbmp),
        asio::detached);
#else
    asio::co_spawn(acceptor.get_executor(),
                   sbmp ? echo_sbmp(std::move(socket)) : echo_raw(std::move(socket)),
                   asio::detached);
#endif
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string host = "127.0.0.1";
  unsigned short port = 0;
  bool sbmp = false;
  std::string cert, key;
  const char* program = std::strrchr(argv[0], '/') ? std::strrchr(argv[0], '/') + 1 : argv[0];
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a.rfind("--port=", 0) == 0) {
      port = static_cast<unsigned short>(cli_number(program, "--port", a.c_str() + 7, 0, 65535, 1));
    } else if (a.rfind("--host=", 0) == 0) {
      host = a.substr(7);
    } else if (a == "--sbmp") {
      sbmp = true;
#ifdef ASIO_ECHO_TLS
    } else if (a.rfind("--tls_cert=", 0) == 0) {
      cert = a.substr(11);
    } else if (a.rfind("--tls_key=", 0) == 0) {
      key = a.substr(10);
#endif
    } else {
#ifdef ASIO_ECHO_TLS
      std::fprintf(stderr,
                   "usage: %s --tls_cert=PEM --tls_key=PEM [--port=N] [--host=ADDR] [--sbmp]\n",
                   argv[0]);
#else
      std::fprintf(stderr, "usage: %s [--port=N] [--host=ADDR] [--sbmp]\n", argv[0]);
#endif
      std::fprintf(stderr, "(reads up to %zu bytes at a time)\n", kBufferSize);
      return a == "--help" ? 0 : 1;
    }
  }
#ifdef ASIO_ECHO_TLS
  if (cert.empty() || key.empty()) {
    std::fprintf(stderr, "%s: --tls_cert and --tls_key are required\n", argv[0]);
    return 1;
  }
#endif
  try {
    asio::io_context io(1);  // concurrency hint: one thread runs it
    void* tls = nullptr;
#ifdef ASIO_ECHO_TLS
    asio::ssl::context context(asio::ssl::context::tls_server);
    context.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                        asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                        asio::ssl::context::no_tlsv1_1);
    context.use_certificate_chain_file(cert);
    context.use_private_key_file(key, asio::ssl::context::pem);
    tls = &context;
#endif
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
    asio::co_spawn(io, listen(acceptor, sbmp, tls), asio::detached);
    io.run();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", argv[0], e.what());
    return 1;
  }
  return 0;
}
