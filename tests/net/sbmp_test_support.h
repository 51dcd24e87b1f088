// Shared helpers of the SBMP integration tests (tests/net/sbmp_*_test.cc):
//  * SbmpEchoServer: an in-process net::Server on a one-thread Runtime that
//    echoes every application frame (the sbmp_echo_server example's handler);
//  * RawClient: a blocking loopback socket that sends hand-made bytes and
//    decodes what comes back with sbmp::Decoder (control frames included);
//  * encode()/header_bytes(): well-formed frames from the codec's encoder,
//    and headers with any field values, for malformed frames.
#pragma once

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "coring/codec/codec.h"
#include "coring/codec/control.h"
#include "coring/codec/decoder.h"
#include "coring/codec/encoder.h"
#include "coring/codec/error.h"
#include "coring/codec/extensions.h"
#include "coring/codec/header.h"
#include "coring/core/runtime.h"
#include "coring/core/task.h"
#include "coring/net/framed_stream.h"
#include "coring/net/server.h"

namespace coring::net::sbmp_testing {

using namespace std::chrono_literals;
using SbmpConn = FramedStream<sbmp::Codec>;

// The sbmp_echo_server handler: every application frame goes back as it
// came; the frames already received are read with try_read_frame().
inline Task<> echo(SbmpConn conn) {
  for (;;) {
    auto frame = co_await conn.read_frame();
    if (!frame.ok()) co_return;
    bool written;
    do {
      written = (co_await conn.write_frame(*frame)).ok();
    } while (written && conn.try_read_frame(*frame));
    if (!written) break;
  }
  (void)co_await conn.close();
}

// Echoes with only read_frame(), one awaited read per frame.
inline Task<> echo_awaiting_each(SbmpConn conn) {
  for (;;) {
    auto frame = co_await conn.read_frame();
    if (!frame.ok()) co_return;
    if (!(co_await conn.write_frame(*frame)).ok()) break;
  }
  (void)co_await conn.close();
}

struct SbmpEchoServer {
  using Handler = Task<> (*)(SbmpConn);
  explicit SbmpEchoServer(ServerOptions options = {}, sbmp::CodecOptions codec = {},
                          Handler handler = echo)
      : runtime({.threads = 1}), server(runtime, with_loopback(std::move(options))) {
    status = server.serve<sbmp::Codec>(handler, [codec] { return sbmp::Codec(codec); });
  }
  ~SbmpEchoServer() {
    server.shutdown();
    runtime.stop();
  }
  uint16_t port() const { return server.address().port(); }
  // The server's NetStats, read on its loop.
  NetStats net_stats() {
    auto stats = std::make_shared<std::promise<NetStats>>();
    std::future<NetStats> ready = stats->get_future();
    EventLoop& loop = runtime.loop(0);
    loop.post(
        [this, &loop, stats] { stats->set_value(server.net_stats(loop).value_or(NetStats{})); });
    if (ready.wait_for(5s) != std::future_status::ready) {
      ADD_FAILURE() << "the server's loop did not answer";
      return {};
    }
    return ready.get();
  }

  static ServerOptions with_loopback(ServerOptions o) {
    o.host = "127.0.0.1";
    o.port = 0;
    return o;
  }

  Runtime runtime;
  Server server;
  absl::Status status;
};

// A received frame, copied out of the decoder.
struct OwnedFrame {
  sbmp::Header header;
  std::vector<uint8_t> ext;
  std::vector<uint8_t> payload;

