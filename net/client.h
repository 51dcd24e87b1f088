// Client: the connecting side of a framed connection, for load generators
// and tests — connect with a deadline, wrap the stream in FramedStream<C>,
// and send what the codec queued when it was made (e.g. SBMP's HELLO).
//
//   Client client(net, *SocketAddress::parse("127.0.0.1:7000"), {.connect_timeout = 2s});
//   const sbmp::CodecOptions hello{.role = sbmp::Role::kClient};  // a local: GCC 12 mishandles
//   auto conn = co_await client.connect(sbmp::Codec(hello));       // such temporaries in co_await
//   if (!conn.ok()) ...                 // "connect 127.0.0.1:7000: ECONNREFUSED: ..."
//   co_await conn->write_frame(frame);  // then read_frame() / close() as usual
//
//   // or, without keeping a Client:
//   auto conn = co_await connect_framed(net, address, LengthPrefixCodec());
//
// The handshake: connect() returns as soon as the codec's opening bytes are
// queued for sending; it does not wait for the peer's answer (SBMP
// HELLO_ACK), because a FrameCodec has no way to say "handshake done". The
// answer is consumed inside read_frame(), before any application frame, like
// every other protocol frame. Frames written before it arrives are encoded
// with the protocol's defaults (SBMP: without CHK, which the peer accepts);
// a protocol-specific caller can look at conn->codec() (SBMP: established()).
//
// connect_stream() is Stream::connect with the Client's address and options,
// so that one Client opens raw and framed connections alike.
//
// A Client is a small value (a context reference, an address, options); use
// it on the context's loop thread. Connections it makes are independent of it.
#pragma once

#include <chrono>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "coring/core/task.h"
#include "coring/net/frame_codec.h"
#include "coring/net/framed_stream.h"
#include "coring/net/listen_socket.h"
#include "coring/net/net_context.h"
#include "coring/net/socket_address.h"
#include "coring/net/stream.h"

namespace coring::net {

struct ClientOptions {
  // The whole TCP (or Unix) connect; DeadlineExceeded after it.
  std::chrono::nanoseconds connect_timeout = std::chrono::seconds(5);
  SocketOptions socket = {};  // TCP_NODELAY on by default
  FramedOptions framed = {};

  ConnectOptions connect_options() const { return {.timeout = connect_timeout, .socket = socket}; }
};

// Connects to `address` and returns FramedStream<C>(stream, codec) with the
// codec's opening output (if any) queued for sending. Errors name the address.
template <FrameCodec C>
Task<absl::StatusOr<FramedStream<C>>> connect_framed(NetContext& ctx, SocketAddress address,
                                                     C codec, ClientOptions options = {}) {
  absl::StatusOr<Stream> stream = co_await Stream::connect(ctx, address, options.connect_options());
  if (!stream.ok()) co_return stream.status();
  FramedStream<C> conn(std::move(*stream), std::move(codec), options.framed);
  if (absl::Status s = co_await conn.flush_output(); !s.ok()) {
    (void)co_await conn.close(s);  // the write side is broken: no goodbye, just close
    co_return absl::Status(s.code(), absl::StrFormat("connect %s: sending the codec's opening: %s",
                                                     address.to_string(), s.message()));
  }
  co_return std::move(conn);
}

class Client {
 public:
  Client(NetContext& ctx, SocketAddress address, ClientOptions options = {})
      : ctx_(&ctx), address_(std::move(address)), options_(std::move(options)) {}

  template <FrameCodec C>
  Task<absl::StatusOr<FramedStream<C>>> connect(C codec) const {
    return connect_framed(*ctx_, address_, std::move(codec), options_);
  }
  Task<absl::StatusOr<Stream>> connect_stream() const {
    return Stream::connect(*ctx_, address_, options_.connect_options());
  }

  NetContext& context() const noexcept { return *ctx_; }
  const SocketAddress& address() const noexcept { return address_; }
  const ClientOptions& options() const noexcept { return options_; }

 private:
  NetContext* ctx_;
  SocketAddress address_;
  ClientOptions options_;
};

}  // namespace coring::net