  uint16_t type() const { return header.type; }
  sbmp::Extensions extensions() const { return sbmp::Extensions(ext); }
  sbmp::Frame view() const {
    sbmp::Frame f = sbmp::make_frame(header.type, payload, extensions());
    f.header = header;
    return f;
  }
};

// The bytes of `frame`, from the codec's encoder (any type, control included).
inline std::vector<uint8_t> encode(const sbmp::Frame& frame, bool chk = false) {
  const sbmp::EncodeOptions options{.chk = chk};
  absl::StatusOr<sbmp::Header> h = sbmp::frame_header(frame, options);
  EXPECT_TRUE(h.ok()) << h.status();
  if (!h.ok()) return {};
  std::vector<uint8_t> out(h->frame_size());
  absl::StatusOr<size_t> n = sbmp::encode_frame(frame, options, absl::MakeSpan(out));
  EXPECT_TRUE(n.ok()) << n.status();
  return out;
}

inline std::vector<uint8_t> encode(uint16_t type, absl::Span<const uint8_t> payload,
                                   absl::Span<const uint8_t> ext = {}, bool chk = false) {
  return encode(sbmp::make_frame(type, payload, sbmp::Extensions(ext)), chk);
}

// A 16-byte header with exactly these fields and a correct hcrc (unless the
// caller corrupts it): the way to build frames the encoder refuses to make.
inline std::vector<uint8_t> header_bytes(uint8_t version, uint8_t flags, uint16_t type,
                                         uint32_t length, uint16_t ext_len) {
  std::vector<uint8_t> out(sbmp::kHeaderSize);
  sbmp::encode_header(
      {.version = version, .flags = flags, .type = type, .length = length, .ext_len = ext_len},
      out.data());
  return out;
}

inline std::vector<uint8_t> concat(std::initializer_list<absl::Span<const uint8_t>> parts) {
  std::vector<uint8_t> out;
  for (auto p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

inline std::vector<uint8_t> bytes_of(std::string_view s) {
  return std::vector<uint8_t>(s.begin(), s.end());
}

inline std::vector<uint8_t> hello_payload(uint8_t min_version, uint8_t max_version,
                                          uint32_t features, uint32_t max_frame = 0) {
  std::vector<uint8_t> out(sbmp::kMaxHelloPayload);
  absl::StatusOr<size_t> n = sbmp::write_hello({.min_version = min_version,
                                                .max_version = max_version,
                                                .max_frame = max_frame,
                                                .features = features,
                                                .agent = "sbmp-test"},
                                               absl::MakeSpan(out));
  EXPECT_TRUE(n.ok()) << n.status();
  out.resize(n.ok() ? *n : 0);
  return out;
}

// A blocking loopback client. Every wait is bounded (5 s unless told).
class RawClient {
 public:
  explicit RawClient(uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      ADD_FAILURE() << "connect to port " << port << ": " << std::strerror(errno);
      ::close(fd_);
      fd_ = -1;
    }
    const int one = 1;
    if (fd_ >= 0) ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~RawClient() {
    if (fd_ >= 0) ::close(fd_);
  }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  bool connected() const { return fd_ >= 0; }
  // Closes this side (a peer that said goodbye waits for it).
  void close() {
    if (fd_ >= 0) ::close(std::exchange(fd_, -1));
  }
  int fd() const { return fd_; }

  // Sends everything (or fails the test).
  bool send(absl::Span<const uint8_t> bytes) {
    while (!bytes.empty()) {
      const ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        ADD_FAILURE() << "send: " << std::strerror(errno);
        return false;
      }
      bytes.remove_prefix(static_cast<size_t>(n));
    }
    return true;
  }
  // One send() per byte, with a pause now and then so that the server reads
  // the frame in many pieces.
  bool send_bytewise(absl::Span<const uint8_t> bytes) {
    for (size_t i = 0; i < bytes.size(); ++i) {
      if (!send(bytes.subspan(i, 1))) return false;
      if (i % 8 == 0) std::this_thread::sleep_for(50us);
    }
    return true;
  }

  // The next frame the server sent (control frames included), checked by the
  // decoder (hcrc, CHK trailer, extensions). NotFound on EOF, DeadlineExceeded
  // on timeout, the decoder's error otherwise.
  absl::StatusOr<OwnedFrame> read_frame(std::chrono::milliseconds timeout = 5000ms) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      absl::Span<const uint8_t> in(pending_.data() + pos_, pending_.size() - pos_);
      absl::StatusOr<std::optional<sbmp::Frame>> next = decoder_.next(in);
      pos_ = pending_.size() - in.size();
      if (!next.ok()) return next.status();
      if (next->has_value()) {
        const sbmp::Frame& f = **next;
        return OwnedFrame{
            f.header,
            std::vector<uint8_t>(f.extensions.bytes().begin(), f.extensions.bytes().end()),
            std::vector<uint8_t>(f.payload.begin(), f.payload.end())};
      }
      pending_.clear();  // all of it consumed (a split frame is kept by the decoder)
      pos_ = 0;
      absl::Status s = receive(deadline);
      if (!s.ok()) return s;
    }
  }

  // The server's GOAWAY: skips nothing; returns its code.
  absl::StatusOr<uint32_t> read_goaway(std::string* reason = nullptr) {
    absl::StatusOr<OwnedFrame> f = read_frame();
    if (!f.ok()) return f.status();
    if (f->type() != sbmp::kTypeGoaway) {
      return absl::FailedPreconditionError(
          absl::StrFormat("expected GOAWAY, got a frame of type 0x%04x", f->type()));
    }
    absl::StatusOr<sbmp::GoAway> g = sbmp::parse_goaway(f->view());
    if (!g.ok()) return g.status();
    if (reason != nullptr) *reason = std::string(g->reason);
    return g->code;
  }

  // OK when the server closed (EOF or reset) with no further bytes.
  absl::Status expect_closed(std::chrono::milliseconds timeout = 5000ms) {
    if (pos_ < pending_.size() || decoder_.mid_frame()) {
      return absl::FailedPreconditionError("bytes left before the close");
    }
    uint8_t b[256];
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      if (absl::Status s = wait_readable(deadline); !s.ok()) return s;
      const ssize_t n = ::recv(fd_, b, sizeof b, 0);
      if (n == 0 || (n < 0 && errno == ECONNRESET)) return absl::OkStatus();
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) return absl::InternalError(std::strerror(errno));
      return absl::FailedPreconditionError(absl::StrFormat("%d more bytes before the close", n));
    }
  }

  // GOAWAY(code) then the close: what every error and goodbye looks like.
  // Closes this side too, as a well-behaved peer does.
  void expect_goaway_and_close(sbmp::ErrorCode code, std::string* reason = nullptr) {
    absl::StatusOr<uint32_t> got = read_goaway(reason);
    ASSERT_TRUE(got.ok()) << got.status();
    EXPECT_EQ(*got, static_cast<uint32_t>(code))
        << "GOAWAY(" << sbmp::error_code_name(static_cast<sbmp::ErrorCode>(*got)) << "), wanted "
        << sbmp::error_code_name(code);
    absl::Status closed = expect_closed();
    EXPECT_TRUE(closed.ok()) << closed;
    close();
  }

  // Sends `frame` and checks that the echo has the same type, extension
  // block and payload.
  void expect_echo(absl::Span<const uint8_t> wire, uint16_t type, absl::Span<const uint8_t> ext,
                   absl::Span<const uint8_t> payload) {
    ASSERT_TRUE(send(wire));
    absl::StatusOr<OwnedFrame> f = read_frame();
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->type(), type);
    EXPECT_TRUE(std::equal(f->ext.begin(), f->ext.end(), ext.begin(), ext.end()));
    EXPECT_EQ(f->payload.size(), payload.size());
    EXPECT_TRUE(std::equal(f->payload.begin(), f->payload.end(), payload.begin(), payload.end()));
  }

 private:
  absl::Status wait_readable(std::chrono::steady_clock::time_point deadline) {
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return absl::DeadlineExceededError("nothing from the server in time");
      pollfd p{fd_, POLLIN, 0};
      const int r = ::poll(&p, 1, static_cast<int>(left.count()));
      if (r > 0) return absl::OkStatus();
      if (r < 0 && errno != EINTR) return absl::InternalError(std::strerror(errno));
    }
  }
  absl::Status receive(std::chrono::steady_clock::time_point deadline) {
    if (absl::Status s = wait_readable(deadline); !s.ok()) return s;
    uint8_t buf[64 * 1024];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n == 0) return absl::NotFoundError("EOF");
    if (n < 0) return absl::InternalError(std::strerror(errno));
    pending_.insert(pending_.end(), buf, buf + n);
    return absl::OkStatus();
  }

  int fd_ = -1;
  sbmp::Decoder decoder_{{.max_frame = 64 * 1024 * 1024}};
  std::vector<uint8_t> pending_;
  size_t pos_ = 0;
};

inline std::vector<uint8_t> pattern(size_t n, uint32_t seed) {
  std::vector<uint8_t> v(n);
  uint32_t x = seed * 2654435761u + 7;
  for (auto& b : v) {
    x = x * 1664525u + 1013904223u;
    b = static_cast<uint8_t>(x >> 24);
  }
  return v;
}

inline std::vector<uint8_t> request_id_ext(uint64_t id) {
  sbmp::ExtensionBuilder b;
  b.set_request_id(id);
  return std::vector<uint8_t>(b.bytes().begin(), b.bytes().end());
}

}  // namespace coring::net::sbmp_testing
